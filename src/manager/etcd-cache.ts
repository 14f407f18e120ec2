// A manager's copy of its cluster's keys in etcd (issue 24): one range read of the prefix, then
// one watch from the revision after it, its events applied in order. Requests and the leader's
// passes read the copy, at the revision it holds, instead of reading the whole prefix each time.
// The copy may lag other managers' commits: a transaction compares what it read (etcd-transaction.ts),
// so a stale read costs a retry, never a wrong write. After a request's commit the backend
// decides over the commit on top of the copy until the copy holds its revision (read-your-writes;
// the leader's passes and role changes wait for it); after a lost race, it waits until the copy
// holds the revision etcd answered with. A watch etcd cancels (its start was compacted away) or that breaks
// is dropped and the prefix read again before the next read.
import type {IWatchResponse, Namespace, Watcher} from 'etcd3'
import type {Json} from '../store/json.js'
import {LEADER, STATE} from './etcd-keys.js'

/** A key's value (and, for desired state, its parsed record) and its mod revision. */
export type CachedKv = {value: string; mod: string}

/** The copy at one revision: its keys, its desired-state records (keys under STATE, without it). */
export type CacheSnapshot = {kvs: ReadonlyMap<string, CachedKv>; records: ReadonlyMap<string, Json>; revision: number}

/** How long a commit waits for the copy to show it (then the copy is read again); a batch's answer does not wait for it. */
export const OWN_WRITE_WAIT_MS = 2000
/**
 * How long a request waits for the copy to reach the revision etcd is at when it begins (then the
 * copy is read again: a revision made by writes outside the prefix never shows in its watch).
 */
export const CATCH_UP_WAIT_MS = 200

/** A desired-state record changed (key without STATE; undefined: absent). */
export type RecordListener = (key: string, value: Json | undefined, old: Json | undefined) => void

export class EtcdCache {
  /** key (without the prefix) -> value and mod revision: what one range read of the prefix would find. */
  private kvs = new Map<string, CachedKv>()
  /** The desired-state records (keys under STATE, without it), parsed once as they arrive. */
  private records = new Map<string, Json>()
  /** Every change up to this revision is in the copy (0: not read yet). */
  revision = 0
  /** How many times the prefix was read whole (the first time included). */
  listings = 0
  private watcher: Watcher | undefined
  private loading: Promise<void> | undefined
  private waiters: {rev: number; done: (ok: boolean) => void}[] = []
  private closed = false
  /** Told each change of a record the watch brings (not a whole read: see listings). */
  private readonly recordListeners = new Set<RecordListener>()
  /**
   * This manager's own commits the watch has not brought back yet, by revision: what each put
   * (key -> value) and its records as decided. Their events are not decoded again: a key etcd
   * reports at that mod revision holds what that commit put (one revision, one transaction).
   */
  private readonly own = new Map<number, {puts: ReadonlyMap<string, string>; records: ReadonlyMap<string, Json | null>}>()
  /** Events taken from own commits instead of decoded (for the tests and the bench). */
  ownEvents = 0

  constructor(
    private readonly ns: Namespace,
    private readonly log?: (m: string) => void,
  ) {}

  /** The copy, read first when there is none or its watch was dropped. Shared: do not change it. */
  async snapshot(): Promise<CacheSnapshot> {
    if (this.closed) throw new Error('the etcd cache is closed')
    if (!this.watcher) {
      this.loading ??= this.load().finally(() => (this.loading = undefined))
      await this.loading
    }
    return {kvs: this.kvs, records: this.records, revision: this.revision}
  }

  /**
   * The copy, caught up with etcd as it is now: a request sees every commit made before it began,
   * whichever manager made it (a network just created on another manager is there). One read of
   * one key tells the revision etcd is at; the watch brings the copy there.
   */
  async current(): Promise<CacheSnapshot> {
    const r = await this.ns.get(LEADER).exec()
    await this.reach(Number(r.header.revision), CATCH_UP_WAIT_MS)
    return this.snapshot()
  }

  /**
   * Resolves true once the copy holds revision rev, false after ms without it: then the watch is
   * dropped, so the next snapshot() reads the prefix again (a revision that never shows, as one
   * made by writes outside the prefix, costs one read, not a hang).
   */
  async reach(rev: number, ms: number): Promise<boolean> {
    if (this.revision >= rev) return true
    if (!this.watcher) return false
    const ok = await new Promise<boolean>((done) => {
      const w = {rev, done}
      this.waiters.push(w)
      setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w)
        done(false)
      }, ms).unref()
    })
    if (!ok) this.drop()
    return ok
  }

  /**
   * Calls listener with each record change the watch applies, as it applies it. A whole read
   * (load) replaces the records without calling it: it bumps listings instead.
   */
  onRecord(listener: RecordListener): () => void {
    this.recordListeners.add(listener)
    return () => this.recordListeners.delete(listener)
  }

  /**
   * A commit of this manager's held at revision rev: what it put (keys without the prefix) and
   * the records it wrote (keys without STATE; null: deleted). When the watch brings rev back, its
   * records are these objects (shared: not changed by anyone), not the events' values parsed again.
   */
  expect(rev: number, puts: readonly (readonly [string, string])[], records: ReadonlyMap<string, Json | null>): void {
    if (rev <= this.revision || !this.watcher) return
    this.own.set(rev, {puts: new Map(puts), records})
  }

  /** Stops watching: the next snapshot() reads the prefix again (what a broken watch leads to). */
  drop(): void {
    const w = this.watcher
    this.watcher = undefined
    if (w) void w.cancel().catch(() => undefined)
  }

  close(): void {
    this.closed = true
    this.drop()
    for (const w of this.waiters) w.done(false)
    this.waiters = []
  }

  private async load(): Promise<void> {
    this.drop()
    this.own.clear()
    const r = await this.ns.getAll().prefix('').exec()
    this.listings++
    const kvs = new Map<string, CachedKv>()
    const records = new Map<string, Json>()
    for (const kv of r.kvs) {
      const key = kv.key.toString()
      const value = kv.value.toString()
      kvs.set(key, {value, mod: kv.mod_revision})
      if (key.startsWith(STATE)) records.set(key.slice(STATE.length), JSON.parse(value) as Json)
    }
    const rev = Number(r.header.revision)
    // The watch starts right after the read's revision: no change falls between the two.
    const w = this.ns
      .watch()
      .prefix('')
      .startRevision(String(rev + 1))
      .watcher()
    // The copy and its watch go in together, listeners before any event can arrive (etcd3's
    // create() would attach them a tick late): events from rev+1 on apply to this read.
    this.kvs = kvs
    this.records = records
    this.revision = rev
    this.watcher = w
    const connected = new Promise<void>((resolve, reject) => {
      w.once('connected', () => resolve())
      w.on('error', (e: Error) => {
        reject(e)
        if (this.watcher !== w) return
        // Cancelled by etcd (its start revision was compacted) or failed: read the prefix again next time.
        this.log?.(`etcd: the watch of the cluster state ended (${e.message.split('\n')[0]}): reading it again`)
        this.watcher = undefined
      })
    })
    w.on('data', (res: IWatchResponse) => this.applyEvents(w, res))
    // The stream broke: etcd3 would resume it, but from a revision that may be compacted by then; read again instead.
    w.on('disconnected', () => {
      if (this.watcher === w) this.drop()
    })
    try {
      await connected
    } catch (e) {
      if (this.watcher === w) this.drop()
      else void w.cancel().catch(() => undefined)
      throw e
    }
    if (this.closed) this.drop()
  }

  private applyEvents(w: Watcher, res: IWatchResponse): void {
    // Events of a watch already dropped are not the copy's.
    if (this.watcher !== w) return
    // The events of one response are mostly one commit's: its revision looked up once.
    let modText = ''
    let mine: {puts: ReadonlyMap<string, string>; records: ReadonlyMap<string, Json | null>} | undefined
    for (const ev of res.events) {
      // etcd3's own 'data' listener has taken the prefix off the key already.
      const key = ev.kv.key.toString()
      if (ev.type === 'Put') {
        if (this.own.size > 0 && ev.kv.mod_revision !== modText) {
          modText = ev.kv.mod_revision
          mine = this.own.get(Number(modText))
        }
        const put = mine?.puts.get(key)
        const value = put ?? ev.kv.value.toString()
        this.kvs.set(key, {value, mod: ev.kv.mod_revision})
        if (key.startsWith(STATE)) {
          const k = key.slice(STATE.length)
          const held = put === undefined ? undefined : mine!.records.get(k)
          if (held !== undefined && held !== null) this.ownEvents++
          this.setRecord(k, held ?? (JSON.parse(value) as Json))
        }
      } else {
        this.kvs.delete(key)
        if (key.startsWith(STATE)) this.setRecord(key.slice(STATE.length), undefined)
      }
    }
    this.revision = Math.max(this.revision, Number(res.header.revision))
    if (this.own.size > 0) for (const rev of this.own.keys()) if (rev <= this.revision) this.own.delete(rev)
    this.wake()
  }

  private setRecord(key: string, value: Json | undefined): void {
    const old = this.records.get(key)
    if (value === undefined) this.records.delete(key)
    else this.records.set(key, value)
    for (const l of this.recordListeners) l(key, value, old)
  }

  private wake(): void {
    if (this.waiters.length === 0) return
    const ready = this.waiters.filter((w) => w.rev <= this.revision)
    this.waiters = this.waiters.filter((w) => w.rev > this.revision)
    for (const w of ready) w.done(true)
  }
}
