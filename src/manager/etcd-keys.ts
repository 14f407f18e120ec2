// The layout of a cluster's desired state in etcd, under one prefix
// (/swarmnet/<cluster id>/ by default):
//
//   state/<store key>        the record, JSON (cluster, network/<id>, service/<id>, task/<id>, attachment/<id>)
//   alloc/<what>             one key per thing that must be unique, its value the record holding it:
//                            vni/<n>, subnet/<cidr>, addr/<network id>/<ip>, port/<proto>/<n>,
//                            name/network/<name>, name/service/<name>
//                            A port published in host mode: port/<proto>/<n> holds HOST_PORT (several
//                            services may publish it, one task per node, host-ports.ts), and every
//                            transaction that writes a task of such a service, or newly publishes the
//                            port, rewrites it: an ingress claim of the number and any placement that
//                            may put a second holder on a node are decided one after the other.
//   guard/networks           bumped by every network change: network changes are serialized,
//                            so subnets never overlap even when one is given by hand
//   roles/<node id>          a node's role as the last role change set it (manager, worker), or left
//                            (node rm, final); a node without one has the role it joined with (its
//                            gossip record). The leader publishes these over the gossip records.
//   guard/roles              bumped by every role change: role changes are serialized, so two
//                            managers demoting each other cannot both pass the last-manager check
//   leader                   the elected manager's node id, on its lease
//   lock/rotation            the manager rotating the cluster key, on its lease: one rotation at a time
//
// The records and their allocations are written in the same transaction, which
// creates an allocation key only if it does not exist: two managers racing for
// one address, VNI, subnet, port or name cannot both win.
import type {Json} from '../store/json.js'
import type {NodeRole} from '../model/types.js'

export const STATE = 'state/'
export const ALLOC = 'alloc/'
export const NETWORK_GUARD = 'guard/networks'
export const ROLES = 'roles/'
export const ROLE_GUARD = 'guard/roles'
export const LEADER = 'leader'
export const ROTATION_LOCK = 'lock/rotation'
/** The value of port/<proto>/<n> while host-mode services publish it (no one owner). */
export const HOST_PORT = 'host'

export const defaultPrefix = (clusterId: string) => `/swarmnet/${clusterId}/`

type Obj = Record<string, unknown>
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v)

/** The allocation keys (under alloc/) a record holds. */
export function allocationsOf(key: string, value: Json | null | undefined): string[] {
  if (!isObj(value)) return []
  const out: string[] = []
  const addr = (net: unknown, ip: unknown) => {
    if (typeof net === 'string' && typeof ip === 'string') out.push(`addr/${net}/${ip}`)
  }
  const list = (v: unknown): Obj[] => (Array.isArray(v) ? v.filter(isObj) : [])
  if (key.startsWith('network/')) {
    // The node-local bridge is the same record on every node: it takes nothing cluster-wide.
    if (value.driver === 'bridge') return []
    if (typeof value.vni === 'number') out.push(`vni/${value.vni}`)
    if (typeof value.subnet === 'string') out.push(`subnet/${value.subnet}`)
    if (typeof value.name === 'string') out.push(`name/network/${value.name}`)
  } else if (key.startsWith('service/')) {
    if (typeof value.name === 'string') out.push(`name/service/${value.name}`)
    for (const v of list(value.vips)) addr(v.networkId, v.ip)
    // Published ports in ingress mode have one owner; host mode ones: hostPortsOf.
    for (const p of list(value.ports))
      if (p.mode !== 'host' && typeof p.published === 'number' && typeof p.protocol === 'string')
        out.push(`port/${p.protocol}/${p.published}`)
  } else if (key.startsWith('task/')) {
    for (const a of list(value.attachments)) addr(a.networkId, a.ip)
  } else if (key.startsWith('attachment/')) {
    addr(value.networkId, value.ip)
  }
  return out
}

/** The port allocation keys a service publishes in host mode (shared: see HOST_PORT). */
export function hostPortsOf(value: Json | null | undefined): string[] {
  if (!isObj(value) || !Array.isArray(value.ports)) return []
  const out: string[] = []
  for (const p of value.ports)
    if (isObj(p) && p.mode === 'host' && typeof p.published === 'number' && typeof p.protocol === 'string')
      out.push(`port/${p.protocol}/${p.published}`)
  return out
}

/** The roles set in etcd by role changes (roles/<node id>). */
export function rolesOf(kvs: ReadonlyMap<string, {readonly value: string}>): Map<string, NodeRole> {
  const out = new Map<string, NodeRole>()
  for (const [k, v] of kvs)
    if (k.startsWith(ROLES) && (v.value === 'manager' || v.value === 'worker')) out.set(k.slice(ROLES.length), v.value)
  return out
}

/** The nodes removed in etcd (roles/<node id> = left: final). */
export function leftOf(kvs: ReadonlyMap<string, {readonly value: string}>): Set<string> {
  const out = new Set<string>()
  for (const [k, v] of kvs) if (k.startsWith(ROLES) && v.value === 'left') out.add(k.slice(ROLES.length))
  return out
}
