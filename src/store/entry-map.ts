import type {Entry} from './entry.js'
import {Summary} from './summary.js'

/**
 * The store's entry map, keeping on every change what is read often without a walk of the whole
 * store: its Summary (push-pull, summary.ts) and the keys of each kind (`task/...` -> 'task': what
 * Store.list of a kind's prefix goes through). set, delete and clear are the only ways in or out,
 * so no write path (local, merge, forget, reap, open, a rollback) can miss them.
 */
export class EntryMap extends Map<string, Entry> {
  readonly summary = new Summary()
  private readonly kinds = new Map<string, Set<string>>()

  override set(key: string, e: Entry): this {
    const old = super.get(key)
    if (old) this.summary.remove(key, old.version)
    else {
      const k = kindOf(key)
      let keys = this.kinds.get(k)
      if (!keys) this.kinds.set(k, (keys = new Set()))
      keys.add(key)
    }
    this.summary.add(key, e.version)
    return super.set(key, e)
  }

  override delete(key: string): boolean {
    const old = super.get(key)
    if (old) {
      this.summary.remove(key, old.version)
      const k = kindOf(key)
      const keys = this.kinds.get(k)
      keys?.delete(key)
      if (keys?.size === 0) this.kinds.delete(k)
    }
    return super.delete(key)
  }

  override clear(): void {
    this.summary.clear()
    this.kinds.clear()
    super.clear()
  }

  /** The keys of one kind (the part before the first '/'), tombstones included. */
  keysOfKind(kind: string): ReadonlySet<string> {
    return this.kinds.get(kind) ?? NONE
  }
}

const NONE: ReadonlySet<string> = new Set()

/** 'task/abc' -> 'task'; a key without '/' ('cluster') is its own kind. */
export function kindOf(key: string): string {
  const i = key.indexOf('/')
  return i < 0 ? key : key.slice(0, i)
}
