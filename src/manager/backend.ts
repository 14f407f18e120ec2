// Where the writer of desired state keeps it: the node's own gossip store
// (embedded, one manager: the default) or etcd (several managers, see
// etcd-backend.ts). The manager's logic is the same over both: it reads and
// writes a DesiredStore; the backend decides what a write means.
import type {Store} from '../store/store.js'
import type {Manager} from './manager.js'

/** What the manager reads and writes through: the node's store, or one request's view of etcd. */
export type DesiredStore = Pick<Store, 'get' | 'values' | 'put' | 'delete'>

export type WriteOptions = {
  /** Placement: only the elected leader may commit it (etcd); the embedded manager always leads. */
  asLeader?: boolean
}

export interface DesiredBackend {
  readonly kind: 'embedded' | 'etcd'
  /**
   * Runs one request of the writer. Its writes take effect whole or not at all: with etcd
   * they are one transaction, retried from a fresh read when another manager got there first.
   */
  write<T>(fn: (m: Manager) => T, opts?: WriteOptions): Promise<T>
}

/** Today's behaviour: the manager writes the node's store, which gossip spreads. */
export class EmbeddedBackend implements DesiredBackend {
  readonly kind = 'embedded' as const
  constructor(readonly manager: Manager) {}

  async write<T>(fn: (m: Manager) => T): Promise<T> {
    return fn(this.manager)
  }
}

/** Keys of desired state: in etcd when the cluster keeps it there; everything else stays in gossip. */
export function isDesiredKey(key: string): boolean {
  return (
    key === 'cluster' ||
    key.startsWith('network/') ||
    key.startsWith('service/') ||
    key.startsWith('task/') ||
    key.startsWith('attachment/')
  )
}
