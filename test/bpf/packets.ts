// A small packet builder for the BPF tests and the bench: each function
// returns the bytes of one header (plus what follows it), in network byte
// order, written out field by field so a reader can check them against the RFCs.

export const ETH_P_IP = 0x0800
export const ETH_P_ARP = 0x0806
export const ETH_P_IPV6 = 0x86dd

export const IPPROTO_ICMP = 1
export const IPPROTO_TCP = 6
export const IPPROTO_UDP = 17

export const ETH_HLEN = 14
export const IPV4_HLEN = 20
export const UDP_HLEN = 8
export const VXLAN_HLEN = 8
/** Outer IPv4 + UDP + VXLAN + inner Ethernet header. */
export const VXLAN_OVERHEAD = IPV4_HLEN + UDP_HLEN + VXLAN_HLEN + ETH_HLEN

export function mac(s: string): Buffer {
  const parts = s.split(':')
  if (parts.length !== 6) throw new Error(`bad MAC ${s}`)
  return Buffer.from(parts.map((p) => parseInt(p, 16)))
}

export function ipv4(s: string): Buffer {
  const parts = s.split('.').map(Number)
  if (parts.length !== 4 || parts.some((p) => !(p >= 0 && p <= 255))) throw new Error(`bad IPv4 ${s}`)
  return Buffer.from(parts)
}

/** The Internet checksum (RFC 1071) of a buffer. */
export function inetChecksum(buf: Buffer): number {
  let sum = 0
  for (let i = 0; i < buf.length; i += 2) {
    const hi = buf[i] ?? 0
    const lo = i + 1 < buf.length ? (buf[i + 1] ?? 0) : 0
    sum += (hi << 8) | lo
  }
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16)
  return ~sum & 0xffff
}

/** The TCP/UDP checksum of `l4` (its checksum field zero, or its own value to verify: 0 then) with the IPv4 pseudo-header. */
export function l4Checksum(src: string, dst: string, proto: number, l4: Buffer): number {
  const pseudo = Buffer.alloc(12)
  ipv4(src).copy(pseudo, 0)
  ipv4(dst).copy(pseudo, 4)
  pseudo.writeUInt8(proto, 9)
  pseudo.writeUInt16BE(l4.length, 10)
  return inetChecksum(Buffer.concat([pseudo, l4]))
}

export interface EthernetOpts {
  dst: string
  src: string
  type: number
}

export function ethernet(o: EthernetOpts, payload: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(ETH_HLEN)
  mac(o.dst).copy(h, 0)
  mac(o.src).copy(h, 6)
  h.writeUInt16BE(o.type, 12)
  return Buffer.concat([h, payload])
}

export interface Ipv4Opts {
  src: string
  dst: string
  protocol: number
  ttl?: number
  tos?: number
  id?: number
  /** The 16-bit flags + fragment offset field as it sits in the header (e.g. 0x2000 = MF). */
  fragOff?: number
  /** Option bytes (a multiple of 4); ihl grows by their length / 4. */
  options?: Buffer
  /** Override the computed total length (e.g. for a header that lies). */
  totalLength?: number
  /** Override the version nibble (default 4). */
  version?: number
}

/** An IPv4 header with a correct header checksum, followed by the payload. */
export function ipv4Packet(o: Ipv4Opts, payload: Buffer = Buffer.alloc(0)): Buffer {
  const options = o.options ?? Buffer.alloc(0)
  if (options.length % 4 !== 0) throw new Error('IPv4 options must be a multiple of 4 bytes')
  const hlen = IPV4_HLEN + options.length
  const h = Buffer.alloc(hlen)
  h.writeUInt8(((o.version ?? 4) << 4) | (hlen / 4), 0)
  h.writeUInt8(o.tos ?? 0, 1)
  h.writeUInt16BE(o.totalLength ?? hlen + payload.length, 2)
  h.writeUInt16BE(o.id ?? 0, 4)
  h.writeUInt16BE(o.fragOff ?? 0, 6)
  h.writeUInt8(o.ttl ?? 64, 8)
  h.writeUInt8(o.protocol, 9)
  // checksum (offset 10) is zero while summing
  ipv4(o.src).copy(h, 12)
  ipv4(o.dst).copy(h, 16)
  options.copy(h, IPV4_HLEN)
  h.writeUInt16BE(inetChecksum(h), 10)
  return Buffer.concat([h, payload])
}

export interface UdpOpts {
  srcPort: number
  dstPort: number
  /** Written as given; 0 means "no checksum" (allowed for IPv4). Default 0. */
  checksum?: number
}

export function udp(o: UdpOpts, payload: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(UDP_HLEN)
  h.writeUInt16BE(o.srcPort, 0)
  h.writeUInt16BE(o.dstPort, 2)
  h.writeUInt16BE(UDP_HLEN + payload.length, 4)
  h.writeUInt16BE(o.checksum ?? 0, 6)
  return Buffer.concat([h, payload])
}

export interface TcpOpts {
  srcPort: number
  dstPort: number
  seq?: number
  ack?: number
  /** Flag bits: FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10. Default SYN. */
  flags?: number
  window?: number
}

/** A 20-byte TCP header without options; checksum left 0 (the programs do not check it). */
export function tcp(o: TcpOpts, payload: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(20)
  h.writeUInt16BE(o.srcPort, 0)
  h.writeUInt16BE(o.dstPort, 2)
  h.writeUInt32BE(o.seq ?? 1, 4)
  h.writeUInt32BE(o.ack ?? 0, 8)
  h.writeUInt8(5 << 4, 12) // data offset: 5 words
  h.writeUInt8(o.flags ?? 0x02, 13)
  h.writeUInt16BE(o.window ?? 65535, 14)
  return Buffer.concat([h, payload])
}

export interface IcmpEchoOpts {
  /** 8 = echo request, 0 = echo reply. Default 8. */
  type?: number
  id?: number
  seq?: number
}

/** An ICMP echo with a correct checksum over header and data. */
export function icmpEcho(o: IcmpEchoOpts = {}, data: Buffer = Buffer.alloc(0)): Buffer {
  const m = Buffer.alloc(8 + data.length)
  m.writeUInt8(o.type ?? 8, 0)
  m.writeUInt8(0, 1)
  m.writeUInt16BE(o.id ?? 1, 4)
  m.writeUInt16BE(o.seq ?? 1, 6)
  data.copy(m, 8)
  m.writeUInt16BE(inetChecksum(m), 2)
  return m
}

export interface ArpOpts {
  /** 1 = request, 2 = reply. */
  op: number
  sha: string
  spa: string
  tha: string
  tpa: string
}

/** Ethernet/IPv4 ARP (28 bytes). */
export function arp(o: ArpOpts): Buffer {
  const a = Buffer.alloc(28)
  a.writeUInt16BE(1, 0) // htype: Ethernet
  a.writeUInt16BE(ETH_P_IP, 2) // ptype
  a.writeUInt8(6, 4) // hlen
  a.writeUInt8(4, 5) // plen
  a.writeUInt16BE(o.op, 6)
  mac(o.sha).copy(a, 8)
  ipv4(o.spa).copy(a, 14)
  mac(o.tha).copy(a, 18)
  ipv4(o.tpa).copy(a, 24)
  return a
}

export interface VxlanOpts {
  vni: number
  /** The flags byte; 0x08 (I: VNI valid) by default. */
  flags?: number
}

/** The 8-byte VXLAN header (RFC 7348) followed by the inner frame. */
export function vxlan(o: VxlanOpts, inner: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(VXLAN_HLEN)
  h.writeUInt8(o.flags ?? 0x08, 0)
  h.writeUIntBE(o.vni, 4, 3)
  return Buffer.concat([h, inner])
}

export interface VxlanFrameOpts {
  outerSrcMac: string
  outerDstMac: string
  outerSrc: string
  outerDst: string
  srcPort?: number
  dstPort?: number
  vni: number
  vxlanFlags?: number
  ttl?: number
}

/** A whole VXLAN packet on the underlay: Ethernet / IPv4 / UDP / VXLAN / inner frame. */
export function vxlanFrame(o: VxlanFrameOpts, inner: Buffer): Buffer {
  return ethernet(
    {dst: o.outerDstMac, src: o.outerSrcMac, type: ETH_P_IP},
    ipv4Packet(
      {src: o.outerSrc, dst: o.outerDst, protocol: IPPROTO_UDP, ttl: o.ttl ?? 64},
      udp({srcPort: o.srcPort ?? 50000, dstPort: o.dstPort ?? 4789}, vxlan({vni: o.vni, flags: o.vxlanFlags}, inner)),
    ),
  )
}

/** Pad (with zeros at the end) or check a frame to exactly `len` bytes; fixes up nothing else. */
export function padTo(frame: Buffer, len: number): Buffer {
  if (frame.length > len) throw new Error(`frame is ${frame.length} bytes, more than ${len}`)
  return Buffer.concat([frame, Buffer.alloc(len - frame.length)])
}

/**
 * An Ethernet + IPv4 + UDP frame of exactly `len` bytes (the UDP payload
 * fills the rest), with consistent length fields and header checksum.
 */
export function udpFrame(
  o: {srcMac: string; dstMac: string; src: string; dst: string; srcPort?: number; dstPort?: number},
  len: number,
): Buffer {
  const payloadLen = len - ETH_HLEN - IPV4_HLEN - UDP_HLEN
  if (payloadLen < 0) throw new Error(`a UDP frame needs at least ${len - payloadLen} bytes`)
  const payload = Buffer.alloc(payloadLen)
  for (let i = 0; i < payloadLen; i++) payload[i] = i & 0xff
  return ethernet(
    {dst: o.dstMac, src: o.srcMac, type: ETH_P_IP},
    ipv4Packet(
      {src: o.src, dst: o.dst, protocol: IPPROTO_UDP},
      udp({srcPort: o.srcPort ?? 40000, dstPort: o.dstPort ?? 8080}, payload),
    ),
  )
}
