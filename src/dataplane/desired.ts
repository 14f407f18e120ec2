// What the BPF maps of one node should hold, derived from the store alone
// (plus the ifindexes of the node's own task devices). Pure, so the
// reconciler's whole decision is testable without a kernel.
import {taskMtu} from '../model/allocate.js'
import {NOBODY_DOWN, type MembershipView} from '../membership/view.js'
import type {Network, NodeRecord, Task} from '../model/types.js'

/** A local attachment: the host-side device the task runner made for (task, network). */
export interface LocalAttachment {
  taskId: string
  networkId: string
  hostIfindex: number
}

export interface DesiredEndpoint {
  vni: number
  ip: string
  nodeIp: string
  ifindex: number
  mac: string
  local: boolean
}

export interface DesiredMaps {
  networks: Map<number, {subnet: string; prefixLen: number; ingress: boolean; mtu: number}>
  /** keyed by `${vni}/${ip}` */
  endpoints: Map<string, DesiredEndpoint>
  /** keyed by host-side ifindex */
  devices: Map<number, {vni: number; ip: string}>
}

export interface ClusterView {
  selfId: string
  nodes: NodeRecord[]
  networks: Network[]
  tasks: Task[]
  local: LocalAttachment[]
  /** Liveness (src/membership/): endpoints of a node declared down leave the maps at once. */
  membership?: MembershipView
}

/**
 * Who writes each map of a node, and by which rule. 'store' maps are derived
 * from desired state by the agent's reconciler alone; 'datapath' maps are
 * written by the programs (counters, and the connection tracking to come) and
 * the reconciler never rewrites them, so a sync cannot wipe what the programs
 * learned.
 *   mirror: made to hold exactly the desired entries (stale keys deleted
 *           first, so a full map frees room before anything is inserted);
 *   config: one entry, set when the agent starts;
 *   none:   the agent only reads (and, for tables that grow, reclaims).
 */
export const MAP_OWNERSHIP = {
  sn_config: {owner: 'store', rule: 'config'},
  sn_networks: {owner: 'store', rule: 'mirror'},
  sn_endpoints: {owner: 'store', rule: 'mirror'},
  sn_devices: {owner: 'store', rule: 'mirror'},
  sn_stats: {owner: 'datapath', rule: 'none'},
} as const satisfies Record<string, {owner: 'store' | 'datapath'; rule: 'mirror' | 'config' | 'none'}>

export type MapName = keyof typeof MAP_OWNERSHIP

export type MirroredMap = {[K in MapName]: (typeof MAP_OWNERSHIP)[K]['rule'] extends 'mirror' ? K : never}[MapName]

/** The maps a sync mirrors, in the order it writes them. */
export const MIRRORED = (Object.keys(MAP_OWNERSHIP) as MapName[]).filter(
  (m): m is MirroredMap => MAP_OWNERSHIP[m].rule === 'mirror',
)

/** Encoded entries, keyed by the key's hex. */
export type Entries = Map<string, [Buffer, Buffer]>

export interface MirrorPlan {
  /** Keys in the map that are not wanted: deleted first. */
  remove: Buffer[]
  /** Entries missing or different: written after. */
  write: Array<[Buffer, Buffer]>
}

/** What to delete and what to write so that a map holding `have` holds exactly `want`. */
export function planMirror(have: ReadonlyMap<string, Buffer>, want: Entries): MirrorPlan {
  const remove: Buffer[] = []
  for (const hex of have.keys()) if (!want.has(hex)) remove.push(Buffer.from(hex, 'hex'))
  const write: Array<[Buffer, Buffer]> = []
  for (const [hex, [k, v]] of want) {
    const cur = have.get(hex)
    if (!cur || !cur.equals(v)) write.push([k, v])
  }
  return {remove, write}
}

export function desiredMaps(v: ClusterView): DesiredMaps {
  const out: DesiredMaps = {networks: new Map(), endpoints: new Map(), devices: new Map()}
  const netById = new Map(v.networks.filter((n) => n.driver === 'overlay' && n.vni !== undefined).map((n) => [n.id, n]))
  const view = v.membership ?? NOBODY_DOWN
  const nodeById = new Map(
    v.nodes.filter((n) => n.state !== 'left' && (n.id === v.selfId || !view.isDown(n.id))).map((n) => [n.id, n]),
  )
  const localIf = new Map(v.local.map((a) => [`${a.taskId}/${a.networkId}`, a.hostIfindex]))
  // Endpoints only of networks this node has a task on: the map grows with the node, not the cluster.
  const localNets = new Set(
    v.tasks
      .filter((t) => t.nodeId === v.selfId && t.desiredState === 'running')
      .flatMap((t) => t.attachments.map((a) => a.networkId)),
  )

  for (const n of netById.values()) {
    const [subnet, len] = n.subnet.split('/')
    out.networks.set(n.vni!, {subnet: subnet!, prefixLen: Number(len), ingress: n.ingress, mtu: taskMtu(n)})
  }
  for (const t of v.tasks) {
    if (t.desiredState !== 'running') continue
    const owner = nodeById.get(t.nodeId)
    if (!owner) continue
    for (const a of t.attachments) {
      const net = netById.get(a.networkId)
      if (!net || !localNets.has(a.networkId)) continue
      const isLocal = t.nodeId === v.selfId
      const ifindex = isLocal ? localIf.get(`${t.id}/${a.networkId}`) : 0
      // A local task whose device does not exist yet has no endpoint here until it does.
      if (isLocal && !ifindex) continue
      out.endpoints.set(`${net.vni}/${a.ip}`, {
        vni: net.vni!,
        ip: a.ip,
        nodeIp: owner.addr,
        ifindex: ifindex ?? 0,
        mac: a.mac,
        local: isLocal,
      })
      if (isLocal) out.devices.set(ifindex!, {vni: net.vni!, ip: a.ip})
    }
  }
  return out
}
