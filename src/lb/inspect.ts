// What `swarmnet inspect lb` shows: the load-balancing maps of one node, as
// programmed (frontends, backends) and as used (live flows per backend, from
// the node's connection tracking), named from the node's own copy of the store.
// Reads pins and the state file only, so it works with the agent stopped.
import {SN_CT_DIR, SN_CT_FLAGS} from '../bpf/codecs.js'
import {sortPorts} from '../model/ports.js'
import {taskName} from '../model/task-name.js'
import type {Network, NodeRecord, Service, Task} from '../model/types.js'

/** The decoded entries of the LB maps that matter here (see bpf/include/lb.h). */
export type LbMaps = {
  services: {key: {vni: number; vip: string}; value: {table: number; size: number; count: number}}[]
  backends: {key: {vni: number; vip: string; ip: string}; value: {node_ip: string}}[]
  ct: {key: {vni: number; dst: string; dir: number}; value: {addr: string; flags: number}}[]
}

/** The store's records the maps are named from. */
export type LbNames = {services: Service[]; networks: Network[]; tasks: Task[]; nodes: NodeRecord[]}

export interface LbBackendView {
  ip: string
  /** The task that has this address on the network, if the store knows it. */
  task?: string
  node: string
  /** Connection-tracking entries on this node that send a flow to it and have seen no FIN or RST. */
  flows: number
  /**
   * Its task is being stopped (the store says shutdown): kept for the flows it has, given no new
   * one (src/tasks/stop.ts). Absent: serving.
   */
  draining?: true
}

export interface LbFrontendView {
  network: string
  vni: number
  vip: string
  /** false: the store has this VIP but the node's maps do not (yet). */
  programmed: boolean
  /** Slots of the service's Maglev table on this node. */
  tableSize?: number
  backends: LbBackendView[]
}

export interface LbServiceView {
  /** The service's name; '?' for a VIP in the maps that the store no longer has. */
  service: string
  frontends: LbFrontendView[]
  /** Its published ports, as the store has them (by protocol, then published port). */
  ports: LbPortView[]
}

/** A published port and the tasks behind it (from the node's copy of the store). */
export interface LbPortView {
  published: number
  target: number
  protocol: 'tcp' | 'udp'
  mode: 'ingress' | 'host'
  /** ingress: every node of the cluster; host: the nodes that run a task of the service. */
  nodes: string[]
  backends: LbPortBackendView[]
}

export interface LbPortBackendView {
  task: string
  node: string
  /** ingress mode: the task's address on the ingress network, where the mesh sends P's flows (to target). */
  ip?: string
}

/** Every vip-mode service of the store and every VIP of the maps, joined; sorted by service name. */
export function lbView(maps: LbMaps, names: LbNames): LbServiceView[] {
  const netById = new Map(names.networks.map((n) => [n.id, n]))
  const netByVni = new Map(names.networks.filter((n) => n.vni !== undefined).map((n) => [n.vni!, n]))
  const nodeByAddr = new Map(names.nodes.map((n) => [n.addr, n.name]))
  const fk = (vni: number, vip: string) => `${vni}/${vip}`
  const programmed = new Map(maps.services.map((e) => [fk(e.key.vni, e.key.vip), e.value]))
  const flows = new Map<string, number>()
  for (const e of maps.ct) {
    if (e.key.dir !== SN_CT_DIR.FORWARD || (e.value.flags & SN_CT_FLAGS.SEEN_FIN) !== 0) continue
    const k = `${fk(e.key.vni, e.key.dst)}/${e.value.addr}`
    flows.set(k, (flows.get(k) ?? 0) + 1)
  }
  // An address may be held by a running task and still by a stopping one it was given to before: the running one is named.
  const taskOf = (netId: string | undefined, ip: string) => {
    const holders = names.tasks.filter((x) => x.attachments.some((a) => a.networkId === netId && a.ip === ip))
    return holders.find((t) => t.desiredState === 'running') ?? holders[0]
  }
  const frontend = (vni: number, vip: string): LbFrontendView => {
    const net = netByVni.get(vni)
    const p = programmed.get(fk(vni, vip))
    return {
      network: net?.name ?? `vni ${vni}`,
      vni,
      vip,
      programmed: p !== undefined,
      tableSize: p?.size,
      backends: maps.backends
        .filter((b) => b.key.vni === vni && b.key.vip === vip)
        .map((b) => {
          const t = taskOf(net?.id, b.key.ip)
          return {
            ip: b.key.ip,
            task: t ? taskName(t) : undefined,
            node: nodeByAddr.get(b.value.node_ip) ?? b.value.node_ip,
            flows: flows.get(`${fk(vni, vip)}/${b.key.ip}`) ?? 0,
            ...(t && t.desiredState !== 'running' ? {draining: true as const} : {}),
          }
        })
        .sort((a, b) => cmp(a.task ?? a.ip, b.task ?? b.ip)),
    }
  }

  const ingressNet = names.networks.find((n) => n.ingress)
  const nodeName = new Map(names.nodes.map((n) => [n.id, n.name]))
  const ports = (s: Service): LbPortView[] => {
    const tasks = names.tasks
      .filter((t) => t.serviceId === s.id && t.desiredState === 'running')
      .sort((a, b) => a.slot - b.slot || cmp(a.nodeId, b.nodeId))
    return sortPorts(s.ports ?? []).map((p) => ({
      published: p.published,
      target: p.target,
      protocol: p.protocol,
      mode: p.mode,
      nodes:
        p.mode === 'ingress'
          ? names.nodes.filter((n) => n.state !== 'left').map((n) => n.name)
          : [...new Set(tasks.map((t) => nodeName.get(t.nodeId) ?? t.nodeId))].sort(cmp),
      backends: tasks.map((t) => {
        const ip = p.mode === 'ingress' ? t.attachments.find((a) => a.networkId === ingressNet?.id)?.ip : undefined
        return {task: taskName(t), node: nodeName.get(t.nodeId) ?? t.nodeId, ...(ip ? {ip} : {})}
      }),
    }))
  }

  const out: LbServiceView[] = []
  const known = new Set<string>()
  for (const s of names.services) {
    if ((s.endpointMode ?? 'vip') !== 'vip') {
      // dnsrr: no frontend; listed only for its (host-mode) published ports.
      if ((s.ports ?? []).length > 0) out.push({service: s.name, frontends: [], ports: ports(s)})
      continue
    }
    const fronts: LbFrontendView[] = []
    for (const v of s.vips ?? []) {
      const vni = netById.get(v.networkId)?.vni
      if (vni === undefined) continue
      known.add(fk(vni, v.ip))
      fronts.push(frontend(vni, v.ip))
    }
    out.push({service: s.name, frontends: fronts, ports: ports(s)})
  }
  for (const e of maps.services) {
    if (known.has(fk(e.key.vni, e.key.vip))) continue
    out.push({service: '?', frontends: [frontend(e.key.vni, e.key.vip)], ports: []})
  }
  return out.sort((a, b) => cmp(a.service, b.service))
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}
