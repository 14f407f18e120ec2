// node promote / node demote on a cluster whose desired state is in etcd: a
// manager holding the cluster identity re-certifies the node's key for its new
// role and writes its record (gossip, like admission at join), with the etcd
// endpoints and the TLS files a new manager uses (promotion/<id>: paths on the
// node's host) and the manager secrets (identity, tokens) sealed to the node's
// key, so the new manager admits joins and changes roles as the first does.
// The change goes through the desired-state authority first (backend.ts
// changeRole: on etcd one transaction over roles/, serialized by guard/roles),
// so the last-manager check holds against every other manager's changes, not
// only against what this manager's gossip view shows; the gossip record follows.
// The node's agent sees its record change and starts (or stops) serving as a
// manager, forgetting the secrets when demoted; nothing restarts, no task moves.
import {certifyNode} from '../gossip/identity.js'
import {revocationOf, type Revocation} from '../gossip/revocation.js'
import {sealSecretsTo, type ManagerSecrets} from '../gossip/manager-secrets.js'
import {UserError} from '../model/errors.js'
import type {ClusterSpec, NodeRecord, NodeRole} from '../model/types.js'
import {keyOf} from '../store/keys.js'
import type {Store} from '../store/store.js'
import type {DesiredBackend, RoleBook} from './backend.js'
import type {EtcdSettings} from './etcd-client.js'

export const promotionKey = (id: string) => `promotion/${id}`

export type Promotion = {
  nodeId: string
  etcd: EtcdSettings
  /** ManagerSecrets sealed to the node's key (node-seal.ts): only that node reads them. */
  sealed?: string
}

/**
 * The node's new record (a new certificate for its new role), the revocation of
 * the certificate it had (written first: a demoted manager's manager
 * certificate must vouch for nothing, wherever its old record still stands),
 * and for a promotion what the new manager needs.
 */
export type RoleChange = {record: NodeRecord; revoke?: {key: string; value: Revocation}; promotion?: Promotion}

export type RoleChangeInput = {
  nodes: NodeRecord[]
  cluster: ClusterSpec | undefined
  ref: string
  role: NodeRole
  /** The promoting manager's identity and tokens (what certifies, and what the new manager gets). */
  secrets: ManagerSecrets | undefined
  /** The etcd settings the node will use as a manager (promotion only). */
  etcd: EtcdSettings | undefined
  isDown: (id: string) => boolean
  /** The manager making the change: a node does not change its own role (others refuse such a record). */
  selfId: string
  now: number
}

export function changeRole(o: RoleChangeInput): RoleChange {
  if (o.cluster?.store !== 'etcd')
    throw new UserError('this cluster keeps its state embedded: it has one manager (init --store etcd for several)')
  const n = o.nodes.find((x) => x.name === o.ref || x.id === o.ref) ?? o.nodes.find((x) => x.id.startsWith(o.ref))
  if (!n) throw new UserError(`node ${o.ref} not found`)
  if (n.state === 'left') throw new UserError(`node ${n.name} has left the cluster`)
  if (o.isDown(n.id)) throw new UserError(`node ${n.name} is down: it cannot take a new role now`)
  if (n.role === o.role) throw new UserError(`node ${n.name} is already a ${o.role}`)
  const self = o.nodes.find((x) => x.id === o.selfId)
  if (self && self.role !== 'manager')
    throw new UserError(`this node (${self.name}) is no longer a manager: another manager demoted it`)
  if (n.id === o.selfId)
    throw new UserError(`node ${n.name} is this manager: a node cannot change its own role (run it on another manager)`)
  if (!n.pubKey) throw new UserError(`node ${n.name} has no node key: it must leave and join again`)
  if (!o.secrets)
    throw new UserError('this manager holds no cluster identity: it cannot certify roles (run it on another manager)')
  if (o.role === 'worker') {
    const managers = o.nodes.filter((x) => x.role === 'manager' && x.state !== 'left' && !o.isDown(x.id))
    if (managers.length <= 1) throw new UserError(`node ${n.name} is the last manager that is up: promote another first`)
  }
  if (o.role === 'manager' && !o.etcd) throw new UserError('no etcd settings to give the new manager')
  return roleRecords(n, o.role, o.secrets, o.etcd, o.now)
}

/** What a role change writes to gossip for node n (checked by the caller: n has a node key). */
function roleRecords(
  n: NodeRecord,
  role: NodeRole,
  secrets: ManagerSecrets,
  etcd: EtcdSettings | undefined,
  now: number,
): RoleChange {
  const {managerStatus: _gone, ...rest} = n
  const record: NodeRecord = {...rest, role, cert: certifyNode(secrets.identity, n.id, n.pubKey!, role)}
  const revoke = revocationOf(n, now)
  if (role === 'worker') return {record, ...(revoke ? {revoke} : {})}
  return {
    record,
    ...(revoke ? {revoke} : {}),
    promotion: {nodeId: n.id, etcd: etcd!, sealed: sealSecretsTo(n.pubKey!, secrets)},
  }
}

/** What the leader needs to publish roles: the identity that certifies, and the etcd settings a new manager gets. */
export type RolePublisher = {secrets: () => ManagerSecrets | undefined; etcd: () => EtcdSettings | undefined}

/**
 * The roles etcd holds whose gossip record says otherwise (the manager that committed the change
 * died before writing it, or a record was forged or left behind since): the role changes that
 * bring gossip back to etcd, decided by etcd alone (the checks were made when it was committed).
 * Not for this manager's own record (a node does not change its own role: another manager's
 * leader publishes it), nor for a node that left (final) or has no node key. A node removed in
 * etcd (left) is published as left.
 */
export function rolesToPublish(
  nodes: NodeRecord[],
  roles: RoleBook,
  left: ReadonlySet<string>,
  selfId: string,
  pub: RolePublisher,
  now: number,
): {changes: RoleChange[]; problem?: string} {
  const changes: RoleChange[] = []
  let problem: string | undefined
  for (const n of nodes) {
    if (n.state === 'left' || n.id === selfId) continue
    if (left.has(n.id)) {
      // Removed (node rm): its record left and its certificate revoked, as removeNode writes them.
      const revoke = revocationOf(n, now)
      changes.push({record: {...n, state: 'left'}, ...(revoke ? {revoke} : {})})
      continue
    }
    const role = roles.get(n.id)
    if (role === undefined || role === n.role || !n.pubKey) continue
    const secrets = pub.secrets()
    const etcd = role === 'manager' ? pub.etcd() : undefined
    if (!secrets || (role === 'manager' && !etcd)) {
      problem = `node ${n.name} is a ${role} in etcd, but this manager cannot certify it (no cluster identity or etcd settings)`
      continue
    }
    changes.push(roleRecords(n, role, secrets, etcd, now))
  }
  return problem === undefined ? {changes} : {changes, problem}
}

/** Writes a role change to gossip: the revocation first, the promotion record, then the node's record. */
export function applyRoleChange(gossip: Pick<Store, 'put' | 'delete'>, ch: RoleChange): void {
  if (ch.revoke) gossip.put(ch.revoke.key, ch.revoke.value)
  if (ch.promotion) gossip.put(promotionKey(ch.record.id), ch.promotion)
  else gossip.delete(promotionKey(ch.record.id))
  gossip.put(keyOf('node', ch.record.id), ch.record)
}

/** The nodes with the roles the authority set over the ones they joined with. */
export function withRoles(nodes: NodeRecord[], roles: RoleBook): NodeRecord[] {
  return nodes.map((n) => {
    const role = roles.get(n.id)
    return role === undefined || role === n.role ? n : {...n, role}
  })
}

/**
 * node promote / demote through the authority: decided over the nodes as gossip has them with
 * the authority's roles on top, and, once the authority holds it, written to gossip: the
 * revocation first, the promotion record, then the node's record.
 */
export function changeRoleThrough(
  backend: Pick<DesiredBackend, 'changeRole'>,
  gossip: Pick<Store, 'put' | 'delete'>,
  o: Omit<RoleChangeInput, 'nodes' | 'now'> & {nodes: () => NodeRecord[]},
): Promise<RoleChange> {
  return backend.changeRole((roles) => {
    const ch = changeRole({...o, nodes: withRoles(o.nodes(), roles), now: Date.now()})
    return {
      nodeId: ch.record.id,
      role: ch.record.role,
      apply: () => {
        applyRoleChange(gossip, ch)
        return ch
      },
    }
  })
}
