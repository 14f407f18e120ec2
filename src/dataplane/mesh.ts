// The routing mesh's desired state (bpf/include/mesh.h): which published ports
// this node answers, and where each goes. Pure, from the store and the
// node's own task devices, like the rest of desired.ts.
//
//   mode=ingress: on every node, to the service's VIP on the ingress network
//     (its Maglev table and backends come with the VIPs: the ingress network
//     counts as a network of this node as soon as any service publishes on it);
//   mode=host: only on a node that runs a task of the service, to that task's
//     gateway-bridge address.
import {macForIp} from '../model/allocate.js'
import type {Network, PublishedPort, Service, Task, TaskStatus} from '../model/types.js'
import {
  ipv4Key,
  snMeshConfig,
  snMeshNode,
  snMeshPort,
  snMeshPortKey,
  snSockKey,
  snSockTargets,
  u32,
  SN_MESH_MODE,
  SN_SOCK_MAX_TARGETS,
  type SockTarget,
} from '../bpf/codecs.js'
import type {BpfMap} from '../bpf/map.js'

export const PROTO_NUMBER = {tcp: 6, udp: 17} as const

/** A task's gateway-bridge veth on this node (host side), for host-mode ports. */
export interface LocalGateway {
  taskId: string
  hostIfindex: number
}

export interface DesiredMeshPort {
  port: number
  protocol: PublishedPort['protocol']
  mode: PublishedPort['mode']
  target: number
  serviceId: string
  /** ingress: the ingress network's VNI; host: 0 */
  vni: number
  /** ingress: the service's VIP on the ingress network; host: the local task's gateway-bridge address */
  addr: string
  /** host: the host side of the task's gateway-bridge veth, and the task's MAC on it */
  ifindex: number
  mac: string
  /**
   * Where this node's own sockets to the port go (bpf/sock_mesh.c): the local tasks' gateway-bridge
   * addresses and the target port, else the underlay addresses of other nodes that run a task and
   * the published port (their XDP answers it). Empty: the port has no task anywhere yet.
   */
  sock: SockTarget[]
}

export interface DesiredMesh {
  /** keyed by `${port}/${protocol}` */
  ports: Map<string, DesiredMeshPort>
  /**
   * The cluster's nodes, underlay address -> gossip port: the only senders of mesh requests over
   * VXLAN, and the addresses whose data-path and gossip ports no task may reach (tc_gw.c).
   */
  nodes: Map<string, number>
  /** 0 when there is no ingress network. */
  ingressVni: number
  /** This node's own addresses that answer published ports besides its underlay one (src/dataplane/node-addrs.ts). */
  addrs: readonly string[]
}

export interface MeshView {
  selfId: string
  nodes: ReadonlyArray<{id: string; addr: string; state: string; gossipPort: number}>
  networks: readonly Network[]
  tasks: readonly Task[]
  services?: readonly Service[]
  statuses?: ReadonlyMap<string, Pick<TaskStatus, 'state'> & Partial<Pick<TaskStatus, 'gwIp' | 'health'>>>
  localGateways?: readonly LocalGateway[]
  /** This node's own addresses (node-addrs.ts meshAddrs); none when absent. */
  localAddrs?: readonly string[]
}

const hasIngressPort = (s: Service) => (s.ports ?? []).some((p) => p.mode === 'ingress')

/** The networks every node must program because published ports use them: the ingress network, once any service publishes. */
export function meshNetworkIds(v: Pick<MeshView, 'networks' | 'services'>): string[] {
  if (!(v.services ?? []).some(hasIngressPort)) return []
  return v.networks.filter((n) => n.ingress && n.driver === 'overlay' && n.vni !== undefined).map((n) => n.id)
}

/**
 * The published ports of this node. `tables` says which (VNI, VIP) pairs have
 * a Maglev table in this sync (desired.ts's services): an ingress port whose
 * VIP has none is left out rather than pointed at nothing.
 */
export function desiredMesh(v: MeshView, tables: ReadonlySet<string>): DesiredMesh {
  const ingress = v.networks.find((n) => n.ingress && n.driver === 'overlay' && n.vni !== undefined)
  const out: DesiredMesh = {
    ports: new Map(),
    nodes: new Map(v.nodes.filter((n) => n.state !== 'left').map((n) => [n.addr, n.gossipPort])),
    ingressVni: ingress?.vni ?? 0,
    addrs: v.localAddrs ?? [],
  }
  const gwIf = new Map((v.localGateways ?? []).map((g) => [g.taskId, g.hostIfindex]))
  const services = [...(v.services ?? [])].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  // Host mode first: on a node that runs its task, a host-mode port is that task's.
  for (const s of services) {
    for (const p of s.ports ?? []) {
      if (p.mode !== 'host') continue
      const key = `${p.published}/${p.protocol}`
      if (out.ports.has(key)) continue
      const t = v.tasks.find(
        (x) =>
          x.serviceId === s.id &&
          x.nodeId === v.selfId &&
          x.desiredState === 'running' &&
          v.statuses?.get(x.id)?.state === 'running' &&
          v.statuses?.get(x.id)?.gwIp !== undefined &&
          gwIf.has(x.id),
      )
      if (!t) continue
      const gwIp = v.statuses!.get(t.id)!.gwIp!
      out.ports.set(key, {
        port: p.published,
        protocol: p.protocol,
        mode: 'host',
        target: p.target,
        serviceId: s.id,
        vni: 0,
        addr: gwIp,
        ifindex: gwIf.get(t.id)!,
        mac: macForIp(gwIp),
        sock: [{addr: gwIp, port: p.target}],
      })
    }
  }
  if (ingress) {
    for (const s of services) {
      const vip = s.vips?.find((x) => x.networkId === ingress.id)
      for (const p of s.ports ?? []) {
        const key = `${p.published}/${p.protocol}`
        if (p.mode !== 'ingress' || out.ports.has(key) || !vip || !tables.has(`${ingress.vni}/${vip.ip}`)) continue
        out.ports.set(key, {
          port: p.published,
          protocol: p.protocol,
          mode: 'ingress',
          target: p.target,
          serviceId: s.id,
          vni: ingress.vni!,
          addr: vip.ip,
          ifindex: 0,
          mac: '00:00:00:00:00:00',
          sock: sockTargets(v, s.id, p),
        })
      }
    }
  }
  return out
}

/**
 * An ingress port's targets for this node's own sockets: a local task straight through the gateway
 * bridge (no hop), else another node that runs one, on the published port, as any client reaches it.
 */
function sockTargets(v: MeshView, serviceId: string, p: PublishedPort): SockTarget[] {
  const serving = v.tasks
    .filter((t) => {
      const st = v.statuses?.get(t.id)
      // desired.ts isServing's rule (its nodes are filtered by the caller already): running and, with a check, healthy.
      return (
        t.serviceId === serviceId &&
        t.desiredState === 'running' &&
        st?.state === 'running' &&
        (st.health === undefined || st.health === 'healthy')
      )
    })
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  const local = serving
    .filter((t) => t.nodeId === v.selfId && v.statuses?.get(t.id)?.gwIp !== undefined)
    .map((t) => ({addr: v.statuses!.get(t.id)!.gwIp!, port: p.target}))
  if (local.length > 0) return local.slice(0, SN_SOCK_MAX_TARGETS)
  const addrs = new Map(v.nodes.filter((n) => n.state !== 'left').map((n) => [n.id, n.addr]))
  const remote = [
    ...new Set(serving.filter((t) => t.nodeId !== v.selfId && addrs.has(t.nodeId)).map((t) => addrs.get(t.nodeId)!)),
  ]
  return remote.map((addr) => ({addr, port: p.published})).slice(0, SN_SOCK_MAX_TARGETS)
}

type Entries = Map<string, [Buffer, Buffer]>
const entry = (k: Buffer, v: Buffer): [string, [Buffer, Buffer]] => [k.toString('hex'), [k, v]]

/** sn_mesh_ports, sn_mesh_nodes, sn_mesh_addrs and sn_sock_targets as their maps' bytes (all mirrored). */
export function encodeMesh(m: DesiredMesh | undefined): {
  sn_mesh_ports: Entries
  sn_mesh_nodes: Entries
  sn_mesh_addrs: Entries
  sn_sock_targets: Entries
} {
  return {
    sn_mesh_addrs: new Map((m?.addrs ?? []).map((a) => entry(ipv4Key.encode(a), u32.encode(0)))),
    sn_sock_targets: new Map(
      [...(m?.ports.values() ?? [])]
        .filter((p) => p.sock.length > 0)
        .map((p) => entry(snSockKey.encode({port: p.port, proto: PROTO_NUMBER[p.protocol]}), snSockTargets.encode(p.sock))),
    ),
    sn_mesh_ports: new Map(
      [...(m?.ports.values() ?? [])].map((p) =>
        entry(
          snMeshPortKey.encode({port: p.port, proto: PROTO_NUMBER[p.protocol]}),
          snMeshPort.encode({
            vni: p.vni,
            addr: p.addr,
            target: p.target,
            mode: p.mode === 'host' ? SN_MESH_MODE.HOST : SN_MESH_MODE.INGRESS,
            flags: 0,
            ifindex: p.ifindex,
            mac: p.mac,
          }),
        ),
      ),
    ),
    sn_mesh_nodes: new Map(
      [...(m?.nodes ?? [])].map(([ip, gossipPort]) =>
        entry(ipv4Key.encode(ip), snMeshNode.encode({gossip_port: gossipPort, flags: 0})),
      ),
    ),
  }
}

/**
 * The rest of a sync that is the mesh's: sn_mesh_config's one entry, and the
 * per-port counters of ports no longer published reclaimed (the programs make
 * an entry on a port's first packet; the agent makes it when it publishes, so
 * `inspect maps` shows a new port at zero).
 */
export function syncMeshExtras(maps: {sn_mesh_config: BpfMap; sn_mesh_stats: BpfMap}, m: DesiredMesh | undefined): void {
  const cfg = snMeshConfig.encode({ingress_vni: m?.ingressVni ?? 0, flags: 0})
  const cur = maps.sn_mesh_config.lookup(u32.encode(0))
  if (!cur || !cur.equals(cfg)) maps.sn_mesh_config.update(u32.encode(0), cfg)
  const want = new Set(
    [...(m?.ports.values() ?? [])].map((p) =>
      snMeshPortKey.encode({port: p.port, proto: PROTO_NUMBER[p.protocol]}).toString('hex'),
    ),
  )
  for (const [k] of maps.sn_mesh_stats.entries()) if (!want.has(k.toString('hex'))) maps.sn_mesh_stats.delete(k)
}
