// Where the writer of desired state keeps it: the node's own gossip store
// (embedded, one manager: the default) or etcd (several managers, see
// etcd-backend.ts). The manager's logic is the same over both: it reads and
// writes a DesiredStore; the backend decides what a write means.
import type {NodeRole} from '../model/types.js'
import type {Store} from '../store/store.js'
import type {Manager} from './manager.js'

/** What the manager reads and writes through: the node's store, or one request's view of etcd. */
export type DesiredStore = Pick<Store, 'get' | 'values' | 'put' | 'delete'>

export type WriteOptions = {
  /** Placement: only the elected leader may commit it (etcd); the embedded manager always leads. */
  asLeader?: boolean
}

/**
 * A role change as decided over the roles the authority holds: the node, its new role, and what
 * follows once the authority has taken it (the node's gossip record, re-certified).
 */
export type RoleDecision<T> = {nodeId: string; role: NodeRole; apply: () => T}

/** Roles the authority set (node id -> role) over the roles nodes joined with. */
export type RoleBook = ReadonlyMap<string, NodeRole>

export interface DesiredBackend {
  readonly kind: 'embedded' | 'etcd'
  /**
   * Runs one request of the writer. Its writes take effect whole or not at all: with etcd
   * they are one transaction, retried from a fresh read when another manager got there first.
   */
  write<T>(fn: (m: Manager) => T, opts?: WriteOptions): Promise<T>
  /**
   * node promote / demote: decide reads the roles as the authority holds them, and its check
   * (never the last manager) holds when the change is taken: with etcd one transaction,
   * decided again when another role change got there first.
   */
  changeRole<T>(decide: (roles: RoleBook) => RoleDecision<T>): Promise<T>
}

/** Today's behaviour: the manager writes the node's store, which gossip spreads. */
export class EmbeddedBackend implements DesiredBackend {
  readonly kind = 'embedded' as const
  constructor(readonly manager: Manager) {}

  async write<T>(fn: (m: Manager) => T): Promise<T> {
    return fn(this.manager)
  }

  /** The one manager's store is the authority: decided and written in one turn, nothing comes between. */
  async changeRole<T>(decide: (roles: RoleBook) => RoleDecision<T>): Promise<T> {
    return decide(new Map()).apply()
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
