/**
 * The key space. One prefix per noun, so a reconciler lists just its kind
 * (store.list('network/')). Ids never contain '/'.
 */
export const CLUSTER_KEY = 'cluster'

export type Kind =
  | 'node'
  | 'network'
  | 'service'
  | 'task'
  | 'taskstatus'
  | 'attachment'
  | 'attachmentstatus'
  /** revoked/<serial>: a node certificate no one believes any more (src/gossip/revocation.ts). */
  | 'revoked'
  /** nodespec/<node id>: a node's labels and availability, written by managers (src/model/placement.ts). */
  | 'nodespec'
  /** drained/<node id>: the draining tasks that node's maps no longer pick, written by it (src/dataplane/drain-acks.ts). */
  | 'drained'

export function keyOf(kind: Kind, id: string): string {
  return `${kind}/${id}`
}

export function prefixOf(kind: Kind): string {
  return `${kind}/`
}

export function idOf(key: string): string {
  return key.slice(key.indexOf('/') + 1)
}

/**
 * Desired state: what managers write and delete for good (the cluster, networks, services,
 * tasks, attachments). Its deletions are final by clock (Store's deletion floor), not only
 * for as long as a tombstone is kept.
 */
export function isDesiredStateKey(key: string): boolean {
  return (
    key === CLUSTER_KEY ||
    key.startsWith('network/') ||
    key.startsWith('service/') ||
    key.startsWith('task/') ||
    key.startsWith('attachment/')
  )
}
