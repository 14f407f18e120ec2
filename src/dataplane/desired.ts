// What the BPF maps of one node should hold, derived from the store alone
// (plus the ifindexes of the node's own task devices). Pure, so the
// reconciler's whole decision is testable without a kernel.
import {createHash} from 'node:crypto'
import {macForIp, taskMtu} from '../model/allocate.js'
import {NOBODY_DOWN, type MembershipView} from '../membership/view.js'
import type {Network, NodeRecord, Service, Task, TaskStatus} from '../model/types.js'
import {maglevTier, slotKey, slotUniverse} from '../lb/maglev.js'
import {desiredMesh, meshNetworkIds, type DesiredMesh, type LocalGateway} from './mesh.js'
import {MAP_OWNERSHIP} from '../bpf/ownership.js'

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
  /** A service VIP (answered for by ARP, load-balanced by tc); absent when not. */
  vip?: true
  /** A backend of some VIP: replies from it are looked up for reverse NAT; absent when not. */
  backend?: true
}

export interface DesiredBackend {
  /** The Maglev key: the task id, the same on every node. */
  key: string
  ip: string
  nodeIp: string
  /** The key of the table's universe this backend holds (its task slot, or its node); absent: none. */
  owns?: string
}

/** One VIP of a service on one network. */
export interface DesiredService {
  serviceId: string
  vni: number
  vip: string
  /** Maglev table size (prime): the tier of the service's scale (src/lb/maglev.ts maglevTier). */
  size: number
  /**
   * The keys the Maglev fill is over (src/lb/maglev.ts lbTable): a replicated
   * service's slots 1..capacity of its tier, a global service's nodes. Absent:
   * the backends' own keys (plain Maglev).
   */
  universe?: string[]
  /** Running backends, sorted by key. */
  backends: DesiredBackend[]
  /**
   * Tasks being stopped (src/tasks/stop.ts), sorted by key: in the VIP's backend set (sn_backends),
   * so their established flows go on, but in no table, so no new flow goes to them. Absent: none.
   */
  draining?: DesiredBackend[]
  /** sn_maglev id of the table: derived from what the table is made of, unique among the desired services. */
  tableId: number
  /** What the table is made of: equal contents give equal tables (src/lb/maglev.ts is deterministic). */
  contents: string
}

export interface DesiredMaps {
  networks: Map<number, {subnet: string; prefixLen: number; ingress: boolean; mtu: number}>
  /** keyed by `${vni}/${ip}` */
  endpoints: Map<string, DesiredEndpoint>
  /** keyed by host-side ifindex */
  devices: Map<number, {vni: number; ip: string; backend?: true}>
  /** VIPs, keyed by `${vni}/${vip}`; none when absent */
  services?: Map<string, DesiredService>
  /**
   * This node's tasks' gateway-bridge veths (host side), keyed by ifindex: the addresses each task
   * may send from there (tc_gw.c drops other sources); none when absent.
   */
  gateways?: Map<number, {gwIp: string; ingressIp?: string}>
  /** Published ports (src/dataplane/mesh.ts); none when absent */
  mesh?: DesiredMesh
  /** The DNS fast path's names and askers (src/dns/fastpath.ts), encoded; empty when absent. */
  dns?: DesiredDns
  /**
   * This node's tasks, by task id, with the networks each is on (VNI, its address there): whose
   * sockets the connect() load balancer acts for (src/dataplane/sock-lb.ts); none when absent.
   */
  sockTasks?: Map<string, Array<{vni: number; ip: string}>>
  /**
   * Tasks being stopped on the networks these maps hold: in no table or DNS answer here once the
   * maps are written (what the node acknowledges: src/dataplane/drain-acks.ts); none when absent.
   */
  drained?: string[]
}

export interface DesiredDns {
  names: Entries
  /** Reverse (PTR) names by (VNI, address). */
  ptrs: Entries
  scopes: Entries
}

export interface ClusterView {
  selfId: string
  nodes: NodeRecord[]
  networks: Network[]
  tasks: Task[]
  local: LocalAttachment[]
  /** Liveness (src/membership/): endpoints of a node declared down leave the maps at once. */
  membership?: MembershipView
  /** Services (their VIPs) and the tasks' reported states (backends are the running ones). */
  services?: Service[]
  statuses?: ReadonlyMap<string, Pick<TaskStatus, 'state'> & Partial<Pick<TaskStatus, 'gwIp' | 'health'>>>
  /** This node's tasks' gateway-bridge veths (host-mode published ports). */
  localGateways?: LocalGateway[]
  /** This node's own addresses that answer published ports (src/dataplane/node-addrs.ts). */
  localAddrs?: readonly string[]
}

// Who writes each map, and by which rule: one table for the reconciler and the layout upgrade.
export {MAP_OWNERSHIP}

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

/** The nodes whose tasks may serve: members not declared down (this node always). */
export function servingNodes(v: Pick<ClusterView, 'nodes' | 'selfId' | 'membership'>): Map<string, NodeRecord> {
  const view = v.membership ?? NOBODY_DOWN
  return new Map(v.nodes.filter((n) => n.state !== 'left' && (n.id === v.selfId || !view.isDown(n.id))).map((n) => [n.id, n]))
}

/**
 * A task being stopped gracefully: its record says shutdown but its node still reports it running.
 * It keeps its endpoint (established connections go on) and is a backend for no new flow or name.
 */
export function isDraining(t: Task, nodeById: ReadonlyMap<string, NodeRecord>, statuses: ClusterView['statuses']): boolean {
  return t.desiredState === 'shutdown' && nodeById.has(t.nodeId) && statuses?.get(t.id)?.state === 'running'
}

/**
 * A backend of its service (the LB's rule, and DNS's): meant to run, reported running and, when
 * its service has a health check, healthy (src/tasks/health.ts), on a serving node.
 */
export function isServing(t: Task, nodeById: ReadonlyMap<string, NodeRecord>, statuses: ClusterView['statuses']): boolean {
  const st = statuses?.get(t.id)
  return (
    t.desiredState === 'running' &&
    nodeById.has(t.nodeId) &&
    st?.state === 'running' &&
    (st.health === undefined || st.health === 'healthy')
  )
}

/**
 * The networks whose endpoints and VIPs a node's maps hold: only those it has a task on (the maps
 * grow with the node, not the cluster), a task being stopped keeping its networks until it is gone
 * (its established flows go on); and the mesh's, everyone's (published ports answer on every node).
 */
export function heldNetworks(
  v: Pick<ClusterView, 'tasks' | 'networks' | 'services' | 'statuses'>,
  nodeById: ReadonlyMap<string, NodeRecord>,
  nodeId: string,
): Set<string> {
  const out = new Set(meshNetworkIds(v))
  for (const t of v.tasks)
    if (t.nodeId === nodeId && holdsItsNetworks(t, nodeById, v.statuses)) for (const a of t.attachments) out.add(a.networkId)
  return out
}

/** Whether a task makes its node hold its networks (heldNetworks): meant to run, or draining. */
export function holdsItsNetworks(t: Task, nodeById: ReadonlyMap<string, NodeRecord>, statuses: ClusterView['statuses']): boolean {
  return t.desiredState === 'running' || isDraining(t, nodeById, statuses)
}

export function desiredMaps(v: ClusterView): DesiredMaps {
  const out: Required<Omit<DesiredMaps, 'mesh' | 'dns' | 'gateways' | 'sockTasks' | 'drained'>> = {
    networks: new Map(),
    endpoints: new Map(),
    devices: new Map(),
    services: new Map(),
  }
  const netById = new Map(v.networks.filter((n) => n.driver === 'overlay' && n.vni !== undefined).map((n) => [n.id, n]))
  const nodeById = servingNodes(v)
  const localIf = new Map(v.local.map((a) => [`${a.taskId}/${a.networkId}`, a.hostIfindex]))
  const localNets = heldNetworks(v, nodeById, v.selfId)

  for (const n of netById.values()) {
    const [subnet, len] = n.subnet.split('/')
    out.networks.set(n.vni!, {subnet: subnet!, prefixLen: Number(len), ingress: n.ingress, mtu: taskMtu(n)})
  }
  // An address freed by a stopped task may be given to its replacement (on another node) while
  // this node still sees the old one draining (the store's changes come in any order): the task
  // meant to run holds the address here, never the one going away.
  const heldByRunning = new Set<string>()
  const sockTasks = new Map<string, Array<{vni: number; ip: string}>>()
  for (const t of v.tasks) {
    const draining = t.desiredState !== 'running'
    if (draining && !isDraining(t, nodeById, v.statuses)) continue
    const owner = nodeById.get(t.nodeId)
    if (!owner) continue
    for (const a of t.attachments) {
      const net = netById.get(a.networkId)
      if (!net || !localNets.has(a.networkId)) continue
      const isLocal = t.nodeId === v.selfId
      const ifindex = isLocal ? localIf.get(`${t.id}/${a.networkId}`) : 0
      // A local task whose device does not exist yet has no endpoint here until it does.
      if (isLocal && !ifindex) continue
      // Its device stays either way: a draining task still sends (its flows' replies).
      if (isLocal) out.devices.set(ifindex!, {vni: net.vni!, ip: a.ip})
      if (isLocal) sockTasks.set(t.id, [...(sockTasks.get(t.id) ?? []), {vni: net.vni!, ip: a.ip}])
      const key = `${net.vni}/${a.ip}`
      if (draining && heldByRunning.has(key)) continue
      if (!draining) heldByRunning.add(key)
      out.endpoints.set(key, {
        vni: net.vni!,
        ip: a.ip,
        nodeIp: owner.addr,
        ifindex: ifindex ?? 0,
        mac: a.mac,
        local: isLocal,
      })
    }
  }
  desiredServices(v, out, netById, nodeById, localNets)
  const drained = v.tasks
    .filter((t) => isDraining(t, nodeById, v.statuses) && t.attachments.some((a) => localNets.has(a.networkId)))
    .map((t) => t.id)
  return {
    ...out,
    drained,
    gateways: desiredGateways(v, netById),
    mesh: desiredMesh({...v, nodes: [...nodeById.values()]}, new Set(out.services.keys())),
    sockTasks,
  }
}

/**
 * The gateway-bridge veths of this node's tasks: a veth whose task has no gateway-bridge address
 * reported yet has no entry (tc_gw then answers for no flow from it).
 */
function desiredGateways(v: ClusterView, netById: ReadonlyMap<string, Network>): Map<number, {gwIp: string; ingressIp?: string}> {
  const out = new Map<number, {gwIp: string; ingressIp?: string}>()
  const taskById = new Map(v.tasks.map((t) => [t.id, t]))
  for (const g of v.localGateways ?? []) {
    const gwIp = v.statuses?.get(g.taskId)?.gwIp
    if (!gwIp) continue
    const ingressIp = taskById.get(g.taskId)?.attachments.find((a) => netById.get(a.networkId)?.ingress)?.ip
    out.set(g.hostIfindex, ingressIp ? {gwIp, ingressIp} : {gwIp})
  }
  return out
}

/**
 * The VIPs of the networks this node has a task on, with their running
 * backends: an endpoint entry per VIP (flag VIP, its MAC for ARP), the
 * backend flag on the backends' endpoints and devices, and one Maglev table each.
 */
function desiredServices(
  v: ClusterView,
  out: Required<Omit<DesiredMaps, 'mesh' | 'dns' | 'gateways' | 'sockTasks' | 'drained'>>,
  netById: ReadonlyMap<string, Network>,
  nodeById: ReadonlyMap<string, NodeRecord>,
  localNets: ReadonlySet<string>,
): void {
  const tasksBySvc = new Map<string, Task[]>()
  for (const t of v.tasks) {
    const list = tasksBySvc.get(t.serviceId) ?? []
    list.push(t)
    tasksBySvc.set(t.serviceId, list)
  }
  const byId = new Map<number, DesiredService>()
  const services = [...(v.services ?? [])].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  for (const s of services) {
    if ((s.endpointMode ?? 'vip') !== 'vip') continue
    const tasks = tasksBySvc.get(s.id) ?? []
    // The table is built over the service's slots (or nodes), not what runs now, so a task that stops moves only its own flows.
    const replicas = 'replicas' in s.mode ? s.mode.replicas : undefined
    const replicated = replicas !== undefined
    const nodeIds = replicated ? [] : v.nodes.filter((n) => n.state !== 'left').map((n) => n.id)
    const tier = maglevTier(replicas ?? nodeIds.length)
    const universe = replicated ? slotUniverse(tier.capacity) : nodeIds.sort()
    for (const vip of s.vips ?? []) {
      const net = netById.get(vip.networkId)
      if (!net || !localNets.has(vip.networkId)) continue
      const vni = net.vni!
      const backends: DesiredBackend[] = []
      const draining: DesiredBackend[] = []
      for (const t of tasks) {
        const owner = nodeById.get(t.nodeId)
        const a = t.attachments.find((x) => x.networkId === vip.networkId)
        if (!owner || !a) continue
        const serving = isServing(t, nodeById, v.statuses)
        if (!serving && !isDraining(t, nodeById, v.statuses)) continue
        const ep = out.endpoints.get(`${vni}/${a.ip}`)
        if (!ep) continue // a local task whose device is not there yet
        if (!serving && ep.nodeIp !== owner.addr) continue // its address is another node's task's now
        ;(serving ? backends : draining).push({
          key: t.id,
          ip: a.ip,
          nodeIp: owner.addr,
          owns: replicated ? slotKey(t.slot) : t.nodeId,
        })
        ep.backend = true
        if (ep.local) {
          const dev = out.devices.get(ep.ifindex)
          if (dev) dev.backend = true
        }
      }
      backends.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
      // A draining task whose address a serving one holds now (see desiredMaps) is no backend here:
      // both would be one entry of sn_backends, and it must name the serving task's node.
      if (draining.length > 0) {
        const serving = new Set(backends.map((b) => b.ip))
        for (let i = draining.length - 1; i >= 0; i--) if (serving.has(draining[i]!.ip)) draining.splice(i, 1)
      }
      draining.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
      // More running backends than the tier holds (a scale-down under way): the next tier, so every backend fits.
      const size = backends.length > tier.capacity ? maglevTier(backends.length).size : tier.size
      const contents =
        `${vni}/${vip.ip}/${size}/${replicated ? `slots:${tier.capacity}` : universe.join(',')}/` +
        backends.map((b) => `${b.key}=${b.ip}@${b.owns}`).join(',') +
        // Draining backends are in no slot, but part of the table's identity: when one finally
        // leaves, the table id changes, so its flows are checked against the set and refused.
        (draining.length > 0 ? `/draining:${draining.map((b) => b.key).join(',')}` : '')
      let tableId = tableIdOf(contents)
      // Ids are unique among desired tables: a clash takes the next free id, in service order, the same on every sync.
      while (tableId === 0 || (byId.has(tableId) && byId.get(tableId)!.contents !== contents)) tableId = (tableId + 1) >>> 0
      const d: DesiredService = {
        serviceId: s.id,
        vni,
        vip: vip.ip,
        size,
        universe,
        backends,
        ...(draining.length > 0 ? {draining} : {}),
        tableId,
        contents,
      }
      byId.set(tableId, d)
      out.services.set(`${vni}/${vip.ip}`, d)
      out.endpoints.set(`${vni}/${vip.ip}`, {
        vni,
        ip: vip.ip,
        nodeIp: '0.0.0.0',
        ifindex: 0,
        mac: macForIp(vip.ip),
        local: false,
        vip: true,
      })
    }
  }
}

function tableIdOf(contents: string): number {
  return createHash('sha256').update(contents).digest().readUInt32BE(0)
}
