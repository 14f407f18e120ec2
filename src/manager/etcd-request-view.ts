// The request view (issue 24): the store a manager's logic runs over during one request on etcd,
// built over the manager's copy and index, its desired writes kept for the transaction
// (etcd-transaction.ts).
import type {Entry} from '../store/entry.js'
import type {Json} from '../store/json.js'
import type {Store} from '../store/store.js'
import type {NodeRecord} from '../model/types.js'
import type {IndexSource, StateIndex} from '../store/state-index.js'
import {isDesiredKey, type DesiredStore} from './backend.js'
import type {Write} from './etcd-index.js'

/**
 * What the manager sees during one request: desired state as read from etcd, with the
 * request's own writes on top; nodes and statuses from the node's gossip store. Writes to
 * desired keys are collected for the transaction; the rest (a node marked left, a status
 * removed) is gossip's and happens once the transaction has held.
 */
export class RequestView implements DesiredStore, IndexSource {
  readonly ops = new Map<string, Json | null>()
  /** Nodes the request removes (node rm): written to roles/ in its transaction. */
  readonly left = new Set<string>()
  private readonly sideEffects: (() => void)[] = []
  /** Told of each desired write as the store tells its own. */
  private readonly listeners = new Set<(key: string, value: Json | undefined, old: Json | undefined) => void>()

  constructor(
    /** The copy's records, as they are while the request's logic runs (it runs without a pause: they do not change). */
    private readonly state: ReadonlyMap<string, Json>,
    private readonly local: Store,
    private readonly selfId: string,
    /** The manager's shared index, lent to this request (etcd-index.ts): its writes go on it through write. */
    private readonly index: StateIndex,
    private readonly write: Write,
    /** The writes of the requests decided before this one in its batch (their records as they will be). */
    private readonly below: ReadonlyMap<string, Json | null> = new Map(),
    /** The writes of this manager's batches in flight (their records as they will be once they land). */
    private readonly pending: ReadonlyMap<string, Json | null> = new Map(),
  ) {}

  /** The manager's index (state-index.ts's indexOf asks): not one built per request. */
  ownIndex(): StateIndex {
    return this.index
  }

  get<T extends Json = Json>(key: string): T | undefined {
    if (!isDesiredKey(key)) return this.local.get<T>(key)
    if (this.ops.has(key)) return (this.ops.get(key) ?? undefined) as T | undefined
    if (this.below.has(key)) return (this.below.get(key) ?? undefined) as T | undefined
    if (this.pending.has(key)) return (this.pending.get(key) ?? undefined) as T | undefined
    return this.state.get(key) as T | undefined
  }

  values<T extends Json = Json>(prefix: string): T[] {
    if (!isDesiredKey(prefix)) return this.local.values<T>(prefix)
    const keys = new Set(
      [...this.state.keys(), ...this.pending.keys(), ...this.below.keys(), ...this.ops.keys()].filter((k) =>
        k.startsWith(prefix),
      ),
    )
    return [...keys]
      .sort()
      .map((k) => this.get<T>(k))
      .filter((v): v is T => v !== undefined)
  }

  /** Desired state as read with the request's writes on top, and the rest as the node's store holds it. */
  list(prefix = ''): {key: string; value: Json | null}[] {
    const out: {key: string; value: Json | null}[] = this.local.list(prefix).filter((e) => !isDesiredKey(e.key))
    for (const k of new Set([...this.state.keys(), ...this.pending.keys(), ...this.below.keys(), ...this.ops.keys()])) {
      const v = k.startsWith(prefix) ? this.get(k) : undefined
      if (v !== undefined) out.push({key: k, value: v})
    }
    return out
  }

  onChange(listener: (key: string, value: Json | undefined, old: Json | undefined) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  put(key: string, value: Json): Entry {
    if (isDesiredKey(key)) {
      const old = this.get(key)
      this.ops.set(key, value)
      this.write(key, value, old)
      for (const l of this.listeners) l(key, value, old)
    } else {
      // node rm: etcd holds it too (roles/<id> = left), so the leader publishes it if this manager dies first.
      const n = key.startsWith('node/') ? (value as Partial<NodeRecord>) : undefined
      if (n?.state === 'left' && typeof n.id === 'string') this.left.add(n.id)
      this.sideEffects.push(() => this.local.put(key, value))
    }
    return {key, value, version: {clock: 0, node: this.selfId}}
  }

  delete(key: string): Entry | undefined {
    if (isDesiredKey(key)) {
      const old = this.get(key)
      if (old === undefined) return undefined
      this.ops.set(key, null)
      this.write(key, undefined, old)
      for (const l of this.listeners) l(key, undefined, old)
    } else {
      if (this.local.get(key) === undefined) return undefined
      this.sideEffects.push(() => this.local.delete(key))
    }
    return {key, value: null, version: {clock: 0, node: this.selfId}}
  }

  /** Writes to the node's store wait for the transaction: a request after this one would not see them. */
  get hasSideEffects(): boolean {
    return this.sideEffects.length > 0 || this.left.size > 0
  }

  applySideEffects(): void {
    for (const f of this.sideEffects) f()
  }
}
