/**
 * What the fuzzer (bench/fuzz.ts) sends: well-formed packets of every kind the
 * programs know, drawn from what the maps hold and a little beyond (VXLAN from
 * peers, task frames, requests to published ports and their follow-ups,
 * replies of tracked flows, ICMP errors about them, probes), then mutated as
 * the wire breaks packets: truncated anywhere, bytes flipped, lying lengths,
 * IP options, VLAN tags, fragments, odd VXLAN flags, random garbage.
 */
import {PROBE_REQUEST, encodeProbe, probeKey} from '../src/dataplane/probe-wire.js'
import * as P from '../test/bpf/packets.js'
import * as W from './fuzz-world.js'

/** xorshift32: small, seedable, and the same sequence in every run with the same seed. */
export class Rng {
  constructor(private s: number) {
    if (this.s === 0) this.s = 1
  }
  u32(): number {
    let x = this.s
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    this.s = x >>> 0
    return this.s
  }
  int(n: number): number {
    return this.u32() % n
  }
  chance(p: number): boolean {
    return this.u32() / 0x100000000 < p
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n)
    for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff
    return b
  }
}

const TCP = P.IPPROTO_TCP
const UDP = P.IPPROTO_UDP
const ADDRS = [
  '10.0.1.4',
  '10.0.1.5',
  '10.0.1.9',
  '10.0.1.10',
  '10.0.1.13',
  '10.0.1.77',
  '10.0.2.4',
  '10.0.2.9',
  W.VIP,
  W.VIP_EMPTY,
  '8.8.8.8',
]
const NODES = [W.NODE, W.PEER, W.THIRD, W.STRANGER]
const CLIENTS = [W.CLIENT, W.CLIENT, W.CLIENT_NO_NEIGH, W.CLIENT_FAR]
const MAC_PEER = '02:00:ac:1e:00:0c'
const MAC_NODE = '02:00:ac:1e:00:0b'
const MAC_CLIENT = '02:00:00:00:00:64'

/** A TCP or UDP packet (IPv4 and on) with valid checksums: a SYN may carry an MSS option first. */
export function l4Packet(
  r: Rng,
  o: {src: string; dst: string; proto: number; sport: number; dport: number; flags?: number; size?: number; df?: boolean},
): Buffer {
  const payload = r.bytes(o.size ?? r.int(120))
  let l4: Buffer
  if (o.proto === TCP) {
    const flags = o.flags ?? 0x02
    l4 = P.tcp({srcPort: o.sport, dstPort: o.dport, flags, seq: r.u32(), ack: flags & 0x10 ? r.u32() : 0}, payload)
    if (flags & 0x02 && r.chance(0.8)) {
      const mss = r.pick([1460, 1410, 1400, 536, 9000])
      l4 = Buffer.concat([l4.subarray(0, 20), Buffer.from([2, 4, mss >> 8, mss & 0xff]), l4.subarray(20)])
      l4[12] = 6 << 4
    }
    l4.writeUInt16BE(P.l4Checksum(o.src, o.dst, TCP, l4), 16)
  } else {
    l4 = P.udp({srcPort: o.sport, dstPort: o.dport}, payload)
    if (r.chance(0.8)) {
      const sum = P.l4Checksum(o.src, o.dst, UDP, l4)
      l4.writeUInt16BE(sum === 0 ? 0xffff : sum, 6)
    }
  }
  return P.ipv4Packet({src: o.src, dst: o.dst, protocol: o.proto, id: r.int(65536), fragOff: o.df === false ? 0 : 0x4000}, l4)
}

/** An ICMP error from `src` to `dst` quoting `quoted` (an IPv4 packet), as a router or host sends it. */
export function icmpError(r: Rng, src: string, dst: string, quoted: Buffer): Buffer {
  const type = r.pick([3, 3, 11, 12])
  const code = type === 3 ? r.pick([3, 4, 1]) : 0
  const icmp = Buffer.concat([
    Buffer.from([type, code, 0, 0, 0, 0, 0x05, 0x78]),
    quoted.subarray(0, r.chance(0.7) ? 28 + r.int(40) : quoted.length),
  ])
  icmp.writeUInt16BE(P.inetChecksum(icmp), 2)
  return P.ipv4Packet({src, dst, protocol: P.IPPROTO_ICMP}, icmp)
}

function l4(r: Rng, src: string, dst: string, size: number, df: boolean): Buffer {
  const payload = r.bytes(Math.max(0, size))
  const proto = r.pick([UDP, TCP, P.IPPROTO_ICMP, 47])
  const body =
    proto === UDP
      ? P.udp({srcPort: 1024 + r.int(60000), dstPort: r.pick([53, 80, 8080, 4789])}, payload)
      : proto === TCP
        ? P.tcp({srcPort: 1024 + r.int(60000), dstPort: 80, flags: r.int(64)}, payload)
        : proto === P.IPPROTO_ICMP
          ? P.icmpEcho({id: r.int(65536)}, payload)
          : payload
  return P.ipv4Packet({src, dst, protocol: proto, fragOff: df ? 0x4000 : 0, id: r.int(65536)}, body)
}

function innerFrame(r: Rng): Buffer {
  const src = r.pick(ADDRS)
  const dst = r.pick(ADDRS)
  const kind = r.int(10)
  if (kind === 0) {
    return P.ethernet(
      {dst: 'ff:ff:ff:ff:ff:ff', src: '02:42:0a:00:01:09', type: P.ETH_P_ARP},
      P.arp({op: 1, sha: '02:42:0a:00:01:09', spa: src, tha: '00:00:00:00:00:00', tpa: dst}),
    )
  }
  if (kind === 1)
    return P.ethernet({dst: '02:42:0a:00:01:04', src: '02:42:0a:00:01:09', type: P.ETH_P_IPV6}, r.bytes(40 + r.int(64)))
  return P.ethernet(
    {dst: '02:00:00:00:00:ee', src: '02:42:0a:00:01:09', type: P.ETH_P_IP},
    l4(r, src, dst, r.int(200), r.chance(0.5)),
  )
}

const outer = {outerSrcMac: MAC_PEER, outerDstMac: MAC_NODE}

/** A packet on the underlay for the overlay path: mostly VXLAN to the node, sometimes something else. */
export function underlayPacket(r: Rng): Buffer {
  const kind = r.int(9)
  if (kind < 2) {
    // What a peer node sends: one of its tasks to one of ours (then maybe mutated).
    const src = r.pick(['10.0.1.9', '10.0.1.10'])
    const dst = r.pick(['10.0.1.4', '10.0.1.5', '10.0.1.77'])
    const inner = P.ethernet(
      {dst: '02:00:00:00:00:ee', src: '02:42:0a:00:01:09', type: P.ETH_P_IP},
      l4(r, src, dst, r.int(1400), r.chance(0.5)),
    )
    return P.vxlanFrame({...outer, outerSrc: W.PEER, outerDst: W.NODE, vni: W.VNI}, inner)
  }
  if (kind < 5) {
    // A well-formed VXLAN packet whose fields are drawn from what the maps know, and a little beyond.
    const flags = r.chance(0.85) ? 0x08 : r.int(256)
    const pkt = P.vxlanFrame(
      {
        ...outer,
        outerSrc: r.pick(NODES),
        outerDst: r.chance(0.9) ? W.NODE : W.PEER,
        dstPort: r.chance(0.9) ? 4789 : r.pick([4790, 8472, 53]),
        vni: r.pick([W.VNI, W.VNI, W.VNI, W.VNI2, W.INGRESS_VNI, 4242, 0, 0xffffff]),
        vxlanFlags: flags,
      },
      innerFrame(r),
    )
    if (r.chance(0.1)) pkt[43 + r.int(3)] = r.u32() & 0xff // reserved bits after the flags
    if (r.chance(0.1)) pkt[49] = r.u32() & 0xff // the reserved byte after the VNI
    return pkt
  }
  if (kind === 5) {
    // A liveness probe: tagged with a key the node holds, one it does not, or broken.
    const keyId = r.pick([1, 2, 3])
    const probe = encodeProbe(
      {type: PROBE_REQUEST, keyId, nonce: r.bytes(16)},
      probeKey(Buffer.alloc(32, keyId * 0x11)),
      r.pick(NODES),
      W.NODE,
    )
    const src = r.chance(0.8) ? W.PEER : W.THIRD
    const body = probeFrom(src, probe, r)
    return body
  }
  if (kind === 6)
    return P.udpFrame({srcMac: MAC_PEER, dstMac: MAC_NODE, src: W.PEER, dst: W.NODE, dstPort: 7946}, 14 + 28 + r.int(200))
  if (kind === 7)
    return P.ethernet(
      {dst: 'ff:ff:ff:ff:ff:ff', src: MAC_PEER, type: r.pick([P.ETH_P_ARP, P.ETH_P_IPV6, 0x8100, 0x88cc])},
      r.bytes(r.int(120)),
    )
  return r.bytes(14 + r.int(300))
}

function probeFrom(src: string, probe: Buffer, r: Rng): Buffer {
  const b = Buffer.concat([probe, r.chance(0.2) ? r.bytes(r.int(16)) : Buffer.alloc(0)])
  return P.ethernet(
    {dst: MAC_NODE, src: MAC_PEER, type: P.ETH_P_IP},
    P.ipv4Packet({src, dst: W.NODE, protocol: UDP}, P.udp({srcPort: 40000 + r.int(1000), dstPort: W.VXLAN_PORT}, b)),
  )
}

/** A frame from a task's overlay device (task A, 10.0.1.4, unless `src` says otherwise). */
export function taskFrame(r: Rng, own = '10.0.1.4'): Buffer {
  const kind = r.int(10)
  const src = r.chance(0.85) ? own : r.pick(ADDRS)
  const dst = r.pick(ADDRS)
  const dstMac = '02:42:0a:00:01:09'
  const srcMac = '02:42:0a:00:01:04'
  if (kind < 2) {
    return P.ethernet(
      {dst: 'ff:ff:ff:ff:ff:ff', src: srcMac, type: P.ETH_P_ARP},
      P.arp({
        op: r.chance(0.9) ? 1 : r.int(4),
        sha: srcMac,
        spa: r.chance(0.9) ? src : '0.0.0.0',
        tha: '00:00:00:00:00:00',
        tpa: dst,
      }),
    )
  }
  if (kind === 2) {
    // Around the MTU: frames that fit, and frames that do not, with and without DF.
    const size = r.pick([1400, 1428, 1450, 1451, 1460, 1500, 2000, 3000]) - 20 - 8 + r.int(3) - 1
    return P.ethernet({dst: dstMac, src: srcMac, type: P.ETH_P_IP}, l4(r, src, dst, size, r.chance(0.7)))
  }
  if (kind === 3)
    return P.ethernet({dst: dstMac, src: srcMac, type: r.pick([P.ETH_P_IPV6, 0x8100, 0x88a8, 0x0000])}, r.bytes(40 + r.int(100)))
  if (kind === 4) return r.bytes(14 + r.int(200))
  return P.ethernet({dst: dstMac, src: srcMac, type: P.ETH_P_IP}, l4(r, src, dst, r.int(300), r.chance(0.5)))
}

/** A tracked flow's tuple as its client sent it, for follow-ups and replies. */
export interface Flow {
  client: string
  sport: number
  dst: string
  dport: number
  proto: number
}

/** Recent flows of one kind: a ring, so follow-ups find flows that are still tracked. */
export class Flows {
  private ring: Flow[] = []
  constructor(private size = 64) {}
  add(f: Flow): void {
    if (this.ring.length < this.size) this.ring.push(f)
    else this.ring[(f.sport + f.client.length) % this.size] = f
  }
  pick(r: Rng): Flow | undefined {
    return this.ring.length ? r.pick(this.ring) : undefined
  }
}

const tcpFlags = (r: Rng) => r.pick([0x02, 0x02, 0x10, 0x10, 0x18, 0x11, 0x14, 0x04, 0x12, r.int(64)])

/** Task A or B (by `own`) to a VIP, or a follow-up of a flow to one; or a backend's reply (A only). */
export function vipFrame(r: Rng, own: string, flows: Flows): Buffer {
  const srcMac = W.macOfIp(own)
  const eth = (ip: Buffer) => P.ethernet({dst: W.macOfIp(W.VIP), src: srcMac, type: P.ETH_P_IP}, ip)
  const f = flows.pick(r)
  const kind = r.int(10)
  if (kind < 4 || !f) {
    const proto = r.chance(0.6) ? TCP : UDP
    const flow: Flow = {
      client: own,
      sport: 1024 + r.int(200),
      dst: r.chance(0.9) ? W.VIP : W.VIP_EMPTY,
      dport: r.pick([80, 443, 53]),
      proto,
    }
    flows.add(flow)
    return eth(
      l4Packet(r, {
        src: own,
        dst: flow.dst,
        proto,
        sport: flow.sport,
        dport: flow.dport,
        flags: r.chance(0.8) ? 0x02 : tcpFlags(r),
      }),
    )
  }
  if (kind < 6 && f.client === own)
    return eth(l4Packet(r, {src: own, dst: f.dst, proto: f.proto, sport: f.sport, dport: f.dport, flags: tcpFlags(r)}))
  if (kind === 6) {
    // An echo to the VIP, or another ICMP message.
    return eth(P.ipv4Packet({src: own, dst: W.VIP, protocol: P.IPPROTO_ICMP}, P.icmpEcho({id: r.int(65536)}, r.bytes(r.int(40)))))
  }
  if (kind === 7 && own === '10.0.1.4') {
    // Task A as a backend: an ICMP error about a client's datagram (port unreachable, ...).
    const quoted = l4Packet(r, {src: f.client, dst: own, proto: f.proto, sport: f.sport, dport: f.dport, flags: 0x02})
    return P.ethernet({dst: W.macOfIp(f.client), src: srcMac, type: P.ETH_P_IP}, icmpError(r, own, f.client, quoted))
  }
  // Task A as the backend of a flow: its reply to the client (or the hairpin's own reply).
  const to = f.client === own ? f.dst : f.client
  return P.ethernet(
    {dst: W.macOfIp(to), src: srcMac, type: P.ETH_P_IP},
    l4Packet(r, {src: own, dst: to, proto: f.proto, sport: f.dport, dport: f.sport, flags: tcpFlags(r)}),
  )
}

/** A VXLAN frame from `node` on `vni` carrying `ip` (an inner IPv4 packet). */
export function overVxlan(node: string, vni: number, ip: Buffer, dstMac = '02:42:0a:00:00:05'): Buffer {
  return P.vxlanFrame(
    {...outer, outerSrc: node, outerDst: W.NODE, vni},
    P.ethernet({dst: dstMac, src: '02:42:0a:00:00:09', type: P.ETH_P_IP}, ip),
  )
}

/** A remote backend's reply to a VIP client of ours, over VXLAN from its node (xdp's reverse NAT). */
export function vipReplyOverVxlan(r: Rng, flows: Flows): Buffer | undefined {
  const f = flows.pick(r)
  if (!f) return undefined
  const backend = r.pick(['10.0.1.9', '10.0.1.13'])
  const node = backend === '10.0.1.9' ? W.PEER : W.THIRD
  if (r.chance(0.2)) {
    const quoted = l4Packet(r, {src: f.client, dst: backend, proto: f.proto, sport: f.sport, dport: f.dport})
    return overVxlan(node, W.VNI, icmpError(r, backend, f.client, quoted), W.macOfIp(f.client))
  }
  return overVxlan(
    node,
    W.VNI,
    l4Packet(r, {src: backend, dst: f.client, proto: f.proto, sport: f.dport, dport: f.sport, flags: tcpFlags(r)}),
    W.macOfIp(f.client),
  )
}

/** A client's request to a published port (or a port that is not one), or a follow-up of its flow. */
export function meshRequest(r: Rng, flows: Flows): Buffer {
  const f = flows.pick(r)
  const eth = (ip: Buffer) =>
    P.ethernet({dst: MAC_NODE, src: r.chance(0.95) ? MAC_CLIENT : '00:00:00:00:00:00', type: P.ETH_P_IP}, ip)
  if (f && r.chance(0.5)) {
    return eth(
      l4Packet(r, {
        src: f.client,
        dst: f.dst,
        proto: f.proto,
        sport: f.sport,
        dport: f.dport,
        flags: r.pick([0x10, 0x10, 0x18, 0x11, 0x04, 0x02, 0x14]),
      }),
    )
  }
  const proto = r.chance(0.7) ? TCP : UDP
  const flow: Flow = {
    client: r.pick(CLIENTS),
    sport: 1024 + r.int(300),
    dst: r.pick([W.NODE, W.NODE, W.NODE, W.SECOND, W.NOT_OURS]),
    dport: r.pick([8080, 8080, 8080, 8082, 9090, 22, 4789]),
    proto,
  }
  flows.add(flow)
  const big = r.chance(0.05)
  return eth(
    l4Packet(r, {
      src: flow.client,
      dst: flow.dst,
      proto,
      sport: flow.sport,
      dport: flow.dport,
      flags: r.chance(0.85) ? 0x02 : tcpFlags(r),
      size: big ? 1400 + r.int(100) : undefined,
      df: !big || r.chance(0.7),
    }),
  )
}

/** What comes back for a mesh flow: an ICMP error from the client about its reply, or a remote backend's reply over VXLAN. */
export function meshReturn(r: Rng, flows: Flows): Buffer | undefined {
  const f = flows.pick(r)
  if (!f) return undefined
  const target = f.proto === TCP ? 80 : 53
  const kind = r.int(4)
  if (kind === 0) {
    // The client's stack (or a router) about a reply it got from the published address.
    const quoted = l4Packet(r, {src: f.dst, dst: f.client, proto: f.proto, sport: f.dport, dport: f.sport})
    return P.ethernet({dst: MAC_NODE, src: MAC_CLIENT, type: P.ETH_P_IP}, icmpError(r, f.client, f.dst, quoted))
  }
  if (kind === 1) {
    // The remote backend about the client's request.
    const quoted = l4Packet(r, {src: f.client, dst: W.INGRESS_REMOTE, proto: f.proto, sport: f.sport, dport: target})
    return overVxlan(W.PEER, W.INGRESS_VNI, icmpError(r, W.INGRESS_REMOTE, f.client, quoted), W.macOfIp(f.client))
  }
  return overVxlan(
    r.chance(0.9) ? W.PEER : W.THIRD,
    W.INGRESS_VNI,
    l4Packet(r, {src: W.INGRESS_REMOTE, dst: f.client, proto: f.proto, sport: target, dport: f.sport, flags: tcpFlags(r)}),
    W.macOfIp(f.client),
  )
}

/** An ingress node's forwarded request to our local backend (we are the backend's node), or an ICMP error it forwards. */
export function meshForwarded(r: Rng, flows: Flows): Buffer {
  const f = flows.pick(r)
  const proto = f?.proto ?? (r.chance(0.7) ? TCP : UDP)
  const client = f && r.chance(0.6) ? f.client : r.pick(CLIENTS)
  const sport = f && r.chance(0.6) ? f.sport : 2000 + r.int(200)
  const target = proto === TCP ? 80 : 53
  const from = r.chance(0.85) ? W.PEER : r.pick([W.THIRD, W.STRANGER])
  flows.add({client, sport, dst: from, dport: target, proto})
  if (r.chance(0.1)) {
    const quoted = l4Packet(r, {src: W.INGRESS_LOCAL, dst: client, proto, sport: target, dport: sport})
    return overVxlan(from, W.INGRESS_VNI, icmpError(r, client, W.INGRESS_LOCAL, quoted))
  }
  const dst = r.chance(0.9) ? W.INGRESS_LOCAL : r.pick([W.INGRESS_REMOTE, '10.0.0.77'])
  return overVxlan(
    from,
    W.INGRESS_VNI,
    l4Packet(r, {src: client, dst, proto, sport, dport: target, flags: r.chance(0.5) ? 0x02 : tcpFlags(r)}),
  )
}

const GW_DSTS = [
  W.NODE,
  W.SECOND,
  W.PEER,
  W.THIRD,
  W.STRANGER,
  W.GW_BRIDGE,
  '172.18.0.9',
  '8.8.8.8',
  W.CLIENT,
  W.CLIENT_FAR,
  '127.0.0.1',
  '172.30.0.255',
]

/**
 * A frame from a task's gateway veth: the local backend (172.18.0.5 / 10.0.0.5) or the host-mode
 * task (172.18.0.6) answering its mesh flows, connecting out, reaching for node ports, spoofing.
 */
export function gwFrame(r: Rng, host: boolean, requests: Flows, forwarded: Flows): Buffer {
  const own = host ? W.HOST_TASK : r.chance(0.6) ? W.INGRESS_LOCAL : W.TASK_GW
  const src = r.chance(0.9) ? own : r.pick([W.INGRESS_REMOTE, '172.18.0.9', W.HOST_TASK, W.TASK_GW])
  const eth = (ip: Buffer) => P.ethernet({dst: '02:42:ac:12:00:01', src: W.macOfIp(own), type: P.ETH_P_IP}, ip)
  const kind = r.int(10)
  const f = (r.chance(0.5) ? requests : forwarded).pick(r)
  if (kind < 5 && f) {
    // A reply of a mesh flow: from the target port to the client's.
    const sport = host ? 80 : f.proto === TCP ? 80 : 53
    const big = r.chance(0.05)
    return eth(
      l4Packet(r, {
        src,
        dst: f.client,
        proto: f.proto,
        sport,
        dport: f.sport,
        flags: r.chance(0.3) ? 0x12 : tcpFlags(r),
        size: big ? 1420 + r.int(80) : undefined,
        df: !big || r.chance(0.6),
      }),
    )
  }
  if (kind === 5 && f) {
    // An ICMP error about the client's request.
    const target = host ? 80 : f.proto === TCP ? 80 : 53
    const quoted = l4Packet(r, {src: f.client, dst: src, proto: f.proto, sport: f.sport, dport: target})
    return eth(icmpError(r, src, f.client, quoted))
  }
  const proto = r.chance(0.6) ? UDP : TCP
  const dport = r.pick([4789, 7946, 7950, 53, 80, 443, 8080])
  const pkt = l4Packet(r, {src, dst: r.pick(GW_DSTS), proto, sport: 30000 + r.int(30000), dport, flags: tcpFlags(r)})
  if (r.chance(0.1)) {
    // IP options: the ports are read past them.
    const opts = Buffer.alloc(4 * (1 + r.int(3)), 1)
    const withOpts = Buffer.concat([pkt.subarray(0, 20), opts, pkt.subarray(20)])
    withOpts[0] = 0x40 | ((20 + opts.length) / 4)
    withOpts.writeUInt16BE(withOpts.length, 2)
    return eth(withOpts)
  }
  return eth(pkt)
}

/** Breaks a packet in one of the ways the wire does, or leaves it alone. */
export function mutate(r: Rng, p: Buffer, ipAt: number): Buffer {
  let out = Buffer.from(p)
  const n = r.int(4)
  for (let i = 0; i < n; i++) {
    switch (r.int(8)) {
      case 0: // truncated anywhere (the test run needs the Ethernet header)
        out = out.subarray(0, 14 + r.int(Math.max(1, out.length - 13)))
        break
      case 1: // bytes flipped
        for (let k = r.int(4) + 1; k > 0; k--) out[r.int(out.length)] = r.u32() & 0xff
        break
      case 2: // a total length that lies
        if (out.length >= ipAt + 4) out.writeUInt16BE(r.int(65536), ipAt + 2)
        break
      case 3: // IP options (ihl > 5), or a bad ihl
        if (out.length >= ipAt + 20) {
          const words = r.int(11)
          out = Buffer.concat([out.subarray(0, ipAt + 20), r.bytes(words * 4), out.subarray(ipAt + 20)])
          out[ipAt] = 0x40 | ((5 + words) & 15)
        }
        break
      case 4: // a VLAN tag in front of the ethertype
        out = Buffer.concat([out.subarray(0, 12), Buffer.from([0x81, 0x00, 0, r.int(256)]), out.subarray(12)])
        break
      case 5: // a fragment: MF and/or an offset
        if (out.length >= ipAt + 8)
          out.writeUInt16BE(r.pick([0x2000, 0x2000 | r.int(8192), r.int(8192), 0x4000 | 0x2000]), ipAt + 6)
        break
      case 6: // random tail
        out = Buffer.concat([out, r.bytes(r.int(64))])
        break
      default: // the version nibble
        if (out.length > ipAt) out[ipAt] = (r.int(16) << 4) | (out[ipAt]! & 15)
    }
  }
  return out.length >= 14 ? out : Buffer.concat([out, Buffer.alloc(14 - out.length)])
}
