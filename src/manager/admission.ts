// Join admission: the manager's decision on a joiner the gossip layer has
// authenticated (token proof, src/gossip/join.ts). Gossip runs the handshake
// and delivers the request; this decides who gets in, under which id and
// role, and records the joiner with a certificate for its key and role.
import type {KeyPair} from '../gossip/identity.js'
import {certifyNode} from '../gossip/identity.js'
import type {JoinRequestNode} from '../gossip/join.js'
import {UserError} from '../model/errors.js'
import type {NodeRecord, NodeRole} from '../model/types.js'
import {keyOf, prefixOf} from '../store/keys.js'
import type {Store} from '../store/store.js'

/** 'rejoin': a member came back with its own key (nothing written); 'admitted': a new node's record is in the store. */
export type Admission = 'admitted' | 'rejoin'

export type AdmissionContext = {
  store: Pick<Store, 'get' | 'put' | 'values'>
  /** This manager's node id: no joiner takes it. */
  selfId: string
  /** The cluster identity: it certifies the joiner's key for its role. */
  identity: KeyPair
  now?: () => number
}

/**
 * Records the joiner, with a certificate for its key and role (the caller
 * hands out everything once that is on disk). A join cannot take over a node: an id or an advertise address
 * that a node not marked 'left' holds is refused (a node that left and
 * comes back joins under a new id). Refusals throw a one-line UserError.
 */
export function admitJoiner(
  ctx: AdmissionContext,
  node: JoinRequestNode,
  role: NodeRole,
  holdsKey: (pubKey: string) => boolean = () => false,
): Admission {
  const key = keyOf('node', node.id)
  const prev = ctx.store.get<NodeRecord>(key)
  // A member coming back (it missed a key rotation): same id, same node key, proved by its signature.
  // Nothing is written: it gets the current key and the state, and its agent announces itself.
  if (prev && prev.state !== 'left' && node.id !== ctx.selfId && prev.pubKey === node.pubKey && holdsKey(node.pubKey)) {
    if (prev.role !== role) throw new UserError(`node ${prev.name} is a ${prev.role}: rejoin with a ${prev.role} token`)
    return 'rejoin'
  }
  if (node.id === ctx.selfId || (prev && prev.state !== 'left')) throw new UserError(`node id ${node.id} is already in use`)
  const holder = ctx.store
    .values<NodeRecord>(prefixOf('node'))
    .find((n) => n.id !== node.id && n.state !== 'left' && n.addr === node.addr)
  if (holder) throw new UserError(`address ${node.addr} is already in use by node ${holder.name}`)
  const rec: NodeRecord = {
    id: node.id,
    name: node.name,
    addr: node.addr,
    gossipPort: node.gossipPort,
    mtu: node.mtu,
    role,
    state: 'ready',
    joinedAt: (ctx.now ?? Date.now)(),
    pubKey: node.pubKey,
    cert: certifyNode(ctx.identity, node.id, node.pubKey, role),
  }
  ctx.store.put(key, rec)
  return 'admitted'
}
