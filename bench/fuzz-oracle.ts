/**
 * What each program must do with a packet, worked out in TypeScript from the
 * maps alone, independently of the C: the verdict, the one counter that moves,
 * and the exact bytes that come out (the UDP source port of an encapsulation,
 * a hash, only within its range). The fuzzer (bench/fuzz.ts) holds every run
 * of the programs to it, so a redirect the maps do not justify, a missing
 * count or a malformed output is a mismatch.
 */
import type {CounterName} from '../src/bpf/index.js'
import {TC_ACT_REDIRECT, TC_ACT_SHOT, XDP_DROP, XDP_PASS, XDP_REDIRECT, type EndpointSpec} from '../test/bpf/harness.js'
import * as P from '../test/bpf/packets.js'

/** An endpoint as the fuzzer writes it into sn_endpoints (through the harness). */
export type Endpoint = EndpointSpec

export interface World {
  nodeIp: string
  port: number
  underlayIfindex: number
  /** VNI -> MTU */
  networks: Map<number, number>
  endpoints: Endpoint[]
  /** ifindex -> the task device's network and address */
  devices: Map<number, {vni: number; ip: string}>
}

export interface Expected {
  verdict: number
  counter: CounterName
  /** The exact output; undefined when the input must come out untouched. */
  out?: Buffer
  /** Checks an output that cannot be predicted byte for byte; returns a problem or undefined. */
  check?: (out: Buffer) => string | undefined
}

const ip4 = (b: Buffer, at: number) => `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`

function endpoint(w: World, vni: number, ip: string): Endpoint | undefined {
  return w.endpoints.find((e) => e.vni === vni && e.ip === ip)
}

/** sn_xdp_underlay */
export function expectXdp(w: World, p: Buffer): Expected {
  const pass: Expected = {verdict: XDP_PASS, counter: 'xdp_pass'}
  const drop = (counter: CounterName): Expected => ({verdict: XDP_DROP, counter})
  if (p.length < 14 || p.readUInt16BE(12) !== P.ETH_P_IP) return pass
  if (p.length < 34) return pass
  const vihl = p[14]!
  if (p[23] !== P.IPPROTO_UDP || vihl >> 4 !== 4 || (vihl & 15) !== 5 || (p.readUInt16BE(20) & 0x3fff) !== 0) return pass
  if (p.length < 42) return pass
  if (p.readUInt16BE(36) !== w.port || ip4(p, 30) !== w.nodeIp) return pass
  if (p.length < 50 || !(p[42]! & 0x08)) return drop('xdp_malformed')
  const vni = p.readUIntBE(46, 3)
  const refuse = (c: CounterName): Expected => (w.networks.has(vni) ? drop(c) : pass)
  if (p.length < 64) return refuse('xdp_malformed')
  if (p.readUInt16BE(62) !== P.ETH_P_IP) return refuse('xdp_not_ipv4')
  if (p.length < 84 || p[64]! >> 4 !== 4) return refuse('xdp_malformed')
  const src = endpoint(w, vni, ip4(p, 76))
  if (!src || src.local || src.nodeIp !== ip4(p, 26)) return refuse('xdp_bad_source')
  const dst = endpoint(w, vni, ip4(p, 80))
  if (!dst || !dst.local || !dst.ifindex) return drop('xdp_no_endpoint')
  const out = Buffer.from(p.subarray(50))
  P.mac(dst.mac).copy(out, 0)
  return {verdict: XDP_REDIRECT, counter: 'xdp_decap', out}
}

/** sn_tc_task, for a frame arriving on `ifindex` with no GSO. */
export function expectTc(w: World, p: Buffer, ifindex: number): Expected {
  const drop = (counter: CounterName): Expected => ({verdict: TC_ACT_SHOT, counter})
  const dev = w.devices.get(ifindex)
  if (!dev) return drop('tc_unknown_device')
  if (p.length < 14) return drop('tc_drop_other')
  const proto = p.readUInt16BE(12)
  if (proto === P.ETH_P_ARP) return expectArp(w, p, dev)
  if (proto !== P.ETH_P_IP) return drop('tc_drop_other')
  if (p.length < 34 || p[14]! >> 4 !== 4) return drop('tc_drop_other')
  if (ip4(p, 26) !== dev.ip) return drop('tc_drop_other')
  const mtu = w.networks.get(dev.vni)
  if (p.length > 14 + 576 && mtu && p.length - 14 > mtu) {
    if (!(p[20]! & 0x40)) return drop('tc_too_big')
    return {verdict: TC_ACT_REDIRECT, counter: 'tc_frag_needed', out: fragNeeded(p, mtu)}
  }
  const ep = endpoint(w, dev.vni, ip4(p, 30))
  if (!ep) return drop('tc_no_endpoint')
  if (ep.local) {
    const out = Buffer.from(p)
    P.mac(ep.mac).copy(out, 0)
    return {verdict: TC_ACT_REDIRECT, counter: 'tc_local', out}
  }
  if (!w.underlayIfindex) return drop('tc_encap_fail')
  return {verdict: TC_ACT_REDIRECT, counter: 'tc_encap', check: (out) => checkEncap(w, p, dev.vni, ep, out)}
}

function expectArp(w: World, p: Buffer, dev: {vni: number; ip: string}): Expected {
  const drop = (counter: CounterName): Expected => ({verdict: TC_ACT_SHOT, counter})
  if (p.length < 42) return drop('tc_drop_other')
  const a = 14
  if (
    p.readUInt16BE(a) !== 1 ||
    p.readUInt16BE(a + 2) !== P.ETH_P_IP ||
    p[a + 4] !== 6 ||
    p[a + 5] !== 4 ||
    p.readUInt16BE(a + 6) !== 1
  )
    return drop('tc_drop_other')
  const spa = ip4(p, a + 14)
  const tpa = ip4(p, a + 24)
  if (tpa === spa || tpa === dev.ip) return drop('tc_drop_other')
  const ep = endpoint(w, dev.vni, tpa)
  if (!ep) return drop('tc_no_endpoint')
  const out = Buffer.from(p)
  out.writeUInt16BE(2, a + 6)
  p.copy(out, a + 18, a + 8, a + 14) // tha = old sha
  p.copy(out, a + 24, a + 14, a + 18) // tpa = old spa
  P.mac(ep.mac).copy(out, a + 8) // sha = the endpoint's MAC
  P.ipv4(tpa).copy(out, a + 14) // spa = the asked address
  p.copy(out, 0, 6, 12) // back to the asker
  P.mac(ep.mac).copy(out, 6)
  return {verdict: TC_ACT_REDIRECT, counter: 'tc_arp_reply', out}
}

/** RFC 792/1191 "fragmentation needed" from the frame's destination back to its source, quoting 548 bytes. */
export function fragNeeded(p: Buffer, mtu: number): Buffer {
  const icmp = Buffer.concat([Buffer.from([3, 4, 0, 0, 0, 0, mtu >> 8, mtu & 0xff]), p.subarray(14, 14 + 548)])
  icmp.writeUInt16BE(P.inetChecksum(icmp), 2)
  const ip = P.ipv4Packet({src: ip4(p, 30), dst: ip4(p, 26), protocol: P.IPPROTO_ICMP, ttl: 64, id: 0, fragOff: 0x4000}, icmp)
  return Buffer.concat([p.subarray(6, 12), p.subarray(0, 6), Buffer.from([0x08, 0x00]), ip])
}

function checkEncap(w: World, p: Buffer, vni: number, ep: Endpoint, out: Buffer): string | undefined {
  if (out.length !== p.length + 50) return `encap: ${out.length} bytes out of ${p.length}`
  if (!out.subarray(0, 12).equals(p.subarray(0, 12)) || out.readUInt16BE(12) !== P.ETH_P_IP) return 'encap: outer Ethernet header'
  const sport = out.readUInt16BE(34)
  if (sport < 49152) return `encap: source port ${sport}`
  const want = P.ethernet(
    {dst: '00:00:00:00:00:00', src: '00:00:00:00:00:00', type: P.ETH_P_IP},
    P.ipv4Packet(
      {src: w.nodeIp, dst: ep.nodeIp, protocol: P.IPPROTO_UDP, ttl: 64, id: 0, fragOff: 0x4000},
      P.udp({srcPort: sport, dstPort: w.port, checksum: 0}, P.vxlan({vni, flags: 0x08}, p)),
    ),
  )
  p.copy(want, 0, 0, 12)
  return out.equals(want) ? undefined : 'encap: headers differ from RFC 7348 as built in TypeScript'
}
