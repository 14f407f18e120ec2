// Child of upgrade-next.test.ts, run with `ip netns exec` in a namespace of its own (its bpffs is
// private and goes with it). Plays a node whose agent is upgraded to a build with a changed layout
// of sn_ct and sn_mesh_ct (the objects of bpf/*.c built with SN_LAYOUT_TEST_NEXT: layout 7, a
// field in front of both values): today's Datapath runs with the programs attached, flows are
// established through them (tracked VIP flows through sn_tc_task, routing-mesh TCP flows through
// sn_xdp_underlay), then the next build's Datapath opens the same node, and each flow's next
// packet goes through the programs now attached. Prints what it saw as JSON.
// argv: <node> <underlay dev> <task host dev> <next build dir> <flows> <converters: yes|no>
import fs from 'node:fs'
import path from 'node:path'
import {
  LAYOUT_STEPS,
  ensureBpffs,
  ifindexOf,
  ipv4Key,
  layoutPinDir,
  oldLayouts,
  readCounters,
  snEndpoint,
  snEndpointKey,
  snMeshConfig,
  snMeshNode,
  snMeshPort,
  snMeshPortKey,
  snNetwork,
  testRun,
  u32,
  type EntryConverter,
} from '../../src/bpf/index.js'
import {pinnedLinkInfo} from '../../src/bpf/links.js'
import {libbpf} from '../../src/bpf/libbpf.js'
import {libc} from '../../src/sys/libc.js'
import {Datapath, nodeLinkDir} from '../../src/dataplane/datapath.js'
import {Loaded, skbCtx} from './harness.js'
import * as P from './packets.js'

const [node, underlay, hostDev, nextDir, flowsArg, converters] = process.argv.slice(2) as [
  string,
  string,
  string,
  string,
  string,
  string,
]
const FLOWS = Number(flowsArg)
const NODE = '172.30.0.11'
const NODE_MAC = fs.readFileSync(`/sys/class/net/${underlay}/address`, 'utf8').trim()
const PEER = '172.30.0.12'
const VNI = 4097
const CLIENT = {ip: '10.0.1.4', mac: '02:42:0a:00:01:04'}
const VIP = {ip: '10.0.1.100', mac: '02:42:0a:00:01:64'}
const MESH_VIP = '10.0.1.2'
const LOCAL_BE = {ip: '10.0.1.5', mac: '02:42:0a:00:01:05', ifindex: 7}
const REMOTE_BE = {ip: '10.0.1.9', mac: '02:42:0a:00:01:09'}
const MESH_CLIENT = {ip: '172.30.0.100', mac: '02:00:00:00:00:64'}
const underlayIfindex = ifindexOf(underlay)
const hostIfindex = ifindexOf(hostDev)

const out: Record<string, unknown> = {}
ensureBpffs()

/** A client's TCP segment to a VIP (through tc_task) with valid checksums. */
function vipFrame(sport: number, flags: number): Buffer {
  const l4 = P.tcp({srcPort: sport, dstPort: 80, flags, seq: 1000}, Buffer.from('hello'))
  l4.writeUInt16BE(P.l4Checksum(CLIENT.ip, VIP.ip, P.IPPROTO_TCP, l4), 16)
  return P.ethernet(
    {dst: VIP.mac, src: CLIENT.mac, type: P.ETH_P_IP},
    P.ipv4Packet({src: CLIENT.ip, dst: VIP.ip, protocol: P.IPPROTO_TCP}, l4),
  )
}

/** A client's TCP segment to the node's published port 8080 (through the underlay's XDP). */
function meshFrame(sport: number, flags: number): Buffer {
  const l4 = P.tcp({srcPort: sport, dstPort: 8080, flags, seq: 1000}, Buffer.from('hello'))
  l4.writeUInt16BE(P.l4Checksum(MESH_CLIENT.ip, NODE, P.IPPROTO_TCP, l4), 16)
  return P.ethernet(
    {dst: NODE_MAC, src: MESH_CLIENT.mac, type: P.ETH_P_IP},
    P.ipv4Packet({src: MESH_CLIENT.ip, dst: NODE, protocol: P.IPPROTO_TCP}, l4),
  )
}

function xdpCtx(len: number): Buffer {
  const c = Buffer.alloc(24)
  c.writeUInt32LE(len, 4)
  c.writeUInt32LE(underlayIfindex, 12)
  return c
}

/** The program a pinned link runs now, by id: what the node's traffic meets. */
function attached(link: string): {id: number; fd: number} {
  const info = pinnedLinkInfo(path.join(nodeLinkDir(node), link))
  if (!info) throw new Error(`no link ${link}`)
  const fd = libbpf().bpf_prog_get_fd_by_id(info.progId)
  if (fd < 0) throw new Error(`program ${info.progId}: errno ${-fd}`)
  return {id: info.progId, fd}
}

/** Each flow's packet through the programs attached now: how they came out, and what was counted. */
function traffic(
  vipFlags: number,
  meshFlags: number,
): {vip: Record<number, number>; mesh: Record<number, number>; counters: Record<string, number>; progs: number[]} {
  const xdp = attached('xdp-underlay')
  const tc = attached(`tcx-${hostDev}`)
  const stats = layoutStats()
  const before = stats()
  const vip: Record<number, number> = {}
  const mesh: Record<number, number> = {}
  try {
    for (let i = 0; i < FLOWS; i++) {
      const v = testRun(tc.fd, {data: vipFrame(20000 + i, vipFlags), ctx: skbCtx(hostIfindex)}).retval
      vip[v] = (vip[v] ?? 0) + 1
      const f = meshFrame(30000 + i, meshFlags)
      const m = testRun(xdp.fd, {data: f, ctx: xdpCtx(f.length)}).retval
      mesh[m] = (mesh[m] ?? 0) + 1
    }
  } finally {
    libc().close(xdp.fd)
    libc().close(tc.fd)
  }
  const after = stats()
  const counters: Record<string, number> = {}
  for (const k of Object.keys(after)) {
    const d = Number(after[k as keyof typeof after] - before[k as keyof typeof before])
    if (d !== 0) counters[k] = d
  }
  return {vip, mesh, counters, progs: [xdp.id, tc.id]}
}

/** The counters of the layout pinned now (the newest). */
function layoutStats() {
  return () => readCounters(current!.maps.stats)
}

let current: Datapath | undefined = Datapath.open({node, underlay, xdpMode: 'native'})
try {
  // 1. Today's agent: config, the store's maps, a task device with tc attached.
  current.setConfig({nodeIp: NODE, vxlanPort: 4789, underlayIfindex})
  await current.attachTask(hostDev, {vni: VNI, ip: CLIENT.ip})
  const w = new Loaded(layoutPinDir(node), 'tc_task.o', 'sn_tc_task', {keepPins: true})
  try {
    w.map('sn_networks').update(u32.encode(VNI), snNetwork.encode({subnet: '10.0.1.0', prefix_len: 24, flags: 1, mtu: 1450}))
    const ep = (ip: string, mac: string, flags: number, nodeIp: string, ifindex: number) =>
      w
        .map('sn_endpoints')
        .update(snEndpointKey.encode({vni: VNI, ip}), snEndpoint.encode({node_ip: nodeIp, ifindex, mac, flags}))
    ep(CLIENT.ip, CLIENT.mac, 1, NODE, hostIfindex)
    ep(VIP.ip, VIP.mac, 2, '0.0.0.0', 0)
    ep(LOCAL_BE.ip, LOCAL_BE.mac, 1 | 4, NODE, LOCAL_BE.ifindex)
    ep(REMOTE_BE.ip, REMOTE_BE.mac, 4, PEER, 0)
    w.addService(VNI, VIP.ip, 1, [{key: 'task-remote', ip: REMOTE_BE.ip, nodeIp: PEER}])
    w.addService(VNI, MESH_VIP, 2, [{key: 'task-local', ip: LOCAL_BE.ip, nodeIp: NODE}])
    current.maps.sn_mesh_config.update(u32.encode(0), snMeshConfig.encode({ingress_vni: VNI, flags: 0}))
    current.maps.sn_mesh_nodes.update(ipv4Key.encode(NODE), snMeshNode.encode({gossip_port: 7946, flags: 0}))
    current.maps.sn_mesh_ports.update(
      snMeshPortKey.encode({port: 8080, proto: P.IPPROTO_TCP}),
      snMeshPort.encode({vni: VNI, addr: MESH_VIP, target: 80, mode: 1, flags: 0, ifindex: 0, mac: '00:00:00:00:00:00'}),
    )
  } finally {
    w.obj.close() // not w.close(): that removes the node's pins
  }

  // 2. Flows through the programs attached: a SYN each to the VIP; SYN then the handshake's ACK to the published port.
  out.syn = traffic(0x02, 0x02)
  out.established = traffic(0x10, 0x10)

  // 3. The next build opens the node, as the upgraded agent does.
  const shift: EntryConverter = (k, v) => [k, Buffer.concat([Buffer.alloc(8), v])] // test_next in front, 0
  const steps = {
    ...LAYOUT_STEPS,
    7: {
      recorded: true,
      changed:
        converters === 'yes'
          ? {sn_ct: shift, sn_mesh_ct: shift, sn_mesh_syn: shift}
          : {sn_ct: null, sn_mesh_ct: null, sn_mesh_syn: null},
    },
  }
  current.close()
  current = undefined
  current = Datapath.open({
    node,
    underlay,
    xdpMode: 'native',
    build: {objectPath: (n) => path.join(nextDir, `${n}.o`), layoutVersion: 7, steps},
  })
  out.upgrades = current.upgrades
  out.oldPins = oldLayouts(node, 7).map((l) => l.version)
  out.ctValueSize = current.maps.sn_ct.valueSize
  out.meshCtValueSize = current.maps.sn_mesh_ct.valueSize

  // 4. Each flow's next packet, through what is attached now.
  out.after = traffic(0x18, 0x18)
} finally {
  current?.close()
  Datapath.teardown(node, underlay, 'native')
}
process.stdout.write(JSON.stringify(out))
