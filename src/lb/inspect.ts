// What `swarmnet inspect lb` shows: the load-balancing maps of one node, as
// programmed (frontends, backends) and as used (live flows per backend, from
// the node's connection tracking), named from the node's own copy of the store.
// Reads pins and the state file only, so it works with the agent stopped.
import {SN_CT_DIR, SN_CT_FLAGS} from '../bpf/codecs.js'
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
  const taskOf = (netId: string | undefined, ip: string) => {
    const t = names.tasks.find((x) => x.attachments.some((a) => a.networkId === netId && a.ip === ip))
    return t ? taskName(t) : undefined
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
        .map((b) => ({
          ip: b.key.ip,
          task: taskOf(net?.id, b.key.ip),
          node: nodeByAddr.get(b.value.node_ip) ?? b.value.node_ip,
          flows: flows.get(`${fk(vni, vip)}/${b.key.ip}`) ?? 0,
        }))
        .sort((a, b) => cmp(a.task ?? a.ip, b.task ?? b.ip)),
    }
  }

  const out: LbServiceView[] = []
  const known = new Set<string>()
  for (const s of names.services) {
    if ((s.endpointMode ?? 'vip') !== 'vip') continue
    const fronts: LbFrontendView[] = []
    for (const v of s.vips ?? []) {
      const vni = netById.get(v.networkId)?.vni
      if (vni === undefined) continue
      known.add(fk(vni, v.ip))
      fronts.push(frontend(vni, v.ip))
    }
    out.push({service: s.name, frontends: fronts})
  }
  for (const e of maps.services) {
    if (known.has(fk(e.key.vni, e.key.vip))) continue
    out.push({service: '?', frontends: [frontend(e.key.vni, e.key.vip)]})
  }
  return out.sort((a, b) => cmp(a.service, b.service))
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}
