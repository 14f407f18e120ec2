// Child of mesh.test.ts, run (with --test) by `ip netns exec` in a namespace
// that test made: its underlay is `sn-mu0` (172.30.0.11/24) with permanent
// neighbours for the client and the peer node, so the programs' FIB lookups
// give known answers. The pins go to the private bpffs of its mount namespace.
//
// The routing mesh on crafted frames (BPF_PROG_TEST_RUN): sn_xdp_underlay
// for requests to published ports (local backend, remote backend, host mode,
// tracked flows), mesh requests arriving over VXLAN and replies coming back
// that way; sn_tc_gw for replies leaving a task by its gateway-bridge veth.

import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {after, before, describe, it} from 'node:test'
import {
  ipv4Key,
  snEndpoint,
  snEndpointKey,
  snMeshConfig,
  snMeshCt,
  snMeshCtKey,
  snMeshNode,
  snGateway,
  snMeshPort,
  snMeshPortKey,
  snMeshStats,
  snNetwork,
  u32,
  decodeEntry,
  testRun,
} from '../../src/bpf/index.js'
import {Loaded, TC_ACT_REDIRECT, TC_ACT_SHOT, XDP_DROP, XDP_PASS, XDP_REDIRECT, skbCtx} from './harness.js'
import * as P from './packets.js'

const XDP_TX = 3
const TC_ACT_UNSPEC = 0xffffffff
const NODE = '172.30.0.11'
const NODE_MAC = execFileSync('cat', ['/sys/class/net/sn-mu0/address'], {encoding: 'utf8'}).trim()
const PEER = {ip: '172.30.0.12', mac: '02:00:00:00:00:0c'}
const STRANGER = '172.30.0.99'
/** A second address of the node, on its underlay (mesh.test.ts adds it); and one on the same link that is not the node's. */
const SECOND = '172.30.0.21'
const NOT_OURS = '172.30.0.22'
/** The peer's gossip port: nodes may each have their own. */
const PEER_GOSSIP = 7950
/** The gateway bridge's address (a bridge of mesh.test.ts's namespace): an address of the node's own. */
const GW_BRIDGE = '172.18.0.1'
const CLIENT = {ip: '172.30.0.100', mac: '02:00:00:00:00:64'}
const VNI = 4096
const VIP = '10.0.0.2'
const VIP_REMOTE = '10.0.0.3'
const LOCAL_BE = {key: 'task-local', ip: '10.0.0.5', mac: '02:42:0a:00:00:05', ifindex: 7}
const REMOTE_BE = {key: 'task-remote', ip: '10.0.0.9', mac: '02:42:0a:00:00:09'}
const HOST_TASK = {ip: '172.18.0.5', mac: '02:42:ac:12:00:05', ifindex: 9}
const underlayIfindex = Number(execFileSync('cat', ['/sys/class/net/sn-mu0/ifindex'], {encoding: 'utf8'}).trim())
/** The gateway veth (host side) of the backend task: its test runs give ifindex 1 (lo). */
const GW_IFINDEX = 1
/** Another task's gateway veth: any other device of the namespace stands in for it. */
const OTHER_GW = {
  ip: '172.18.0.6',
  ifindex: Number(execFileSync('cat', ['/sys/class/net/sn-mgw/ifindex'], {encoding: 'utf8'}).trim()),
}

let xdp: Loaded
let gw: Loaded
const root = '/sys/fs/bpf/mesh-test'

/** struct xdp_md for a frame of `len` bytes arriving on the underlay (data_end must be the length). */
function xdpCtx(len: number): Buffer {
  const c = Buffer.alloc(24)
  c.writeUInt32LE(len, 4)
  c.writeUInt32LE(underlayIfindex, 12)
  return c
}

function publish(
  port: number,
  proto: number,
  v: {vni: number; addr: string; target: number; mode: number; ifindex?: number; mac?: string},
) {
  xdp.map('sn_mesh_ports').update(
    snMeshPortKey.encode({port, proto}),
    snMeshPort.encode({
      vni: v.vni,
      addr: v.addr,
      target: v.target,
      mode: v.mode,
      flags: 0,
      ifindex: v.ifindex ?? 0,
      mac: v.mac ?? '00:00:00:00:00:00',
    }),
  )
}

const addrOf = (b: Buffer, at: number): string => [...b.subarray(at, at + 4)].join('.')
const macOf = (b: Buffer, at: number): string => [...b.subarray(at, at + 6)].map((x) => x.toString(16).padStart(2, '0')).join(':')

function assertChecksums(ip: Buffer): void {
  assert.equal(P.inetChecksum(ip.subarray(0, 20)), 0, 'IP header checksum')
  const l4 = ip.subarray(20, ip.readUInt16BE(2))
  assert.equal(P.l4Checksum(addrOf(ip, 12), addrOf(ip, 16), ip[9]!, l4), 0, 'L4 checksum')
}

/** An IP packet (TCP SYN with an MSS option of 1460, or UDP) with valid checksums. */
function ipPacket(o: {src: string; dst: string; proto: number; sport: number; dport: number; flags?: number}): Buffer {
  let l4: Buffer
  if (o.proto === P.IPPROTO_TCP) {
    l4 = P.tcp({srcPort: o.sport, dstPort: o.dport, flags: o.flags ?? 0x02, seq: 1000}, Buffer.from('hello'))
    // An MSS option (kind 2, length 4, 1460) as the first option: data offset 6 words.
    l4 = Buffer.concat([l4.subarray(0, 20), Buffer.from([2, 4, 0x05, 0xb4]), l4.subarray(20)])
    l4.writeUInt8(6 << 4, 12)
    l4.writeUInt16BE(P.l4Checksum(o.src, o.dst, o.proto, l4), 16)
  } else {
    l4 = P.udp({srcPort: o.sport, dstPort: o.dport}, Buffer.from('hello udp'))
    l4.writeUInt16BE(P.l4Checksum(o.src, o.dst, o.proto, l4), 6)
  }
  return P.ipv4Packet({src: o.src, dst: o.dst, protocol: o.proto}, l4)
}

/** A client's frame to the node's address. */
function toNode(proto: number, sport: number, dport: number, flags?: number): Buffer {
  return P.ethernet(
    {dst: NODE_MAC, src: CLIENT.mac, type: P.ETH_P_IP},
    ipPacket({src: CLIENT.ip, dst: NODE, proto, sport, dport, flags}),
  )
}

function runXdp(f: Buffer): {retval: number; data: Buffer; delta: Record<string, number>} {
  const before = xdp.stats()
  const res = testRun(xdp.prog.fd, {data: f, ctx: xdpCtx(f.length)})
  const after = xdp.stats()
  const delta: Record<string, number> = {}
  for (const k of Object.keys(after) as Array<keyof typeof after>) {
    const d = Number(after[k] - before[k])
    if (d !== 0) delta[k] = d
  }
  return {retval: res.retval, data: res.data, delta}
}

function runGw(f: Buffer, ifindex = GW_IFINDEX): {retval: number; data: Buffer; delta: Record<string, number>} {
  const {res, delta} = gw.runCounted(f, {ctx: skbCtx(ifindex)})
  return {retval: res.retval, data: res.data, delta}
}

function portStats(port: number, proto: number): {packets: bigint; bytes: bigint; new_flows: bigint} | undefined {
  const raw = xdp.map('sn_mesh_stats').lookup(snMeshPortKey.encode({port, proto}))
  if (!raw) return undefined
  return decodeEntry('sn_mesh_stats', snMeshPortKey.encode({port, proto}), raw).value
}

before(() => {
  xdp = new Loaded(root, 'xdp_underlay.o', 'sn_xdp_underlay')
  gw = new Loaded(root, 'tc_gw.o', 'sn_tc_gw', {keepPins: true})
  xdp.setConfig({nodeIp: NODE, vxlanPort: 4789, underlayIfindex})
  xdp.map('sn_networks').update(u32.encode(VNI), snNetwork.encode({subnet: '10.0.0.0', prefix_len: 24, flags: 1, mtu: 1450}))
  xdp.map('sn_mesh_config').update(u32.encode(0), snMeshConfig.encode({ingress_vni: VNI, flags: 0}))
  xdp.map('sn_mesh_nodes').update(ipv4Key.encode(PEER.ip), snMeshNode.encode({gossip_port: PEER_GOSSIP, flags: 0}))
  xdp.map('sn_mesh_nodes').update(ipv4Key.encode(NODE), snMeshNode.encode({gossip_port: 7946, flags: 0}))
  const ep = (ip: string, mac: string, flags: number, nodeIp: string, ifindex: number) =>
    xdp
      .map('sn_endpoints')
      .update(snEndpointKey.encode({vni: VNI, ip}), snEndpoint.encode({node_ip: nodeIp, ifindex, mac, flags}))
  ep(LOCAL_BE.ip, LOCAL_BE.mac, 1 | 4, NODE, LOCAL_BE.ifindex)
  ep(REMOTE_BE.ip, REMOTE_BE.mac, 4, PEER.ip, 0)
  xdp.addService(VNI, VIP, 1, [{key: LOCAL_BE.key, ip: LOCAL_BE.ip, nodeIp: NODE}])
  xdp.addService(VNI, VIP_REMOTE, 2, [{key: REMOTE_BE.key, ip: REMOTE_BE.ip, nodeIp: PEER.ip}])
  xdp.addService(VNI, '10.0.0.4', 3, [])
  // The backend task's gateway veth: its gateway-bridge and ingress addresses; another task's, with no ingress address.
  gw.map('sn_gateways').update(u32.encode(GW_IFINDEX), snGateway.encode({gw_ip: HOST_TASK.ip, ingress_ip: LOCAL_BE.ip}))
  gw.map('sn_gateways').update(u32.encode(OTHER_GW.ifindex), snGateway.encode({gw_ip: OTHER_GW.ip, ingress_ip: '0.0.0.0'}))
  publish(8080, P.IPPROTO_TCP, {vni: VNI, addr: VIP, target: 80, mode: 1})
  publish(8080, P.IPPROTO_UDP, {vni: VNI, addr: VIP, target: 53, mode: 1})
  publish(8081, P.IPPROTO_TCP, {vni: VNI, addr: VIP_REMOTE, target: 80, mode: 1})
  publish(8082, P.IPPROTO_TCP, {vni: VNI, addr: '10.0.0.4', target: 80, mode: 1})
  publish(9090, P.IPPROTO_TCP, {vni: 0, addr: HOST_TASK.ip, target: 80, mode: 2, ifindex: HOST_TASK.ifindex, mac: HOST_TASK.mac})
})

after(() => {
  gw?.close()
  xdp?.close()
})

describe('sn_xdp_underlay: requests to published ports', () => {
  it('a port that is not published, and the node own ports, pass to the kernel untouched', () => {
    for (const [proto, port] of [
      [P.IPPROTO_TCP, 22],
      [P.IPPROTO_UDP, 7946],
      [P.IPPROTO_UDP, 8081], // 8081 is published for TCP only
    ] as const) {
      const f = toNode(proto, 40000, port)
      const r = runXdp(f)
      assert.equal(r.retval, XDP_PASS, `port ${port}`)
      assert.deepEqual(r.data, f)
      assert.deepEqual(r.delta, {xdp_pass: 1})
    }
    // Published port, but to another address than the node's: not ours either.
    const other = P.ethernet(
      {dst: NODE_MAC, src: CLIENT.mac, type: P.ETH_P_IP},
      ipPacket({src: CLIENT.ip, dst: '172.30.0.13', proto: P.IPPROTO_TCP, sport: 40000, dport: 8080}),
    )
    assert.equal(runXdp(other).retval, XDP_PASS)
  })

  it('a config the agent has not marked READY is no config: a SYN to a published port passes untouched, no flow made', () => {
    const cfg = xdp.map('sn_config')
    const ready = cfg.lookup(u32.encode(0))!
    const unready = Buffer.from(ready)
    unready.writeUInt16LE(0, 6) // flags: everything else as the agent wrote it
    cfg.update(u32.encode(0), unready)
    try {
      const f = toNode(P.IPPROTO_TCP, 41234, 8080, 0x02)
      const r = runXdp(f)
      assert.equal(r.retval, XDP_PASS)
      assert.deepEqual(r.data, f)
      assert.deepEqual(r.delta, {xdp_pass: 1})
    } finally {
      cfg.update(u32.encode(0), ready)
    }
  })

  it('local backend: DNAT to the backend and target port, client source kept, redirected into its veth; counted per port', () => {
    const f = toNode(P.IPPROTO_TCP, 41000, 8080)
    const r = runXdp(f)
    assert.equal(r.retval, XDP_REDIRECT)
    assert.deepEqual(r.delta, {mesh_new_flow: 1, mesh_local: 1})
    const ip = r.data.subarray(P.ETH_HLEN)
    assert.equal(addrOf(ip, 12), CLIENT.ip)
    assert.equal(addrOf(ip, 16), LOCAL_BE.ip)
    assert.equal(ip.readUInt16BE(22), 80)
    assert.equal(macOf(r.data, 0), LOCAL_BE.mac)
    assertChecksums(ip)
    assert.deepEqual(portStats(8080, P.IPPROTO_TCP), {packets: 1n, bytes: BigInt(f.length), new_flows: 1n})
    // The reply entry names the published address and port, and this node.
    // Keyed by the backend too: only that task's replies find it.
    const rk = snMeshCtKey.encode({src: LOCAL_BE.ip, dst: CLIENT.ip, sport: 80, dport: 41000, proto: P.IPPROTO_TCP, dir: 1})
    // A SYN's entries are embryonic (sn_mesh_syn) until the handshake's ACK.
    assert.equal(xdp.map('sn_mesh_ct').lookup(rk), undefined)
    const rev = snMeshCt.decode(xdp.map('sn_mesh_syn').lookup(rk)!)
    assert.equal(rev.addr, NODE)
    assert.equal(rev.port, 8080)
    assert.equal(rev.node, NODE)
    assert.equal(rev.peer_mac, CLIENT.mac)
  })

  it('a tracked flow keeps its backend without a new pick (CT hit); the handshake ACK makes it established', () => {
    const r = runXdp(toNode(P.IPPROTO_TCP, 41000, 8080, 0x10))
    assert.equal(r.retval, XDP_REDIRECT)
    assert.deepEqual(r.delta, {mesh_local: 1})
    const rk = snMeshCtKey.encode({src: LOCAL_BE.ip, dst: CLIENT.ip, sport: 80, dport: 41000, proto: P.IPPROTO_TCP, dir: 1})
    assert.ok(xdp.map('sn_mesh_ct').lookup(rk) && !xdp.map('sn_mesh_syn').lookup(rk), 'moved to sn_mesh_ct')
    assert.equal(addrOf(r.data, P.ETH_HLEN + 16), LOCAL_BE.ip)
    assert.equal(portStats(8080, P.IPPROTO_TCP)?.packets, 2n)
    assert.equal(portStats(8080, P.IPPROTO_TCP)?.new_flows, 1n)
  })

  it('UDP to a published UDP port: DNAT with a valid checksum', () => {
    const r = runXdp(toNode(P.IPPROTO_UDP, 41001, 8080))
    assert.equal(r.retval, XDP_REDIRECT)
    const ip = r.data.subarray(P.ETH_HLEN)
    assert.equal(addrOf(ip, 16), LOCAL_BE.ip)
    assert.equal(ip.readUInt16BE(22), 53)
    assertChecksums(ip)
  })

  it('remote backend: VXLAN on the ingress VNI to its node, built in XDP, next hop from the FIB, MSS clamped to the overlay', () => {
    const f = toNode(P.IPPROTO_TCP, 42000, 8081)
    const r = runXdp(f)
    assert.equal(r.retval, XDP_TX, JSON.stringify(r.delta))
    assert.deepEqual(r.delta, {mesh_new_flow: 1, mesh_remote: 1})
    assert.equal(r.data.length, f.length + P.VXLAN_OVERHEAD)
    assert.equal(macOf(r.data, 0), PEER.mac, 'outer destination: the peer node, from the neighbour table')
    assert.equal(macOf(r.data, 6), NODE_MAC)
    const outer = r.data.subarray(P.ETH_HLEN)
    assert.equal(P.inetChecksum(outer.subarray(0, 20)), 0)
    assert.equal(addrOf(outer, 12), NODE)
    assert.equal(addrOf(outer, 16), PEER.ip)
    assert.equal(outer.readUInt16BE(22), 4789)
    assert.equal(outer.readUIntBE(32, 3), VNI)
    const innerEth = outer.subarray(36)
    assert.equal(macOf(innerEth, 0), REMOTE_BE.mac)
    const ip = innerEth.subarray(P.ETH_HLEN)
    assert.equal(addrOf(ip, 12), CLIENT.ip)
    assert.equal(addrOf(ip, 16), REMOTE_BE.ip)
    assert.equal(ip.readUInt16BE(22), 80)
    assert.equal(ip.readUInt16BE(20 + 22), 1410, 'MSS 1460 lowered to 1450 - 40')
    assertChecksums(ip)
  })

  it('host mode: DNAT to the local task gateway-bridge address, redirected into its veth', () => {
    const r = runXdp(toNode(P.IPPROTO_TCP, 43000, 9090))
    assert.equal(r.retval, XDP_REDIRECT)
    assert.deepEqual(r.delta, {mesh_new_flow: 1, mesh_local: 1})
    const ip = r.data.subarray(P.ETH_HLEN)
    assert.equal(addrOf(ip, 16), HOST_TASK.ip)
    assert.equal(ip.readUInt16BE(22), 80)
    assert.equal(macOf(r.data, 0), HOST_TASK.mac)
    assertChecksums(ip)
  })

  it('a service with no running backend: dropped and counted', () => {
    const r = runXdp(toNode(P.IPPROTO_TCP, 44000, 8082))
    assert.equal(r.retval, XDP_DROP)
    assert.deepEqual(r.delta, {mesh_no_backend: 1})
  })

  it('malformed or unusual packets to a published port pass to the kernel untouched, never forwarded', () => {
    const full = toNode(P.IPPROTO_TCP, 45000, 8080)
    const cases: Buffer[] = [
      full.subarray(0, P.ETH_HLEN + 20 + 2), // TCP header cut before the ports end
      full.subarray(0, P.ETH_HLEN + 10), // IPv4 header cut
      P.ethernet(
        {dst: NODE_MAC, src: CLIENT.mac, type: P.ETH_P_IP},
        P.ipv4Packet(
          {src: CLIENT.ip, dst: NODE, protocol: P.IPPROTO_TCP, fragOff: 0x2000},
          P.tcp({srcPort: 45001, dstPort: 8080}),
        ),
      ), // a first fragment
      P.ethernet(
        {dst: NODE_MAC, src: CLIENT.mac, type: P.ETH_P_IP},
        P.ipv4Packet(
          {src: CLIENT.ip, dst: NODE, protocol: P.IPPROTO_TCP, options: Buffer.from([1, 1, 1, 0])},
          P.tcp({srcPort: 45002, dstPort: 8080}),
        ),
      ), // IP options
      P.ethernet(
        {dst: NODE_MAC, src: CLIENT.mac, type: P.ETH_P_IP},
        P.ipv4Packet({src: CLIENT.ip, dst: NODE, protocol: P.IPPROTO_TCP, version: 6}, P.tcp({srcPort: 45003, dstPort: 8080})),
      ), // a wrong version nibble
    ]
    for (const [i, f] of cases.entries()) {
      const r = runXdp(f)
      assert.equal(r.retval, XDP_PASS, `case ${i}`)
      assert.deepEqual(r.data, f, `case ${i} untouched`)
      assert.equal(r.delta.mesh_local ?? 0, 0)
    }
  })
})

describe('every address of the node answers published ports (sn_mesh_addrs)', () => {
  const frameTo = (dst: string, proto: number, sport: number, dport: number, flags?: number) =>
    P.ethernet({dst: NODE_MAC, src: CLIENT.mac, type: P.ETH_P_IP}, ipPacket({src: CLIENT.ip, dst, proto, sport, dport, flags}))
  const addrs = () => xdp.map('sn_mesh_addrs')

  it('an address not in sn_mesh_addrs (nor the gateway bridge, nor loopback) passes to the kernel untouched', () => {
    for (const dst of [SECOND, NOT_OURS, GW_BRIDGE, '127.0.0.1']) {
      const f = frameTo(dst, P.IPPROTO_TCP, 41500, 8080, 0x02)
      const r = runXdp(f)
      assert.equal(r.retval, XDP_PASS, dst)
      assert.deepEqual(r.data, f, dst)
      assert.deepEqual(r.delta, {xdp_pass: 1}, dst)
    }
  })

  it('a SYN to a second address: DNAT to the local backend, client kept; the reply leaves from that address by tc_gw', () => {
    addrs().update(ipv4Key.encode(SECOND), u32.encode(0))
    const r = runXdp(frameTo(SECOND, P.IPPROTO_TCP, 41500, 8080, 0x02))
    assert.equal(r.retval, XDP_REDIRECT, JSON.stringify(r.delta))
    assert.deepEqual(r.delta, {mesh_new_flow: 1, mesh_local: 1})
    const ip = r.data.subarray(P.ETH_HLEN)
    assert.equal(addrOf(ip, 12), CLIENT.ip, 'no SNAT: the task sees the client')
    assert.equal(addrOf(ip, 16), LOCAL_BE.ip)
    assert.equal(ip.readUInt16BE(22), 80)
    assert.equal(macOf(r.data, 0), LOCAL_BE.mac)
    assertChecksums(ip)
    const rk = snMeshCtKey.encode({src: LOCAL_BE.ip, dst: CLIENT.ip, sport: 80, dport: 41500, proto: P.IPPROTO_TCP, dir: 1})
    const rev = snMeshCt.decode(xdp.map('sn_mesh_syn').lookup(rk)!)
    assert.equal(rev.addr, SECOND, 'the reply entry records the address the client spoke to')
    assert.equal(rev.port, 8080)
    assert.equal(rev.node, NODE)
    // The SYN-ACK, by the task's gateway veth: from the second address and the published port, to the client's MAC.
    const reply = runGw(
      P.ethernet(
        {dst: '02:42:ac:12:00:01', src: '02:42:ac:12:00:05', type: P.ETH_P_IP},
        ipPacket({src: LOCAL_BE.ip, dst: CLIENT.ip, proto: P.IPPROTO_TCP, sport: 80, dport: 41500, flags: 0x12}),
      ),
    )
    assert.equal(reply.retval, TC_ACT_REDIRECT, JSON.stringify(reply.delta))
    assert.deepEqual(reply.delta, {mesh_reply: 1})
    assert.equal(macOf(reply.data, 0), CLIENT.mac)
    assert.equal(macOf(reply.data, 6), NODE_MAC)
    const rip = reply.data.subarray(P.ETH_HLEN)
    assert.equal(addrOf(rip, 12), SECOND)
    assert.equal(rip.readUInt16BE(20), 8080)
    assert.equal(addrOf(rip, 16), CLIENT.ip)
    assertChecksums(rip)
  })

  it('a SYN to a second address with a remote backend: VXLAN from the underlay address; the reply back over VXLAN leaves from the second address', () => {
    const r = runXdp(frameTo(SECOND, P.IPPROTO_TCP, 42500, 8081, 0x02))
    assert.equal(r.retval, XDP_TX, JSON.stringify(r.delta))
    assert.deepEqual(r.delta, {mesh_new_flow: 1, mesh_remote: 1})
    const outer = r.data.subarray(P.ETH_HLEN)
    assert.equal(addrOf(outer, 12), NODE, 'the data path speaks from the underlay address')
    assert.equal(addrOf(outer, 16), PEER.ip)
    const ip = outer.subarray(36 + P.ETH_HLEN)
    assert.equal(addrOf(ip, 12), CLIENT.ip)
    assert.equal(addrOf(ip, 16), REMOTE_BE.ip)
    const inner = P.ethernet(
      {dst: '02:42:ac:1e:00:64', src: REMOTE_BE.mac, type: P.ETH_P_IP},
      ipPacket({src: REMOTE_BE.ip, dst: CLIENT.ip, proto: P.IPPROTO_TCP, sport: 80, dport: 42500, flags: 0x12}),
    )
    const back = runXdp(
      P.vxlanFrame({outerSrc: PEER.ip, outerDst: NODE, outerSrcMac: PEER.mac, outerDstMac: NODE_MAC, vni: VNI}, inner),
    )
    assert.equal(back.retval, XDP_TX, JSON.stringify(back.delta))
    assert.deepEqual(back.delta, {mesh_reply: 1})
    assert.equal(macOf(back.data, 0), CLIENT.mac)
    assert.equal(macOf(back.data, 6), NODE_MAC)
    const bip = back.data.subarray(P.ETH_HLEN)
    assert.equal(addrOf(bip, 12), SECOND)
    assert.equal(bip.readUInt16BE(20), 8081)
    assertChecksums(bip)
  })

  it('an address removed from sn_mesh_addrs answers no more: a new SYN passes to the kernel untouched', () => {
    addrs().delete(ipv4Key.encode(SECOND))
    const f = frameTo(SECOND, P.IPPROTO_TCP, 41501, 8080, 0x02)
    const r = runXdp(f)
    assert.equal(r.retval, XDP_PASS)
    assert.deepEqual(r.data, f)
    assert.deepEqual(r.delta, {xdp_pass: 1})
  })
})

describe('sn_xdp_underlay: the mesh over VXLAN', () => {
  it("a backend's node: a request from a node of the cluster is delivered to the local backend and its flow recorded with that node", () => {
    const inner = P.ethernet(
      {dst: LOCAL_BE.mac, src: '02:00:00:00:00:01', type: P.ETH_P_IP},
      ipPacket({src: CLIENT.ip, dst: LOCAL_BE.ip, proto: P.IPPROTO_TCP, sport: 46000, dport: 80}),
    )
    const f = P.vxlanFrame({outerSrc: PEER.ip, outerDst: NODE, outerSrcMac: PEER.mac, outerDstMac: NODE_MAC, vni: VNI}, inner)
    const r = runXdp(f)
    assert.equal(r.retval, XDP_REDIRECT)
    assert.deepEqual(r.delta, {mesh_decap: 1})
    assert.deepEqual(r.data, inner)
    const rk = snMeshCtKey.encode({src: LOCAL_BE.ip, dst: CLIENT.ip, sport: 80, dport: 46000, proto: P.IPPROTO_TCP, dir: 1})
    const rev = snMeshCt.decode(xdp.map('sn_mesh_syn').lookup(rk)!)
    assert.equal(rev.node, PEER.ip)
    assert.equal(rev.addr, LOCAL_BE.ip, 'the source its replies go back with')
    assert.equal(rev.vni, VNI)
    // The same from an address that is no node of the cluster: refused as before.
    const bad = P.vxlanFrame({outerSrc: STRANGER, outerDst: NODE, outerSrcMac: PEER.mac, outerDstMac: NODE_MAC, vni: VNI}, inner)
    const rb = runXdp(bad)
    assert.equal(rb.retval, XDP_DROP)
    assert.deepEqual(rb.delta, {xdp_bad_source: 1})
  })

  it('the ingress node: a backend reply over VXLAN gets the published address and port back and leaves the underlay to the client', () => {
    // The flow of the remote-backend test: client:42000 -> node:8081 -> 10.0.0.9:80.
    const inner = P.ethernet(
      {dst: '02:42:ac:1e:00:64', src: REMOTE_BE.mac, type: P.ETH_P_IP},
      ipPacket({src: REMOTE_BE.ip, dst: CLIENT.ip, proto: P.IPPROTO_TCP, sport: 80, dport: 42000, flags: 0x12}),
    )
    const f = P.vxlanFrame({outerSrc: PEER.ip, outerDst: NODE, outerSrcMac: PEER.mac, outerDstMac: NODE_MAC, vni: VNI}, inner)
    const r = runXdp(f)
    assert.equal(r.retval, XDP_TX, JSON.stringify(r.delta))
    assert.deepEqual(r.delta, {mesh_reply: 1})
    assert.equal(r.data.length, inner.length)
    assert.equal(macOf(r.data, 0), CLIENT.mac)
    assert.equal(macOf(r.data, 6), NODE_MAC)
    const ip = r.data.subarray(P.ETH_HLEN)
    assert.equal(addrOf(ip, 12), NODE)
    assert.equal(ip.readUInt16BE(20), 8081)
    assert.equal(addrOf(ip, 16), CLIENT.ip)
    assert.equal(ip.readUInt16BE(22), 42000)
    assertChecksums(ip)
    // A reply nobody asked for (no flow): dropped as before, never sent to the client.
    const stray = P.ethernet(
      {dst: '02:42:ac:1e:00:64', src: REMOTE_BE.mac, type: P.ETH_P_IP},
      ipPacket({src: REMOTE_BE.ip, dst: CLIENT.ip, proto: P.IPPROTO_TCP, sport: 80, dport: 42999}),
    )
    const rs = runXdp(
      P.vxlanFrame({outerSrc: PEER.ip, outerDst: NODE, outerSrcMac: PEER.mac, outerDstMac: NODE_MAC, vni: VNI}, stray),
    )
    assert.equal(rs.retval, XDP_DROP)
    assert.deepEqual(rs.delta, {xdp_no_endpoint: 1})
  })
})

describe('sn_tc_gw: replies leaving a task by its gateway-bridge veth', () => {
  const fromTask = (src: string, sport: number, dport: number, proto = P.IPPROTO_TCP, flags = 0x12) =>
    P.ethernet(
      {dst: '02:42:ac:12:00:01', src: '02:42:ac:12:00:05', type: P.ETH_P_IP},
      ipPacket({src, dst: CLIENT.ip, proto, sport, dport, flags}),
    )

  it('a flow that came in by this node: reverse NAT and out of the underlay to the next hop the FIB names', () => {
    const r = runGw(fromTask(LOCAL_BE.ip, 80, 41000))
    assert.equal(r.retval, TC_ACT_REDIRECT, JSON.stringify(r.delta))
    assert.deepEqual(r.delta, {mesh_reply: 1})
    assert.equal(macOf(r.data, 0), CLIENT.mac)
    assert.equal(macOf(r.data, 6), NODE_MAC)
    const ip = r.data.subarray(P.ETH_HLEN)
    assert.equal(addrOf(ip, 12), NODE)
    assert.equal(ip.readUInt16BE(20), 8080)
    assertChecksums(ip)
  })

  it('a flow that came in by another node: VXLAN back to it on the ingress network, the SYN-ACK MSS clamped', () => {
    const f = fromTask(LOCAL_BE.ip, 80, 46000)
    const r = runGw(f)
    assert.equal(r.retval, TC_ACT_REDIRECT, JSON.stringify(r.delta))
    assert.deepEqual(r.delta, {mesh_return: 1})
    assert.equal(r.data.length, f.length + P.VXLAN_OVERHEAD)
    const outer = r.data.subarray(P.ETH_HLEN)
    assert.equal(addrOf(outer, 12), NODE)
    assert.equal(addrOf(outer, 16), PEER.ip)
    assert.equal(outer.readUIntBE(32, 3), VNI)
    const ip = outer.subarray(36 + P.ETH_HLEN)
    assert.equal(addrOf(ip, 12), LOCAL_BE.ip, 'the ingress node does the reverse NAT')
    assert.equal(ip.readUInt16BE(20 + 22), 1410)
    assertChecksums(ip)
  })

  it('a UDP server bound to 0.0.0.0 answers from its gateway-bridge address: found all the same, both ways', () => {
    // Local flow (client:41001 -> node:8080/udp -> 10.0.0.5:53): reverse NAT to the published address and port.
    const local = runGw(fromTask(HOST_TASK.ip, 53, 41001, P.IPPROTO_UDP))
    assert.equal(local.retval, TC_ACT_REDIRECT, JSON.stringify(local.delta))
    assert.deepEqual(local.delta, {mesh_reply: 1})
    const ip = local.data.subarray(P.ETH_HLEN)
    assert.equal(addrOf(ip, 12), NODE)
    assert.equal(ip.readUInt16BE(20), 8080)
    assertChecksums(ip)
    // A flow from another ingress node: back over VXLAN with the ingress address as its source.
    const inner = P.ethernet(
      {dst: LOCAL_BE.mac, src: '02:00:00:00:00:01', type: P.ETH_P_IP},
      ipPacket({src: CLIENT.ip, dst: LOCAL_BE.ip, proto: P.IPPROTO_UDP, sport: 46001, dport: 53}),
    )
    runXdp(P.vxlanFrame({outerSrc: PEER.ip, outerDst: NODE, outerSrcMac: PEER.mac, outerDstMac: NODE_MAC, vni: VNI}, inner))
    const f = fromTask(HOST_TASK.ip, 53, 46001, P.IPPROTO_UDP)
    const r = runGw(f)
    assert.deepEqual(r.delta, {mesh_return: 1})
    const back = r.data.subarray(P.ETH_HLEN + 36 + P.ETH_HLEN)
    assert.equal(addrOf(r.data, P.ETH_HLEN + 16), PEER.ip)
    assert.equal(addrOf(back, 12), LOCAL_BE.ip)
    assertChecksums(back)
  })

  it("the task's own connections pass on (TCX_NEXT); an untracked packet from its ingress address is dropped, never masqueraded", () => {
    const own = fromTask('172.18.0.5', 51000, 443, P.IPPROTO_TCP, 0x02)
    const r = runGw(own)
    assert.equal(r.retval, TC_ACT_UNSPEC)
    assert.deepEqual(r.data, own)
    assert.deepEqual(r.delta, {})
    const lost = runGw(fromTask(LOCAL_BE.ip, 80, 47999))
    assert.equal(lost.retval, TC_ACT_SHOT)
    assert.deepEqual(lost.delta, {mesh_untracked: 1})
    const arp = P.ethernet({dst: 'ff:ff:ff:ff:ff:ff', src: '02:42:ac:12:00:05', type: P.ETH_P_ARP}, Buffer.alloc(28))
    assert.equal(runGw(arp).retval, TC_ACT_UNSPEC)
  })
})

describe('sn_tc_gw: no task reaches a node data-path or gossip port (VXLAN injection)', () => {
  const TASK_GW = {ip: '172.18.0.5', mac: '02:42:ac:12:00:05'}
  /** A task's datagram (a VXLAN frame with an inner ICMP echo, for UDP) or TCP SYN to dst:dport by its default route. */
  const send = (dst: string, dport: number, proto = P.IPPROTO_UDP, options?: Buffer) => {
    const innerEcho = P.ethernet(
      {dst: '02:42:0a:00:00:09', src: '02:42:0a:00:00:07', type: P.ETH_P_IP},
      P.ipv4Packet({src: '10.0.0.7', dst: REMOTE_BE.ip, protocol: P.IPPROTO_ICMP}, Buffer.from([8, 0, 0xf7, 0xff, 0, 0, 0, 0])),
    )
    const vx = Buffer.alloc(8)
    vx.writeUInt32BE(0x08000000, 0)
    vx.writeUInt32BE(VNI << 8, 4)
    const l4 =
      proto === P.IPPROTO_UDP
        ? P.udp({srcPort: 51000, dstPort: dport}, Buffer.concat([vx, innerEcho]))
        : P.tcp({srcPort: 51000, dstPort: dport, flags: 0x02, seq: 1})
    return P.ethernet(
      {dst: '02:42:ac:12:00:01', src: TASK_GW.mac, type: P.ETH_P_IP},
      P.ipv4Packet({src: TASK_GW.ip, dst, protocol: proto, options}, l4),
    )
  }

  it('UDP to the data-path port of another node, of this node, of the gateway bridge: dropped and counted', () => {
    for (const dst of [PEER.ip, NODE, GW_BRIDGE]) {
      const r = runGw(send(dst, 4789))
      assert.equal(r.retval, TC_ACT_SHOT, dst)
      assert.deepEqual(r.delta, {gw_node_port: 1}, dst)
    }
    // IP options do not hide the port.
    const opt = runGw(send(PEER.ip, 4789, P.IPPROTO_UDP, Buffer.from([1, 1, 1, 0])))
    assert.equal(opt.retval, TC_ACT_SHOT)
    assert.deepEqual(opt.delta, {gw_node_port: 1})
  })

  it("a node's gossip port (its own, TCP and UDP) on its address, and this node's on the gateway bridge's: dropped", () => {
    for (const [dst, port, proto] of [
      [PEER.ip, PEER_GOSSIP, P.IPPROTO_TCP],
      [PEER.ip, PEER_GOSSIP, P.IPPROTO_UDP],
      [NODE, 7946, P.IPPROTO_TCP],
      [GW_BRIDGE, 7946, P.IPPROTO_UDP],
    ] as const) {
      const r = runGw(send(dst, port, proto))
      assert.equal(r.retval, TC_ACT_SHOT, `${dst}:${port}/${proto}`)
      assert.deepEqual(r.delta, {gw_node_port: 1})
    }
  })

  it('the same ports elsewhere, and other ports of a node, pass on to the kernel untouched', () => {
    for (const [dst, port, proto] of [
      [CLIENT.ip, 4789, P.IPPROTO_UDP], // a host outside the cluster
      [CLIENT.ip, 7946, P.IPPROTO_TCP],
      [PEER.ip, 7946, P.IPPROTO_TCP], // not the peer's gossip port
      [PEER.ip, 4790, P.IPPROTO_UDP],
      [NODE, 4789, P.IPPROTO_TCP], // the data path is UDP only
    ] as const) {
      const f = send(dst, port, proto)
      const r = runGw(f)
      assert.equal(r.retval, TC_ACT_UNSPEC, `${dst}:${port}/${proto} ${JSON.stringify(r.delta)}`)
      assert.deepEqual(r.data, f)
      assert.deepEqual(r.delta, {})
    }
  })
})

describe('sn_tc_gw: a task answers only for its own flows (reply spoofing)', () => {
  const reply = (src: string, sport: number, dport: number) =>
    P.ethernet(
      {dst: '02:42:ac:12:00:01', src: '02:42:ac:12:00:06', type: P.ETH_P_IP},
      ipPacket({src, dst: CLIENT.ip, proto: P.IPPROTO_TCP, sport, dport, flags: 0x12}),
    )

  it("another task's gateway veth sending as the backend (its ingress address): dropped and counted", () => {
    // A live flow: client:48000 -> node:8080 -> the local backend.
    assert.equal(runXdp(toNode(P.IPPROTO_TCP, 48000, 8080)).retval, XDP_REDIRECT)
    const r = runGw(reply(LOCAL_BE.ip, 80, 48000), OTHER_GW.ifindex)
    assert.equal(r.retval, TC_ACT_SHOT)
    assert.deepEqual(r.delta, {gw_spoofed: 1})
    // Any other source it does not own, ICMP too.
    const icmp = P.ethernet(
      {dst: '02:42:ac:12:00:01', src: '02:42:ac:12:00:06', type: P.ETH_P_IP},
      P.ipv4Packet({src: HOST_TASK.ip, dst: CLIENT.ip, protocol: P.IPPROTO_ICMP}, Buffer.alloc(8)),
    )
    assert.deepEqual(runGw(icmp, OTHER_GW.ifindex).delta, {gw_spoofed: 1})
  })

  it("another task answering from its own address, from the flow's port: not translated, left to the masquerade as its own traffic", () => {
    const f = reply(OTHER_GW.ip, 80, 48000)
    const r = runGw(f, OTHER_GW.ifindex)
    assert.equal(r.retval, TC_ACT_UNSPEC, JSON.stringify(r.delta))
    assert.deepEqual(r.data, f)
    assert.deepEqual(r.delta, {})
  })

  it('the backend itself, from its ingress or its gateway-bridge address: translated', () => {
    for (const src of [LOCAL_BE.ip, HOST_TASK.ip]) {
      const r = runGw(reply(src, 80, 48000))
      assert.equal(r.retval, TC_ACT_REDIRECT, `${src}: ${JSON.stringify(r.delta)}`)
      assert.deepEqual(r.delta, {mesh_reply: 1})
      assert.equal(addrOf(r.data, P.ETH_HLEN + 12), NODE)
    }
  })
})

describe('mesh connection tracking: TCP entries on SYN only, ended by RST, a lost reply entry restored, a SYN flood harmless', () => {
  const fwdKey = (sport: number) =>
    snMeshCtKey.encode({src: CLIENT.ip, dst: NODE, sport, dport: 8080, proto: P.IPPROTO_TCP, dir: 0})
  const repKey = (sport: number) =>
    snMeshCtKey.encode({src: LOCAL_BE.ip, dst: CLIENT.ip, sport: 80, dport: sport, proto: P.IPPROTO_TCP, dir: 1})
  const inMap = (map: string, k: Buffer) => xdp.map(map).lookup(k) !== undefined
  /** SYN, then the handshake's ACK: an established flow through the local backend. */
  const establish = (sport: number) => {
    assert.deepEqual(runXdp(toNode(P.IPPROTO_TCP, sport, 8080, 0x02)).delta, {mesh_new_flow: 1, mesh_local: 1})
    assert.deepEqual(runXdp(toNode(P.IPPROTO_TCP, sport, 8080, 0x10)).delta, {mesh_local: 1})
    assert.ok(inMap('sn_mesh_ct', fwdKey(sport)) && inMap('sn_mesh_ct', repKey(sport)))
  }
  const backendReply = (sport: number, flags: number) =>
    P.ethernet(
      {dst: '02:42:ac:12:00:01', src: '02:42:ac:12:00:05', type: P.ETH_P_IP},
      ipPacket({src: LOCAL_BE.ip, dst: CLIENT.ip, proto: P.IPPROTO_TCP, sport: 80, dport: sport, flags}),
    )

  it("a TCP packet that is not a SYN, of no tracked flow, goes to the kernel (the node's own connection from that port) and makes no entry", () => {
    for (const flags of [0x10, 0x18, 0x11, 0x12, 0x04]) {
      const r = runXdp(toNode(P.IPPROTO_TCP, 49000 + flags, 8080, flags))
      assert.equal(r.retval, XDP_PASS, `flags ${flags}`)
      assert.deepEqual(r.delta, {mesh_not_syn: 1, xdp_pass: 1})
      for (const map of ['sn_mesh_ct', 'sn_mesh_syn'])
        assert.ok(!inMap(map, fwdKey(49000 + flags)) && !inMap(map, repKey(49000 + flags)), `${map}, flags ${flags}`)
    }
  })

  it('a RST from the client, or from the backend, ends the flow: both entries go, the RST itself still delivered', () => {
    establish(49100)
    const c = runXdp(toNode(P.IPPROTO_TCP, 49100, 8080, 0x14))
    assert.equal(c.retval, XDP_REDIRECT)
    assert.deepEqual(c.delta, {mesh_local: 1, mesh_ct_reset: 1})
    assert.ok(!inMap('sn_mesh_ct', fwdKey(49100)) && !inMap('sn_mesh_ct', repKey(49100)))
    establish(49101)
    const b = runGw(backendReply(49101, 0x14))
    assert.equal(b.retval, TC_ACT_REDIRECT)
    assert.deepEqual(b.delta, {mesh_reply: 1, mesh_ct_reset: 1})
    assert.equal(addrOf(b.data, P.ETH_HLEN + 12), NODE, 'the RST reaches the client from the published address')
    assert.ok(!inMap('sn_mesh_ct', fwdKey(49101)) && !inMap('sn_mesh_ct', repKey(49101)))
  })

  it('a reply entry lost to LRU while the forward one stays is written again by the next forward packet', () => {
    establish(49200)
    xdp.map('sn_mesh_ct').delete(repKey(49200))
    const r = runXdp(toNode(P.IPPROTO_TCP, 49200, 8080, 0x10))
    assert.deepEqual(r.delta, {mesh_local: 1, mesh_reply_restored: 1})
    assert.ok(inMap('sn_mesh_ct', repKey(49200)))
    assert.deepEqual(runGw(backendReply(49200, 0x10)).delta, {mesh_reply: 1})
  })

  it("a client that reuses a finished flow's port through another node reaches the backend anew: the new flow's replies go its way", () => {
    // The replies are keyed by backend, client and ports, not by the node or published port the client chose.
    const viaPeer = (sport: number, flags: number) =>
      P.vxlanFrame(
        {outerSrc: PEER.ip, outerDst: NODE, outerSrcMac: PEER.mac, outerDstMac: NODE_MAC, vni: VNI},
        P.ethernet(
          {dst: LOCAL_BE.mac, src: '02:00:00:00:00:01', type: P.ETH_P_IP},
          ipPacket({src: CLIENT.ip, dst: LOCAL_BE.ip, proto: P.IPPROTO_TCP, sport, dport: 80, flags}),
        ),
      )
    // An old flow in by the peer node (established, its FIN leaves the entries), then the same port straight to this node.
    assert.deepEqual(runXdp(viaPeer(49400, 0x02)).delta, {mesh_decap: 1})
    assert.deepEqual(runXdp(viaPeer(49400, 0x10)).delta, {mesh_decap: 1})
    assert.ok(inMap('sn_mesh_ct', repKey(49400)))
    assert.deepEqual(runXdp(toNode(P.IPPROTO_TCP, 49400, 8080, 0x02)).delta, {mesh_new_flow: 1, mesh_local: 1})
    const here = runGw(backendReply(49400, 0x12))
    assert.deepEqual(here.delta, {mesh_reply: 1}, 'the SYN-ACK leaves by this node, not back to the peer')
    assert.equal(addrOf(here.data, P.ETH_HLEN + 12), NODE)
    // And the other way: an old flow in by this node, then the same port in by the peer.
    establish(49401)
    assert.deepEqual(runXdp(viaPeer(49401, 0x02)).delta, {mesh_decap: 1})
    assert.deepEqual(runGw(backendReply(49401, 0x12)).delta, {mesh_return: 1}, 'the SYN-ACK goes back to the peer')
    // The same port to another published port of the same backend: the reply carries the new port.
    publish(8083, P.IPPROTO_TCP, {vni: VNI, addr: VIP, target: 80, mode: 1})
    try {
      establish(49402)
      assert.deepEqual(runXdp(toNode(P.IPPROTO_TCP, 49402, 8083, 0x02)).delta, {mesh_new_flow: 1, mesh_local: 1})
      const r = runGw(backendReply(49402, 0x12))
      assert.deepEqual(r.delta, {mesh_reply: 1})
      assert.equal(r.data.readUInt16BE(P.ETH_HLEN + 20), 8083)
    } finally {
      xdp.map('sn_mesh_ports').delete(snMeshPortKey.encode({port: 8083, proto: P.IPPROTO_TCP}))
    }
  })

  it("a flow whose backend's address now belongs to a task on another node is picked afresh, never sent to the old node", () => {
    // Stop-first: the old task's address is given to its replacement, placed on another node (here: this one).
    const MOVER = {ip: '10.0.0.12', mac: '02:42:0a:00:00:0c'}
    const VIP_MOVE = '10.0.0.6'
    const ep = (flags: number, nodeIp: string, ifindex: number) =>
      xdp
        .map('sn_endpoints')
        .update(
          snEndpointKey.encode({vni: VNI, ip: MOVER.ip}),
          snEndpoint.encode({node_ip: nodeIp, ifindex, mac: MOVER.mac, flags}),
        )
    ep(4, PEER.ip, 0)
    xdp.addService(VNI, VIP_MOVE, 6, [{key: 'task-old', ip: MOVER.ip, nodeIp: PEER.ip}])
    publish(8084, P.IPPROTO_TCP, {vni: VNI, addr: VIP_MOVE, target: 80, mode: 1})
    try {
      const first = runXdp(toNode(P.IPPROTO_TCP, 49500, 8084, 0x02))
      assert.equal(first.retval, XDP_TX)
      assert.equal(addrOf(first.data, P.ETH_HLEN + 16), PEER.ip)
      // The SYN went unanswered (the old task stopped); its replacement runs here with the same address.
      ep(1 | 4, NODE, LOCAL_BE.ifindex)
      xdp.addService(VNI, VIP_MOVE, 7, [{key: 'task-new', ip: MOVER.ip, nodeIp: NODE}])
      const again = runXdp(toNode(P.IPPROTO_TCP, 49500, 8084, 0x02))
      assert.equal(again.retval, XDP_REDIRECT, JSON.stringify(again.delta))
      assert.deepEqual(again.delta, {mesh_new_flow: 1, mesh_local: 1})
      assert.equal(addrOf(again.data, P.ETH_HLEN + 16), MOVER.ip)
    } finally {
      xdp.map('sn_mesh_ports').delete(snMeshPortKey.encode({port: 8084, proto: P.IPPROTO_TCP}))
    }
  })

  it('100k SYNs from random sources to the published port do not end an established flow', () => {
    establish(49300)
    const syn = toNode(P.IPPROTO_TCP, 1, 8080, 0x02)
    const ctx = xdpCtx(syn.length)
    // A fixed-seed LCG: random-looking sources and ports, the same on every run.
    let x = 0x2545f491
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < 100_000; i++) {
      x = (Math.imul(x, 1664525) + 1013904223) >>> 0
      syn.writeUInt32BE((0x0b000000 | (x & 0x00ffffff)) >>> 0, P.ETH_HLEN + 12) // 11.x.y.z
      syn.writeUInt16BE(1024 + (x >>> 20), P.ETH_HLEN + 20)
      testRun(xdp.prog.fd, {data: syn, ctx})
    }
    const ms = Number(process.hrtime.bigint() - t0) / 1e6
    console.log(`100k SYNs through sn_xdp_underlay (BPF_PROG_TEST_RUN, one call each): ${ms.toFixed(0)} ms`)
    assert.ok(inMap('sn_mesh_ct', fwdKey(49300)) && inMap('sn_mesh_ct', repKey(49300)), 'both entries are still there')
    const r = runXdp(toNode(P.IPPROTO_TCP, 49300, 8080, 0x10))
    assert.equal(r.retval, XDP_REDIRECT)
    assert.deepEqual(r.delta, {mesh_local: 1}, 'a tracking hit, not a new flow')
    assert.equal(addrOf(r.data, P.ETH_HLEN + 16), LOCAL_BE.ip)
    assert.deepEqual(runGw(backendReply(49300, 0x10)).delta, {mesh_reply: 1})
  })
})

describe('mesh connection lifetimes: a TCP flow ends with FIN both ways, a UDP flow when idle (issue 19, hole 5)', () => {
  const VIP_LIFE = '10.0.0.7'
  const PORT = 8085
  const TCP = P.IPPROTO_TCP
  const UDP = P.IPPROTO_UDP
  const fwdKey = (sport: number, proto = TCP) =>
    snMeshCtKey.encode({src: CLIENT.ip, dst: NODE, sport, dport: PORT, proto, dir: 0})
  const repKey = (be: string, sport: number, proto = TCP) =>
    snMeshCtKey.encode({src: be, dst: CLIENT.ip, sport: proto === TCP ? 80 : 53, dport: sport, proto, dir: 1})
  const entry = (map: string, k: Buffer) => {
    const raw = xdp.map(map).lookup(k)
    return raw ? snMeshCt.decode(raw) : undefined
  }
  const flagsOf = (map: string, k: Buffer) => snMeshCt.flagNames('flags', Number(entry(map, k)?.flags ?? 0))
  // Every new flow to the local backend; then a later table that sends every new flow to the remote
  // one, while the local one stays in the set: a tracked flow keeps it, only a new flow goes remote.
  const toLocal = () => xdp.addService(VNI, VIP_LIFE, 40, [{key: LOCAL_BE.key, ip: LOCAL_BE.ip, nodeIp: NODE}])
  const toRemote = () => xdp.addService(VNI, VIP_LIFE, 41, [{key: REMOTE_BE.key, ip: REMOTE_BE.ip, nodeIp: PEER.ip}])
  const seg = (sport: number, flags: number, src = CLIENT.ip) =>
    runXdp(
      P.ethernet(
        {dst: NODE_MAC, src: CLIENT.mac, type: P.ETH_P_IP},
        ipPacket({src, dst: NODE, proto: TCP, sport, dport: PORT, flags}),
      ),
    )
  const dgram = (sport: number) => runXdp(toNode(UDP, sport, PORT))
  /** What the local backend sends back by its gateway veth. */
  const fromBackend = (sport: number, proto: number, flags = 0x10) =>
    runGw(
      P.ethernet(
        {dst: '02:42:ac:12:00:01', src: '02:42:ac:12:00:05', type: P.ETH_P_IP},
        ipPacket({src: LOCAL_BE.ip, dst: CLIENT.ip, proto, sport: proto === TCP ? 80 : 53, dport: sport, flags}),
      ),
    )
  const toLocalBe = (r: {retval: number; data: Buffer}) =>
    r.retval === XDP_REDIRECT && addrOf(r.data, P.ETH_HLEN + 16) === LOCAL_BE.ip
  /** Sent over the ingress network to the remote backend's node. */
  const toRemoteBe = (r: {retval: number; data: Buffer}) =>
    r.retval === XDP_TX && addrOf(r.data, P.ETH_HLEN + 16) === PEER.ip && addrOf(r.data, 50 + P.ETH_HLEN + 16) === REMOTE_BE.ip
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

  before(() => {
    publish(PORT, TCP, {vni: VNI, addr: VIP_LIFE, target: 80, mode: 1})
    publish(PORT, UDP, {vni: VNI, addr: VIP_LIFE, target: 53, mode: 1})
  })
  after(() => {
    for (const proto of [TCP, UDP]) xdp.map('sn_mesh_ports').delete(snMeshPortKey.encode({port: PORT, proto}))
  })

  it('a lone FIN, or a forged one from another source, ends nothing; FIN both ways closes the flow, its last ACK still delivered; a new SYN from the same port is picked afresh', () => {
    toLocal()
    assert.ok(toLocalBe(seg(49600, 0x02)))
    assert.ok(toLocalBe(seg(49600, 0x10)))
    toRemote()
    // The client's FIN alone: delivered, marked, the flow goes on (a half-closed connection still carries data).
    const fin = seg(49600, 0x11)
    assert.ok(toLocalBe(fin), JSON.stringify(fin.delta))
    assert.deepEqual(fin.delta, {mesh_local: 1})
    assert.deepEqual(flagsOf('sn_mesh_ct', repKey(LOCAL_BE.ip, 49600)), ['FIN_CLIENT'])
    // A FIN of the same ports from another source is no segment of the flow: to the kernel, nothing marked.
    const forged = seg(49600, 0x11, '172.30.0.77')
    assert.equal(forged.retval, XDP_PASS)
    assert.deepEqual(forged.delta, {mesh_not_syn: 1, xdp_pass: 1})
    assert.deepEqual(flagsOf('sn_mesh_ct', repKey(LOCAL_BE.ip, 49600)), ['FIN_CLIENT'])
    // A SYN while only one side has closed is no new connection: still the tracked backend.
    const syn = seg(49600, 0x02)
    assert.ok(toLocalBe(syn))
    assert.deepEqual(syn.delta, {mesh_local: 1})
    // The backend's FIN: the flow is closing.
    const bfin = fromBackend(49600, TCP, 0x11)
    assert.equal(bfin.retval, TC_ACT_REDIRECT)
    assert.deepEqual(bfin.delta, {mesh_reply: 1, mesh_ct_closed: 1})
    assert.deepEqual(flagsOf('sn_mesh_ct', repKey(LOCAL_BE.ip, 49600)), ['FIN_CLIENT', 'FIN_BACKEND', 'CLOSING'])
    // In its grace: the last ACK, and a FIN the backend sends again, still find their translation.
    const last = seg(49600, 0x10)
    assert.ok(toLocalBe(last))
    assert.deepEqual(last.delta, {mesh_local: 1})
    assert.deepEqual(fromBackend(49600, TCP, 0x11).delta, {mesh_reply: 1})
    // A new connection from the same port: a new flow, picked from today's table, the old entries gone.
    const again = seg(49600, 0x02)
    assert.ok(toRemoteBe(again), JSON.stringify(again.delta))
    assert.deepEqual(again.delta, {mesh_ct_expired: 1, mesh_new_flow: 1, mesh_remote: 1})
    assert.equal(entry('sn_mesh_ct', fwdKey(49600)), undefined)
    assert.equal(entry('sn_mesh_ct', repKey(LOCAL_BE.ip, 49600)), undefined)
    assert.equal(entry('sn_mesh_syn', fwdKey(49600))?.addr, REMOTE_BE.ip)
  })

  it("FIN both ways seen where the backend runs: by the ingress node over VXLAN, and by the backend's node", () => {
    // The ingress node, backend on the peer: the backend's FIN comes back over VXLAN (sn_mesh_reply_xdp).
    toRemote()
    assert.ok(toRemoteBe(seg(49610, 0x02)))
    assert.ok(toRemoteBe(seg(49610, 0x10)))
    assert.ok(toRemoteBe(seg(49610, 0x11)))
    const back = runXdp(
      P.vxlanFrame(
        {outerSrc: PEER.ip, outerDst: NODE, outerSrcMac: PEER.mac, outerDstMac: NODE_MAC, vni: VNI},
        P.ethernet(
          {dst: '02:42:ac:1e:00:64', src: REMOTE_BE.mac, type: P.ETH_P_IP},
          ipPacket({src: REMOTE_BE.ip, dst: CLIENT.ip, proto: TCP, sport: 80, dport: 49610, flags: 0x11}),
        ),
      ),
    )
    assert.equal(back.retval, XDP_TX)
    assert.deepEqual(back.delta, {mesh_reply: 1, mesh_ct_closed: 1})
    assert.deepEqual(flagsOf('sn_mesh_ct', repKey(REMOTE_BE.ip, 49610)), ['FIN_CLIENT', 'FIN_BACKEND', 'CLOSING'])
    // The backend's node (this one, for a flow the peer took in): the client's FIN by decap, the backend's by tc_gw.
    const viaPeer = (flags: number) =>
      runXdp(
        P.vxlanFrame(
          {outerSrc: PEER.ip, outerDst: NODE, outerSrcMac: PEER.mac, outerDstMac: NODE_MAC, vni: VNI},
          P.ethernet(
            {dst: LOCAL_BE.mac, src: '02:00:00:00:00:01', type: P.ETH_P_IP},
            ipPacket({src: CLIENT.ip, dst: LOCAL_BE.ip, proto: TCP, sport: 49611, dport: 80, flags}),
          ),
        ),
      )
    for (const flags of [0x02, 0x10, 0x18, 0x11]) assert.deepEqual(viaPeer(flags).delta, {mesh_decap: 1}, `flags ${flags}`)
    assert.deepEqual(flagsOf('sn_mesh_ct', repKey(LOCAL_BE.ip, 49611)), ['FIN_CLIENT'])
    const bfin = fromBackend(49611, TCP, 0x11)
    assert.deepEqual(bfin.delta, {mesh_return: 1, mesh_ct_closed: 1})
    assert.deepEqual(flagsOf('sn_mesh_ct', repKey(LOCAL_BE.ip, 49611)), ['FIN_CLIENT', 'FIN_BACKEND', 'CLOSING'])
    // Its last ACK goes by in the grace; a new SYN makes a new (embryonic) flow.
    assert.deepEqual(viaPeer(0x10).delta, {mesh_decap: 1})
    assert.deepEqual(viaPeer(0x02).delta, {mesh_decap: 1})
    assert.equal(entry('sn_mesh_ct', repKey(LOCAL_BE.ip, 49611)), undefined)
    assert.equal(entry('sn_mesh_syn', repKey(LOCAL_BE.ip, 49611))?.flags, 0n)
  })

  it('a UDP flow with a 1 s idle lifetime keeps its backend while used (longer than that), and gets a new pick once idle 1.5 s', async () => {
    xdp.setConfig({nodeIp: NODE, vxlanPort: 4789, underlayIfindex, meshUdpIdle: 1})
    const ms = () => Number(process.hrtime.bigint() / 1_000_000n)
    /**
     * A flow used every 300 ms for 1.8 s, either way: the same backend, its answers translated. A
     * loaded machine may hold a timer past the lifetime: an attempt with a gap of 900 ms or more
     * proves nothing and is made again on another port (false).
     */
    const usedFor2s = async (sport: number): Promise<boolean> => {
      toLocal()
      assert.ok(toLocalBe(dgram(sport)))
      toRemote()
      let last = ms()
      for (let i = 0; i < 6; i++) {
        await sleep(300)
        const t = ms()
        if (t - last >= 900) {
          console.log(`# a gap of ${t - last} ms (loaded machine): tried again`)
          return false
        }
        last = t
        if (i % 2) {
          const r = dgram(sport)
          assert.ok(toLocalBe(r), `after ${(i + 1) * 300} ms: ${JSON.stringify(r.delta)}`)
          assert.deepEqual(r.delta, {mesh_local: 1})
        } else {
          assert.deepEqual(fromBackend(sport, UDP).delta, {mesh_reply: 1}, `after ${(i + 1) * 300} ms`)
        }
      }
      return true
    }
    try {
      let sport = 49700
      while (!(await usedFor2s(sport))) assert.ok(++sport < 49705, 'five attempts, each held up past the lifetime')
      await sleep(1500)
      // Idle 1.5 s: the backend's late answer is not translated any more, and the next datagram is a new flow.
      const late = fromBackend(sport, UDP)
      assert.equal(late.retval, TC_ACT_SHOT)
      assert.deepEqual(late.delta, {mesh_ct_expired: 1, mesh_untracked: 1})
      const r = dgram(sport)
      assert.ok(toRemoteBe(r), JSON.stringify(r.delta))
      assert.deepEqual(r.delta, {mesh_ct_expired: 1, mesh_new_flow: 1, mesh_remote: 1})
      assert.equal(entry('sn_mesh_ct', fwdKey(sport, UDP))?.addr, REMOTE_BE.ip)
    } finally {
      xdp.setConfig({nodeIp: NODE, vxlanPort: 4789, underlayIfindex})
    }
  })

  // The agent stamps entries it converts at an upgrade with the fine clock; the programs read the
  // coarse one, a tick behind: a `seen` a moment "ahead" is just seen, not 2^32 ms ago (mesh.h).
  const msNow = () => Number((process.hrtime.bigint() / 1_000_000n) & 0xffffffffn)
  const stamp = (k: Buffer, seen: number) => xdp.map('sn_mesh_ct').update(k, snMeshCt.encode({...entry('sn_mesh_ct', k)!, seen}))

  it("a UDP flow last seen a second ahead of the programs' clock is alive both ways, not expired", () => {
    toLocal()
    assert.ok(toLocalBe(dgram(49710)))
    toRemote()
    const ahead = (msNow() + 1000) >>> 0
    for (const k of [fwdKey(49710, UDP), repKey(LOCAL_BE.ip, 49710, UDP)]) stamp(k, ahead)
    const back = fromBackend(49710, UDP)
    assert.equal(back.retval, TC_ACT_REDIRECT, JSON.stringify(back.delta))
    assert.deepEqual(back.delta, {mesh_reply: 1})
    const r = dgram(49710)
    assert.ok(toLocalBe(r), JSON.stringify(r.delta))
    assert.deepEqual(r.delta, {mesh_local: 1})
  })

  it("a TCP flow in its close grace, the close stamped a second ahead of the programs' clock: its last ACK still delivered both ways", () => {
    toLocal()
    for (const flags of [0x02, 0x10, 0x11]) assert.ok(toLocalBe(seg(49620, flags)))
    assert.deepEqual(fromBackend(49620, TCP, 0x11).delta, {mesh_reply: 1, mesh_ct_closed: 1})
    toRemote()
    stamp(repKey(LOCAL_BE.ip, 49620), (msNow() + 1000) >>> 0)
    const last = seg(49620, 0x10)
    assert.ok(toLocalBe(last), JSON.stringify(last.delta))
    assert.deepEqual(last.delta, {mesh_local: 1})
    assert.deepEqual(fromBackend(49620, TCP, 0x10).delta, {mesh_reply: 1})
  })

  it('a UDP flow last seen 2^31 ms + 1 s ago (25 days: a signed difference would read it ahead) has expired', () => {
    toLocal()
    assert.ok(toLocalBe(dgram(49720)))
    toRemote()
    const long = (msNow() - 2 ** 31 - 1000) >>> 0
    for (const k of [fwdKey(49720, UDP), repKey(LOCAL_BE.ip, 49720, UDP)]) stamp(k, long)
    const late = fromBackend(49720, UDP)
    assert.equal(late.retval, TC_ACT_SHOT)
    assert.deepEqual(late.delta, {mesh_ct_expired: 1, mesh_untracked: 1})
    const r = dgram(49720)
    assert.ok(toRemoteBe(r), JSON.stringify(r.delta))
    assert.deepEqual(r.delta, {mesh_ct_expired: 1, mesh_new_flow: 1, mesh_remote: 1})
  })
})

describe('path MTU and ICMP errors on published ports (issue 19, hole 7)', () => {
  const ROUTER = '172.30.0.1'
  /** An ICMP error (default: fragmentation needed, MTU `mtu`) from src to dst quoting `quote`, all checksums valid. */
  const icmpError = (o: {src: string; dst: string; type?: number; code?: number; mtu?: number}, quote: Buffer) => {
    const m = Buffer.alloc(8 + quote.length)
    m.writeUInt8(o.type ?? 3, 0)
    m.writeUInt8(o.code ?? 4, 1)
    m.writeUInt16BE(o.mtu ?? 0, 6)
    quote.copy(m, 8)
    m.writeUInt16BE(P.inetChecksum(m), 2)
    return P.ipv4Packet({src: o.src, dst: o.dst, protocol: P.IPPROTO_ICMP}, m)
  }
  /** Every checksum of an ICMP error: its IP header, the ICMP message, the quote's IP header and, when whole, its L4 one. */
  const assertIcmpChecksums = (ip: Buffer) => {
    assert.equal(P.inetChecksum(ip.subarray(0, 20)), 0, 'outer IP header checksum')
    const msg = ip.subarray(20, ip.readUInt16BE(2))
    assert.equal(P.inetChecksum(msg), 0, 'ICMP checksum')
    const q = msg.subarray(8)
    assert.equal(P.inetChecksum(q.subarray(0, 20)), 0, 'quoted IP header checksum')
    if (q.length >= q.readUInt16BE(2))
      assert.equal(P.l4Checksum(addrOf(q, 12), addrOf(q, 16), q[9]!, q.subarray(20, q.readUInt16BE(2))), 0, 'quoted L4 checksum')
  }
  /** A client's UDP datagram to the node of `ipLen` bytes (IP header included), DF set or not. */
  const bigUdp = (sport: number, dport: number, ipLen: number, df: boolean) => {
    const payload = Buffer.alloc(ipLen - 20 - 8)
    for (let i = 0; i < payload.length; i++) payload[i] = i & 0xff
    const l4 = P.udp({srcPort: sport, dstPort: dport}, payload)
    l4.writeUInt16BE(P.l4Checksum(CLIENT.ip, NODE, P.IPPROTO_UDP, l4), 6)
    return P.ethernet(
      {dst: NODE_MAC, src: CLIENT.mac, type: P.ETH_P_IP},
      P.ipv4Packet({src: CLIENT.ip, dst: NODE, protocol: P.IPPROTO_UDP, fragOff: df ? 0x4000 : 0}, l4),
    )
  }
  const toNodeFrame = (ip: Buffer) => P.ethernet({dst: NODE_MAC, src: CLIENT.mac, type: P.ETH_P_IP}, ip)
  const fromPeer = (inner: Buffer) =>
    P.vxlanFrame({outerSrc: PEER.ip, outerDst: NODE, outerSrcMac: PEER.mac, outerDstMac: NODE_MAC, vni: VNI}, inner)

  before(() => {
    // UDP published with the backend on the peer node.
    publish(8084, P.IPPROTO_UDP, {vni: VNI, addr: VIP_REMOTE, target: 53, mode: 1})
  })

  it('a DF datagram larger than the ingress network MTU: frag-needed back from the published address with that MTU, no flow made', () => {
    for (const port of [8084, 8080]) {
      const f = bigUdp(41600, port, 1500, true)
      const r = runXdp(f)
      assert.equal(r.retval, XDP_TX, `${port}: ${JSON.stringify(r.delta)}`)
      assert.deepEqual(r.delta, {mesh_frag_needed: 1}, `port ${port}`)
      assert.equal(r.data.length, P.ETH_HLEN + 576, 'within 576 bytes (RFC 1812)')
      assert.equal(macOf(r.data, 0), CLIENT.mac, 'to the client, by the FIB')
      assert.equal(macOf(r.data, 6), NODE_MAC)
      assert.equal(r.data.readUInt16BE(12), P.ETH_P_IP)
      const ip = r.data.subarray(P.ETH_HLEN)
      assert.equal(ip[9], P.IPPROTO_ICMP)
      assert.equal(addrOf(ip, 12), NODE, 'from the address the client spoke to')
      assert.equal(addrOf(ip, 16), CLIENT.ip)
      assert.deepEqual([ip[20], ip[21]], [3, 4], 'destination unreachable, fragmentation needed')
      assert.equal(ip.readUInt16BE(26), 1450, 'the MTU that fits: the ingress network MTU')
      assert.deepEqual(ip.subarray(28), f.subarray(P.ETH_HLEN, P.ETH_HLEN + 548), 'quotes the datagram as the client sent it')
      assert.equal(P.inetChecksum(ip.subarray(0, 20)), 0, 'IP header checksum')
      assert.equal(P.inetChecksum(ip.subarray(20)), 0, 'ICMP checksum')
      const fk = snMeshCtKey.encode({src: CLIENT.ip, dst: NODE, sport: 41600, dport: port, proto: P.IPPROTO_UDP, dir: 0})
      assert.equal(xdp.map('sn_mesh_ct').lookup(fk), undefined, 'no flow for a datagram never delivered')
    }
  })

  it('the same without DF: dropped and counted; one that fits goes to the remote backend as before', () => {
    const r = runXdp(bigUdp(41601, 8084, 1500, false))
    assert.equal(r.retval, XDP_DROP)
    assert.deepEqual(r.delta, {mesh_too_big: 1})
    const fits = bigUdp(41602, 8084, 1450, true)
    const ok = runXdp(fits)
    assert.equal(ok.retval, XDP_TX, JSON.stringify(ok.delta))
    assert.deepEqual(ok.delta, {mesh_new_flow: 1, mesh_remote: 1})
    assert.equal(ok.data.length, fits.length + P.VXLAN_OVERHEAD)
  })

  it('frag-needed from the client side about a reply of a local flow: reaches the backend, quote and destination translated, checksums valid', () => {
    assert.deepEqual(runXdp(toNode(P.IPPROTO_UDP, 41610, 8080)).delta, {mesh_new_flow: 1, mesh_local: 1})
    // The reply as the client got it, quoted whole by a router on the way (MTU 1400 there).
    const quote = ipPacket({src: NODE, dst: CLIENT.ip, proto: P.IPPROTO_UDP, sport: 8080, dport: 41610})
    const f = toNodeFrame(icmpError({src: ROUTER, dst: NODE, mtu: 1400}, quote))
    const r = runXdp(f)
    assert.equal(r.retval, XDP_REDIRECT, JSON.stringify(r.delta))
    assert.deepEqual(r.delta, {mesh_icmp_to_backend: 1})
    assert.equal(macOf(r.data, 0), LOCAL_BE.mac)
    const ip = r.data.subarray(P.ETH_HLEN)
    assert.equal(addrOf(ip, 12), ROUTER, 'the error still comes from whoever sent it')
    assert.equal(addrOf(ip, 16), LOCAL_BE.ip)
    assert.equal(ip.readUInt16BE(26), 1400, 'the MTU untouched')
    const q = ip.subarray(28)
    assert.equal(addrOf(q, 12), LOCAL_BE.ip, 'the quote: from the backend, as it sent it')
    assert.equal(q.readUInt16BE(20), 53, 'from its target port')
    assert.equal(addrOf(q, 16), CLIENT.ip)
    assert.equal(q.readUInt16BE(22), 41610)
    assertIcmpChecksums(ip)
  })

  it('a TCP reply quoted in 8 bytes only (the RFC 792 minimum), and a host-mode flow: translated all the same', () => {
    // The established local flow of the tracked-flow test: client:41000 -> node:8080 -> 10.0.0.5:80.
    const whole = ipPacket({src: NODE, dst: CLIENT.ip, proto: P.IPPROTO_TCP, sport: 8080, dport: 41000, flags: 0x10})
    const r = runXdp(toNodeFrame(icmpError({src: CLIENT.ip, dst: NODE, type: 11, code: 0}, whole.subarray(0, 28))))
    assert.equal(r.retval, XDP_REDIRECT, JSON.stringify(r.delta))
    assert.deepEqual(r.delta, {mesh_icmp_to_backend: 1})
    const ip = r.data.subarray(P.ETH_HLEN)
    assert.equal(addrOf(ip, 16), LOCAL_BE.ip)
    assert.equal(addrOf(ip, 28 + 12), LOCAL_BE.ip)
    assert.equal(ip.readUInt16BE(28 + 20), 80)
    assertIcmpChecksums(ip)
    // Host mode: a new flow client:43100 -> node:9090 -> the task's gateway-bridge address:80 (its SYN's entries only).
    assert.deepEqual(runXdp(toNode(P.IPPROTO_TCP, 43100, 9090)).delta, {mesh_new_flow: 1, mesh_local: 1})
    const hq = ipPacket({src: NODE, dst: CLIENT.ip, proto: P.IPPROTO_TCP, sport: 9090, dport: 43100, flags: 0x12})
    const h = runXdp(toNodeFrame(icmpError({src: ROUTER, dst: NODE, mtu: 1280}, hq)))
    assert.equal(h.retval, XDP_REDIRECT, JSON.stringify(h.delta))
    assert.deepEqual(h.delta, {mesh_icmp_to_backend: 1})
    assert.equal(macOf(h.data, 0), HOST_TASK.mac)
    assert.equal(addrOf(h.data, P.ETH_HLEN + 16), HOST_TASK.ip)
    assertIcmpChecksums(h.data.subarray(P.ETH_HLEN))
  })

  it('frag-needed about a reply of a flow whose backend is on another node: VXLAN to that node, which delivers it to the backend', () => {
    // The flow of the fitting datagram above: client:41602 -> node:8084 -> 10.0.0.9:53 on the peer.
    const quote = ipPacket({src: NODE, dst: CLIENT.ip, proto: P.IPPROTO_UDP, sport: 8084, dport: 41602})
    const f = toNodeFrame(icmpError({src: ROUTER, dst: NODE, mtu: 1400}, quote))
    const r = runXdp(f)
    assert.equal(r.retval, XDP_TX, JSON.stringify(r.delta))
    assert.deepEqual(r.delta, {mesh_icmp_to_backend: 1})
    assert.equal(r.data.length, f.length + P.VXLAN_OVERHEAD)
    const outer = r.data.subarray(P.ETH_HLEN)
    assert.equal(addrOf(outer, 16), PEER.ip)
    assert.equal(outer.readUIntBE(32, 3), VNI)
    const inner = outer.subarray(36)
    assert.equal(macOf(inner, 0), REMOTE_BE.mac)
    const ip = inner.subarray(P.ETH_HLEN)
    assert.equal(addrOf(ip, 16), REMOTE_BE.ip)
    assert.equal(addrOf(ip, 28 + 12), REMOTE_BE.ip)
    assert.equal(ip.readUInt16BE(28 + 20), 53)
    assertIcmpChecksums(ip)
    // The backend's node: a flow that came in by the peer (client:46100 -> 10.0.0.5:80, its SYN).
    const syn = P.ethernet(
      {dst: LOCAL_BE.mac, src: '02:00:00:00:00:01', type: P.ETH_P_IP},
      ipPacket({src: CLIENT.ip, dst: LOCAL_BE.ip, proto: P.IPPROTO_TCP, sport: 46100, dport: 80}),
    )
    assert.deepEqual(runXdp(fromPeer(syn)).delta, {mesh_decap: 1})
    const dq = ipPacket({src: LOCAL_BE.ip, dst: CLIENT.ip, proto: P.IPPROTO_TCP, sport: 80, dport: 46100, flags: 0x12})
    const dinner = P.ethernet(
      {dst: '02:42:0a:00:00:05', src: '02:00:00:00:00:01', type: P.ETH_P_IP},
      icmpError({src: ROUTER, dst: LOCAL_BE.ip, mtu: 1400}, dq),
    )
    const d = runXdp(fromPeer(dinner))
    assert.equal(d.retval, XDP_REDIRECT, JSON.stringify(d.delta))
    assert.deepEqual(d.delta, {mesh_decap: 1})
    assert.deepEqual(d.data, dinner)
    // The same about a flow that did not come in by the peer (client:41610 came straight here): refused as before.
    const stray = P.ethernet(
      {dst: '02:42:0a:00:00:05', src: '02:00:00:00:00:01', type: P.ETH_P_IP},
      icmpError(
        {src: ROUTER, dst: LOCAL_BE.ip, mtu: 1400},
        ipPacket({src: LOCAL_BE.ip, dst: CLIENT.ip, proto: P.IPPROTO_UDP, sport: 53, dport: 41610}),
      ),
    )
    const s = runXdp(fromPeer(stray))
    assert.equal(s.retval, XDP_DROP)
    assert.deepEqual(s.delta, {xdp_bad_source: 1})
  })

  it('an ICMP error about no mesh flow, and an echo, pass to the kernel untouched as before', () => {
    for (const ip of [
      icmpError(
        {src: ROUTER, dst: NODE, mtu: 1400},
        ipPacket({src: NODE, dst: CLIENT.ip, proto: P.IPPROTO_TCP, sport: 22, dport: 50000}),
      ),
      icmpError(
        {src: ROUTER, dst: NODE, mtu: 1400},
        ipPacket({src: NODE, dst: CLIENT.ip, proto: P.IPPROTO_UDP, sport: 8080, dport: 50001}),
      ),
      P.ipv4Packet({src: CLIENT.ip, dst: NODE, protocol: P.IPPROTO_ICMP}, P.icmpEcho()),
    ]) {
      const f = toNodeFrame(ip)
      const r = runXdp(f)
      assert.equal(r.retval, XDP_PASS)
      assert.deepEqual(r.data, f)
      assert.deepEqual(r.delta, {xdp_pass: 1})
    }
  })

  it('an ICMP error from the backend about a client request: the client sees the published address and port, both ways', () => {
    // Local flow client:41610 -> node:8080/udp -> 10.0.0.5:53; the task says port unreachable.
    const req = ipPacket({src: CLIENT.ip, dst: LOCAL_BE.ip, proto: P.IPPROTO_UDP, sport: 41610, dport: 53})
    const unreach = (src: string, quote: Buffer) =>
      P.ethernet(
        {dst: '02:42:ac:12:00:01', src: '02:42:ac:12:00:05', type: P.ETH_P_IP},
        icmpError({src, dst: CLIENT.ip, code: 3}, quote),
      )
    const r = runGw(unreach(LOCAL_BE.ip, req))
    assert.equal(r.retval, TC_ACT_REDIRECT, JSON.stringify(r.delta))
    assert.deepEqual(r.delta, {mesh_icmp_to_client: 1})
    assert.equal(macOf(r.data, 0), CLIENT.mac)
    const ip = r.data.subarray(P.ETH_HLEN)
    assert.equal(addrOf(ip, 12), NODE)
    assert.equal(addrOf(ip, 16), CLIENT.ip)
    assert.equal(addrOf(ip, 28 + 16), NODE, 'the quote: to the address the client spoke to')
    assert.equal(ip.readUInt16BE(28 + 22), 8080, 'and the published port')
    assertIcmpChecksums(ip)
    // A flow that came in by the peer (client:46001 -> 10.0.0.5:53/udp): back over VXLAN, untranslated.
    const viaPeer = unreach(
      LOCAL_BE.ip,
      ipPacket({src: CLIENT.ip, dst: LOCAL_BE.ip, proto: P.IPPROTO_UDP, sport: 46001, dport: 53}),
    )
    const v = runGw(viaPeer)
    assert.equal(v.retval, TC_ACT_REDIRECT, JSON.stringify(v.delta))
    assert.deepEqual(v.delta, {mesh_return: 1})
    assert.equal(addrOf(v.data, P.ETH_HLEN + 16), PEER.ip)
    assert.deepEqual(v.data.subarray(P.ETH_HLEN + 36 + P.ETH_HLEN), viaPeer.subarray(P.ETH_HLEN))
    // The ingress node's side: the remote backend's error about client:41602 -> node:8084 comes back by VXLAN.
    const back = P.ethernet(
      {dst: '02:42:ac:1e:00:64', src: REMOTE_BE.mac, type: P.ETH_P_IP},
      icmpError(
        {src: REMOTE_BE.ip, dst: CLIENT.ip, code: 3},
        ipPacket({src: CLIENT.ip, dst: REMOTE_BE.ip, proto: P.IPPROTO_UDP, sport: 41602, dport: 53}),
      ),
    )
    const b = runXdp(fromPeer(back))
    assert.equal(b.retval, XDP_TX, JSON.stringify(b.delta))
    assert.deepEqual(b.delta, {mesh_icmp_to_client: 1})
    assert.equal(b.data.length, back.length)
    assert.equal(macOf(b.data, 0), CLIENT.mac)
    const bip = b.data.subarray(P.ETH_HLEN)
    assert.equal(addrOf(bip, 12), NODE)
    assert.equal(addrOf(bip, 28 + 16), NODE)
    assert.equal(bip.readUInt16BE(28 + 22), 8084)
    assertIcmpChecksums(bip)
  })

  it('a backend reply too large for the way back over VXLAN: frag-needed back to the task with DF, dropped without; one by this node leaves as before', () => {
    /** The task's UDP reply of `ipLen` bytes from the backend's port 53 to client:dport. */
    const bigReply = (dport: number, ipLen: number, df: boolean) => {
      const l4 = P.udp({srcPort: 53, dstPort: dport}, Buffer.alloc(ipLen - 28, 7))
      l4.writeUInt16BE(P.l4Checksum(LOCAL_BE.ip, CLIENT.ip, P.IPPROTO_UDP, l4), 6)
      return P.ethernet(
        {dst: '02:42:ac:12:00:01', src: '02:42:ac:12:00:05', type: P.ETH_P_IP},
        P.ipv4Packet({src: LOCAL_BE.ip, dst: CLIENT.ip, protocol: P.IPPROTO_UDP, fragOff: df ? 0x4000 : 0}, l4),
      )
    }
    // client:46001 -> 10.0.0.5:53/udp came in by the peer (the UDP server test).
    const f = bigReply(46001, 1500, true)
    const r = runGw(f)
    assert.equal(r.retval, TC_ACT_REDIRECT, JSON.stringify(r.delta))
    assert.deepEqual(r.delta, {mesh_frag_needed: 1})
    assert.equal(r.data.length, P.ETH_HLEN + 576)
    assert.equal(macOf(r.data, 0), '02:42:ac:12:00:05', 'back to the task')
    const ip = r.data.subarray(P.ETH_HLEN)
    assert.equal(addrOf(ip, 12), CLIENT.ip, 'from the client, as a router on the way would')
    assert.equal(addrOf(ip, 16), LOCAL_BE.ip)
    assert.deepEqual([ip[20], ip[21]], [3, 4])
    assert.equal(ip.readUInt16BE(26), 1450)
    assert.deepEqual(ip.subarray(28), f.subarray(P.ETH_HLEN, P.ETH_HLEN + 548))
    assert.equal(P.inetChecksum(ip.subarray(0, 20)), 0)
    assert.equal(P.inetChecksum(ip.subarray(20)), 0)
    const nodf = runGw(bigReply(46001, 1500, false))
    assert.equal(nodf.retval, TC_ACT_SHOT)
    assert.deepEqual(nodf.delta, {mesh_too_big: 1})
    assert.deepEqual(runGw(bigReply(46001, 1450, true)).delta, {mesh_return: 1}, 'one that fits goes back')
    // client:41610 came in by this node: out of the underlay (1500) as it is.
    assert.deepEqual(runGw(bigReply(41610, 1500, true)).delta, {mesh_reply: 1})
  })

  it("a task's ICMP error about no flow of its own passes on untouched, as before", () => {
    for (const [src, ifindex, quote] of [
      // No such flow.
      [LOCAL_BE.ip, GW_IFINDEX, ipPacket({src: CLIENT.ip, dst: LOCAL_BE.ip, proto: P.IPPROTO_UDP, sport: 50002, dport: 53})],
      // Another task, from its own address, about the backend's flow: the quote is not to it.
      [
        OTHER_GW.ip,
        OTHER_GW.ifindex,
        ipPacket({src: CLIENT.ip, dst: LOCAL_BE.ip, proto: P.IPPROTO_UDP, sport: 41610, dport: 53}),
      ],
    ] as const) {
      const f = P.ethernet(
        {dst: '02:42:ac:12:00:01', src: '02:42:ac:12:00:06', type: P.ETH_P_IP},
        icmpError({src, dst: CLIENT.ip, code: 3}, quote),
      )
      const r = runGw(f, ifindex)
      assert.equal(r.retval, TC_ACT_UNSPEC, JSON.stringify(r.delta))
      assert.deepEqual(r.data, f)
      assert.deepEqual(r.delta, {})
    }
  })
})
