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
const CLIENT = {ip: '172.30.0.100', mac: '02:00:00:00:00:64'}
const VNI = 4096
const VIP = '10.0.0.2'
const VIP_REMOTE = '10.0.0.3'
const LOCAL_BE = {key: 'task-local', ip: '10.0.0.5', mac: '02:42:0a:00:00:05', ifindex: 7}
const REMOTE_BE = {key: 'task-remote', ip: '10.0.0.9', mac: '02:42:0a:00:00:09'}
const HOST_TASK = {ip: '172.18.0.5', mac: '02:42:ac:12:00:05', ifindex: 9}
const underlayIfindex = Number(execFileSync('cat', ['/sys/class/net/sn-mu0/ifindex'], {encoding: 'utf8'}).trim())

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

function runGw(f: Buffer): {retval: number; data: Buffer; delta: Record<string, number>} {
  const {res, delta} = gw.runCounted(f, {ctx: skbCtx(1)})
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
  xdp.map('sn_mesh_nodes').update(ipv4Key.encode(PEER.ip), snMeshNode.encode({flags: 0}))
  xdp.map('sn_mesh_nodes').update(ipv4Key.encode(NODE), snMeshNode.encode({flags: 0}))
  const ep = (ip: string, mac: string, flags: number, nodeIp: string, ifindex: number) =>
    xdp
      .map('sn_endpoints')
      .update(snEndpointKey.encode({vni: VNI, ip}), snEndpoint.encode({node_ip: nodeIp, ifindex, mac, flags}))
  ep(LOCAL_BE.ip, LOCAL_BE.mac, 1 | 4, NODE, LOCAL_BE.ifindex)
  ep(REMOTE_BE.ip, REMOTE_BE.mac, 4, PEER.ip, 0)
  xdp.addService(VNI, VIP, 1, [{key: LOCAL_BE.key, ip: LOCAL_BE.ip, nodeIp: NODE}])
  xdp.addService(VNI, VIP_REMOTE, 2, [{key: REMOTE_BE.key, ip: REMOTE_BE.ip, nodeIp: PEER.ip}])
  xdp.addService(VNI, '10.0.0.4', 3, [])
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
    // Keyed by the client's side only: the task may answer from any of its addresses.
    const rk = snMeshCtKey.encode({src: '0.0.0.0', dst: CLIENT.ip, sport: 80, dport: 41000, proto: P.IPPROTO_TCP, dir: 1})
    const rev = snMeshCt.decode(xdp.map('sn_mesh_ct').lookup(rk)!)
    assert.equal(rev.addr, NODE)
    assert.equal(rev.port, 8080)
    assert.equal(rev.node, NODE)
    assert.equal(rev.peer_mac, CLIENT.mac)
  })

  it('a tracked flow keeps its backend without a new pick (CT hit)', () => {
    const r = runXdp(toNode(P.IPPROTO_TCP, 41000, 8080, 0x10))
    assert.equal(r.retval, XDP_REDIRECT)
    assert.deepEqual(r.delta, {mesh_local: 1})
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
    const rk = snMeshCtKey.encode({src: '0.0.0.0', dst: CLIENT.ip, sport: 80, dport: 46000, proto: P.IPPROTO_TCP, dir: 1})
    const rev = snMeshCt.decode(xdp.map('sn_mesh_ct').lookup(rk)!)
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
