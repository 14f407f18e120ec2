/**
 * The node the fuzzer (bench/fuzz.ts) plays: its namespace (an underlay with
 * known neighbours, so the programs' FIB lookups give known answers, and veths
 * that stand for task devices) and its maps, written by the agent's own code
 * (the desired state encoded by src/dataplane/mapsync.ts's encodeDesired and
 * written by its mirrorMaps, Maglev tables included), as a node of a
 * three-node cluster holds them: two overlay networks, the ingress network,
 * VIPs with local and remote backends and one without any, published ports
 * (ingress mode with local and remote backends, one without backends, host
 * mode), the cluster's nodes, a second node address, gateway veths.
 */
import {execFileSync, spawnSync} from 'node:child_process'
import fs from 'node:fs'
import {writeProbeKeys} from '../src/dataplane/probe-keys.js'
import type {DesiredBackend, DesiredEndpoint, DesiredMaps, DesiredService} from '../src/dataplane/desired.js'
import {encodeDesired, mirrorMaps, type TableState} from '../src/dataplane/mapsync.js'
import {syncMeshExtras, type DesiredMeshPort} from '../src/dataplane/mesh.js'
import {maglevSize} from '../src/lb/maglev.js'
import type {Loaded} from '../test/bpf/harness.js'

export const NODE = '172.30.0.11'
export const PEER = '172.30.0.12'
export const THIRD = '172.30.0.13'
/** Not a node of the cluster. */
export const STRANGER = '172.30.0.99'
/** A second address of the node (sn_mesh_addrs), and one on its link that is not the node's. */
export const SECOND = '172.30.0.21'
export const NOT_OURS = '172.30.0.22'
/** Clients of published ports: with a neighbour entry, on the link without one, beyond any route. */
export const CLIENT = '172.30.0.100'
export const CLIENT_NO_NEIGH = '172.30.0.101'
export const CLIENT_FAR = '192.0.2.7'
export const NEIGH = new Map([
  [PEER, '02:00:00:00:00:0c'],
  [THIRD, '02:00:00:00:00:0d'],
  [CLIENT, '02:00:00:00:00:64'],
])
export const GOSSIP = new Map([
  [NODE, 7946],
  [PEER, 7950],
  [THIRD, 7946],
])
/** The gateway bridge's address: the node's own. */
export const GW_BRIDGE = '172.18.0.1'
export const VXLAN_PORT = 4789

export const VNI = 4097
export const VNI2 = 4098
export const INGRESS_VNI = 4096
export const VIP = '10.0.1.100'
/** A VIP whose service has no running task. */
export const VIP_EMPTY = '10.0.1.101'
export const MESH_VIP = '10.0.0.2'
export const MESH_VIP_EMPTY = '10.0.0.4'
/** The local backend of the published ports: its ingress address, and its gateway-bridge one. */
export const INGRESS_LOCAL = '10.0.0.5'
export const INGRESS_REMOTE = '10.0.0.9'
export const TASK_GW = '172.18.0.5'
/** The host-mode task's gateway-bridge address. */
export const HOST_TASK = '172.18.0.6'
/** A UDP flow's idle lifetime: longer than any run, so no flow expires while the oracle reads it live. */
export const CT_UDP_IDLE = 1_000_000
/** The cluster keys whose probe keys the node holds (slot 3 stays unset). */
export const CLUSTER_KEYS = [
  {id: 1, key: Buffer.alloc(32, 0x11)},
  {id: 2, key: Buffer.alloc(32, 0x22)},
]

/** The devices of the namespace, by role: veth ends that stand for the node's task devices. */
const DEVICES = {
  underlay: 'sn-fu0',
  underlayPeer: 'sn-fu1',
  taskA: 'sn-fa0', // overlay veth of task A (10.0.1.4, a backend of VIP)
  taskB: 'sn-fb0', // overlay veth of task B (10.0.1.5, a client)
  ingress: 'sn-fi0', // the local backend's veth on the ingress network (10.0.0.5)
  gw: 'sn-fg0', // the local backend's gateway-bridge veth (172.18.0.5 / 10.0.0.5)
  hostGw: 'sn-fh0', // the host-mode task's gateway-bridge veth (172.18.0.6)
  stray: 'sn-fs0', // a device in no map
} as const
export type DeviceRole = keyof typeof DEVICES

/** The commands that make the namespace (run by fuzz.ts before it runs itself inside). */
export function makeNetns(ns: string): void {
  const ip = (...args: string[]) => execFileSync('ip', ['-n', ns, ...args], {stdio: ['ignore', 'ignore', 'pipe']})
  execFileSync('ip', ['netns', 'add', ns])
  for (const [a, b] of [
    [DEVICES.underlay, DEVICES.underlayPeer],
    [DEVICES.taskA, 'sn-fa1'],
    [DEVICES.taskB, 'sn-fb1'],
    [DEVICES.ingress, 'sn-fi1'],
    [DEVICES.gw, 'sn-fg1'],
    [DEVICES.hostGw, 'sn-fh1'],
    [DEVICES.stray, 'sn-fs1'],
  ]) {
    ip('link', 'add', a!, 'type', 'veth', 'peer', 'name', b!)
    ip('link', 'set', a!, 'up')
    ip('link', 'set', b!, 'up')
  }
  ip('addr', 'add', `${NODE}/24`, 'dev', DEVICES.underlay)
  ip('addr', 'add', `${SECOND}/24`, 'dev', DEVICES.underlay)
  ip('addr', 'add', `${GW_BRIDGE}/16`, 'dev', DEVICES.stray)
  ip('link', 'set', 'lo', 'up')
  execFileSync('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1'])
  for (const [addr, mac] of NEIGH) ip('neigh', 'replace', addr, 'lladdr', mac, 'dev', DEVICES.underlay, 'nud', 'permanent')
}

export function deleteNetns(ns: string): void {
  spawnSync('ip', ['netns', 'del', ns], {stdio: 'ignore'})
}

/** Inside the namespace: a device's ifindex and MAC. */
export function device(role: DeviceRole): {ifindex: number; mac: string} {
  const dir = `/sys/class/net/${DEVICES[role]}`
  return {
    ifindex: Number(fs.readFileSync(`${dir}/ifindex`, 'utf8').trim()),
    mac: fs.readFileSync(`${dir}/address`, 'utf8').trim(),
  }
}

export const macOfIp = (ip: string): string =>
  `02:42:${ip
    .split('.')
    .map((x) => Number(x).toString(16).padStart(2, '0'))
    .join(':')}`

export interface Ifindexes {
  underlay: number
  underlayMac: string
  taskA: number
  taskB: number
  ingress: number
  gw: number
  hostGw: number
  stray: number
}

export function ifindexes(): Ifindexes {
  const u = device('underlay')
  return {
    underlay: u.ifindex,
    underlayMac: u.mac,
    taskA: device('taskA').ifindex,
    taskB: device('taskB').ifindex,
    ingress: device('ingress').ifindex,
    gw: device('gw').ifindex,
    hostGw: device('hostGw').ifindex,
    stray: device('stray').ifindex,
  }
}

const be = (key: string, ip: string, nodeIp: string): DesiredBackend => ({key, ip, nodeIp})

function service(serviceId: string, vni: number, vip: string, backends: DesiredBackend[], tableId: number): DesiredService {
  return {
    serviceId,
    vni,
    vip,
    size: maglevSize(Math.max(1, backends.length)),
    backends,
    tableId,
    contents: `${serviceId}:${backends.map((b) => b.key).join(',')}`,
  }
}

/** The desired state of the node, as desiredMaps would give it for this cluster. */
export function desired(ix: Ifindexes): DesiredMaps {
  const ep = (
    vni: number,
    ip: string,
    nodeIp: string,
    ifindex: number,
    o: {vip?: true; backend?: true} = {},
  ): DesiredEndpoint => ({
    vni,
    ip,
    nodeIp: o.vip ? '0.0.0.0' : nodeIp,
    ifindex: o.vip ? 0 : ifindex,
    mac: macOfIp(ip),
    local: !o.vip && nodeIp === NODE,
    ...o,
  })
  const endpoints = [
    ep(VNI, '10.0.1.4', NODE, ix.taskA, {backend: true}),
    ep(VNI, '10.0.1.5', NODE, ix.taskB),
    ep(VNI, '10.0.1.9', PEER, 0, {backend: true}),
    ep(VNI, '10.0.1.10', PEER, 0),
    ep(VNI, '10.0.1.13', THIRD, 0, {backend: true}),
    ep(VNI, VIP, NODE, 0, {vip: true}),
    ep(VNI, VIP_EMPTY, NODE, 0, {vip: true}),
    ep(VNI2, '10.0.2.4', NODE, ix.taskA),
    ep(VNI2, '10.0.2.9', PEER, 0),
    ep(INGRESS_VNI, INGRESS_LOCAL, NODE, ix.ingress, {backend: true}),
    ep(INGRESS_VNI, INGRESS_REMOTE, PEER, 0, {backend: true}),
    ep(INGRESS_VNI, MESH_VIP, NODE, 0, {vip: true}),
    ep(INGRESS_VNI, MESH_VIP_EMPTY, NODE, 0, {vip: true}),
  ]
  const services = [
    service('web', VNI, VIP, [be('t-a', '10.0.1.4', NODE), be('t-9', '10.0.1.9', PEER), be('t-13', '10.0.1.13', THIRD)], 11),
    service('none', VNI, VIP_EMPTY, [], 12),
    service('pub', INGRESS_VNI, MESH_VIP, [be('t-i5', INGRESS_LOCAL, NODE), be('t-i9', INGRESS_REMOTE, PEER)], 13),
    service('pubnone', INGRESS_VNI, MESH_VIP_EMPTY, [], 14),
  ]
  const port = (p: Partial<DesiredMeshPort> & Pick<DesiredMeshPort, 'port' | 'protocol' | 'target'>): DesiredMeshPort => ({
    mode: 'ingress',
    serviceId: 'pub',
    vni: INGRESS_VNI,
    addr: MESH_VIP,
    ifindex: 0,
    mac: '00:00:00:00:00:00',
    sock: [],
    ...p,
  })
  const ports = [
    port({port: 8080, protocol: 'tcp', target: 80}),
    port({port: 8080, protocol: 'udp', target: 53}),
    port({port: 8082, protocol: 'tcp', target: 80, serviceId: 'pubnone', addr: MESH_VIP_EMPTY}),
    port({
      port: 9090,
      protocol: 'tcp',
      target: 80,
      mode: 'host',
      vni: 0,
      addr: HOST_TASK,
      ifindex: ix.hostGw,
      mac: macOfIp(HOST_TASK),
    }),
  ]
  return {
    networks: new Map([
      [VNI, {subnet: '10.0.1.0', prefixLen: 24, ingress: false, mtu: 1450}],
      [VNI2, {subnet: '10.0.2.0', prefixLen: 24, ingress: false, mtu: 1400}],
      [INGRESS_VNI, {subnet: '10.0.0.0', prefixLen: 24, ingress: true, mtu: 1450}],
    ]),
    endpoints: new Map(endpoints.map((e) => [`${e.vni}/${e.ip}`, e])),
    devices: new Map<number, {vni: number; ip: string; backend?: true}>([
      [ix.taskA, {vni: VNI, ip: '10.0.1.4', backend: true}],
      [ix.taskB, {vni: VNI, ip: '10.0.1.5'}],
      [ix.ingress, {vni: INGRESS_VNI, ip: INGRESS_LOCAL, backend: true}],
    ]),
    services: new Map(services.map((s) => [`${s.vni}/${s.vip}`, s])),
    gateways: new Map([
      [ix.gw, {gwIp: TASK_GW, ingressIp: INGRESS_LOCAL}],
      [ix.hostGw, {gwIp: HOST_TASK}],
    ]),
    mesh: {
      ports: new Map(ports.map((p) => [`${p.port}/${p.protocol}`, p])),
      nodes: new Map(GOSSIP),
      ingressVni: INGRESS_VNI,
      addrs: [SECOND],
    },
  }
}

/**
 * Writes the desired state into the maps of `l` (and of every object sharing its pins) as the
 * agent's sync does: encodeDesired, mirrorMaps with the Maglev tables, the mesh's extras, the config.
 */
export function writeMaps(l: Loaded, want: DesiredMaps, ix: Ifindexes): void {
  l.setConfig({nodeIp: NODE, vxlanPort: VXLAN_PORT, underlayIfindex: ix.underlay, ctUdpIdle: CT_UDP_IDLE})
  const maps = Object.fromEntries(
    [
      'sn_networks',
      'sn_endpoints',
      'sn_devices',
      'sn_backends',
      'sn_services',
      'sn_gateways',
      'sn_mesh_ports',
      'sn_mesh_nodes',
      'sn_mesh_addrs',
    ].map((n) => [n, l.map(n)]),
  )
  const tables: TableState = {map: l.map('sn_maglev'), written: new Map()}
  const report = mirrorMaps(maps as Parameters<typeof mirrorMaps>[0], encodeDesired(want), {
    state: tables,
    services: want.services!.values(),
  })
  if (report.errors.length) throw new Error(`the world's maps: ${report.errors.map((e) => e.message).join('; ')}`)
  syncMeshExtras({sn_mesh_config: l.map('sn_mesh_config'), sn_mesh_stats: l.map('sn_mesh_stats')}, want.mesh)
  writeProbeKeys(l.map('sn_probe_keys'), CLUSTER_KEYS)
}
