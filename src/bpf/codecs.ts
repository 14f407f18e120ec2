// Typed encoders/decoders for the keys and values of every swarmnet map,
// mirroring bpf/include/layout.h. Each struct is declared once (C name, size,
// and every field's offset and size); encode, decode and the BTF layout test
// (test/unit/bpf-codecs.test.ts) all read that one declaration.
//
// Pure code: no libbpf, usable and testable anywhere.

import os from 'node:os'
import {BpfError} from './errors.js'

/**
 * How a field's bytes are read. `be*`/`ipv4` are network byte order (as the
 * C side keeps them, `__be16`/`__be32`); the plain integers are host order.
 */
export type FieldKind = 'u8' | 'u16' | 'u32' | 'u64' | 'be16' | 'be32' | 'ipv4' | 'mac' | 'bytes' | 'pad'

export interface FieldSpec {
  readonly name: string
  readonly offset: number
  readonly size: number
  readonly kind: FieldKind
  /** Named bits of a flags field (the C #defines). */
  readonly flags?: Readonly<Record<string, number>>
}

/** bytes: a byte array of the field's size, as hex. */
type KindValue<K extends FieldKind> = K extends 'u64' ? bigint : K extends 'ipv4' | 'mac' | 'bytes' ? string : number

/** The JS object a field list decodes to; padding fields are not in it. */
export type Shape<F extends readonly FieldSpec[]> = {
  -readonly [P in F[number] as P['kind'] extends 'pad' ? never : P['name']]: KindValue<P['kind']>
}

export interface Codec<T> {
  /** The C type: 'struct sn_config', '__u32', ... */
  readonly cType: string
  readonly size: number
  /** Empty for scalar codecs. */
  readonly fields: readonly FieldSpec[]
  encode(value: T): Buffer
  decode(buf: Buffer): T
  /** Human-oriented rendering (flags with their names), for inspect output. */
  display(value: T): Record<string, string | number> | string | number
}

const KIND_SIZE: Record<Exclude<FieldKind, 'pad' | 'bytes'>, number> = {
  u8: 1,
  u16: 2,
  u32: 4,
  u64: 8,
  be16: 2,
  be32: 4,
  ipv4: 4,
  mac: 6,
}

const LE = os.endianness() === 'LE'

function bad(message: string): BpfError {
  return new BpfError('BAD_ARGUMENT', message)
}

export function parseIpv4(s: string): Buffer {
  const out = Buffer.alloc(4)
  // By hand (each part 1-3 digits, 0..255): this runs for every address of every entry a sync encodes.
  let part = 0
  let digits = 0
  let value = 0
  for (let i = 0; i <= s.length; i++) {
    const c = i < s.length ? s.charCodeAt(i) : 46
    if (c === 46) {
      if (digits === 0 || value > 255 || part > 3) throw bad(`not an IPv4 address: ${JSON.stringify(s)}`)
      out[part++] = value
      digits = 0
      value = 0
    } else if (c >= 48 && c <= 57 && digits < 3) {
      value = value * 10 + (c - 48)
      digits++
    } else {
      throw bad(`not an IPv4 address: ${JSON.stringify(s)}`)
    }
  }
  if (part !== 4) throw bad(`not an IPv4 address: ${JSON.stringify(s)}`)
  return out
}

export function formatIpv4(b: Buffer): string {
  return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`
}

export function parseMac(s: string): Buffer {
  const parts = s.split(':')
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p))) throw bad(`not a MAC address: ${JSON.stringify(s)}`)
  return Buffer.from(parts.map((p) => parseInt(p, 16)))
}

export function formatMac(b: Buffer): string {
  return [...b.subarray(0, 6)].map((x) => x.toString(16).padStart(2, '0')).join(':')
}

// Plain functions, not closures made per call: the sync encodes every entry of every map (100,000s).
function fieldInt(f: FieldSpec, v: unknown, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max)
    throw bad(`field ${f.name}: expected an integer 0..${max}, got ${String(v)}`)
  return v
}

function writeField(buf: Buffer, f: FieldSpec, v: unknown): void {
  switch (f.kind) {
    case 'pad':
      return // already zero
    case 'u8':
      buf.writeUInt8(fieldInt(f, v, 0xff), f.offset)
      return
    case 'u16':
      if (LE) buf.writeUInt16LE(fieldInt(f, v, 0xffff), f.offset)
      else buf.writeUInt16BE(fieldInt(f, v, 0xffff), f.offset)
      return
    case 'u32':
      if (LE) buf.writeUInt32LE(fieldInt(f, v, 0xffffffff), f.offset)
      else buf.writeUInt32BE(fieldInt(f, v, 0xffffffff), f.offset)
      return
    case 'be16':
      buf.writeUInt16BE(fieldInt(f, v, 0xffff), f.offset)
      return
    case 'be32':
      buf.writeUInt32BE(fieldInt(f, v, 0xffffffff), f.offset)
      return
    case 'u64': {
      const big = typeof v === 'number' && Number.isSafeInteger(v) ? BigInt(v) : v
      if (typeof big !== 'bigint' || big < 0n || big > 0xffffffffffffffffn)
        throw bad(`field ${f.name}: expected a u64, got ${String(v)}`)
      if (LE) buf.writeBigUInt64LE(big, f.offset)
      else buf.writeBigUInt64BE(big, f.offset)
      return
    }
    case 'ipv4':
      if (typeof v !== 'string') throw bad(`field ${f.name}: expected an IPv4 address string`)
      parseIpv4(v).copy(buf, f.offset)
      return
    case 'mac':
      if (typeof v !== 'string') throw bad(`field ${f.name}: expected a MAC address string`)
      parseMac(v).copy(buf, f.offset)
      return
    case 'bytes': {
      if (typeof v !== 'string' || !/^([0-9a-f]{2})*$/i.test(v) || v.length / 2 > f.size)
        throw bad(`field ${f.name}: expected at most ${f.size} bytes as hex`)
      Buffer.from(v, 'hex').copy(buf, f.offset)
      return
    }
  }
}

function readField(buf: Buffer, f: FieldSpec): number | bigint | string {
  switch (f.kind) {
    case 'u8':
      return buf.readUInt8(f.offset)
    case 'u16':
      return LE ? buf.readUInt16LE(f.offset) : buf.readUInt16BE(f.offset)
    case 'u32':
      return LE ? buf.readUInt32LE(f.offset) : buf.readUInt32BE(f.offset)
    case 'be16':
      return buf.readUInt16BE(f.offset)
    case 'be32':
      return buf.readUInt32BE(f.offset)
    case 'u64':
      return LE ? buf.readBigUInt64LE(f.offset) : buf.readBigUInt64BE(f.offset)
    case 'ipv4':
      return formatIpv4(buf.subarray(f.offset, f.offset + 4))
    case 'mac':
      return formatMac(buf.subarray(f.offset, f.offset + 6))
    case 'bytes':
      return buf.subarray(f.offset, f.offset + f.size).toString('hex')
    case 'pad':
      return 0
  }
}

/** Names of the set bits of a flags value; unknown bits as hex. */
export function flagNames(flags: Readonly<Record<string, number>>, value: number): string[] {
  const names: string[] = []
  let rest = value
  for (const [name, bit] of Object.entries(flags)) {
    if ((value & bit) === bit && bit !== 0) {
      names.push(name)
      rest &= ~bit
    }
  }
  if (rest) names.push(`0x${rest.toString(16)}`)
  return names
}

export interface StructCodec<T> extends Codec<T> {
  /** The C struct name, without `struct `. */
  readonly structName: string
  /** A named flags field's set bits. */
  flagNames(field: string, value: number): string[]
  display(value: T): Record<string, string | number>
}

/**
 * Declare a struct codec. The declaration is validated here (sizes match
 * kinds, fields inside the struct and not overlapping), so a typo fails at
 * import time rather than corrupting a map.
 */
export function defineStruct<const F extends readonly FieldSpec[]>(
  structName: string,
  size: number,
  fields: F,
): StructCodec<Shape<F>> {
  let end = 0
  const sorted = [...fields].sort((a, b) => a.offset - b.offset)
  for (const f of sorted) {
    if (f.kind !== 'pad' && f.kind !== 'bytes' && KIND_SIZE[f.kind] !== f.size) {
      throw new Error(`codec ${structName}.${f.name}: kind ${f.kind} is ${KIND_SIZE[f.kind]} bytes, declared ${f.size}`)
    }
    if (f.offset < end) throw new Error(`codec ${structName}.${f.name}: overlaps the previous field`)
    end = f.offset + f.size
  }
  if (end > size) throw new Error(`codec ${structName}: fields end at ${end}, past size ${size}`)

  type T = Shape<F>
  return {
    cType: `struct ${structName}`,
    structName,
    size,
    fields,
    encode(value: T): Buffer {
      // From Node's shared pool, zeroed: one ArrayBuffer per small entry would make a 100,000-entry sync mostly GC.
      const buf = Buffer.allocUnsafe(size).fill(0)
      const rec = value as Record<string, unknown>
      for (const f of fields) {
        if (f.kind === 'pad') continue
        if (!(f.name in rec)) throw bad(`${structName}: missing field ${f.name}`)
        writeField(buf, f, rec[f.name])
      }
      return buf
    },
    decode(buf: Buffer): T {
      if (buf.length < size) throw bad(`${structName}: ${buf.length} bytes, expected ${size}`)
      const out: Record<string, unknown> = {}
      for (const f of fields) if (f.kind !== 'pad') out[f.name] = readField(buf, f)
      // The object was built from exactly the non-pad fields of F.
      return out as T
    },
    display(value: T): Record<string, string | number> {
      const rec = value as Record<string, unknown>
      const out: Record<string, string | number> = {}
      for (const f of fields) {
        if (f.kind === 'pad') continue
        // A u64 flags word (set atomically by the programs) holds its bits in the low 32.
        const v = f.flags && typeof rec[f.name] === 'bigint' ? Number(rec[f.name]) : rec[f.name]
        if (f.flags && typeof v === 'number') {
          const names = flagNames(f.flags, v)
          out[f.name] = names.length ? `0x${v.toString(16)} (${names.join('|')})` : `0x${v.toString(16)}`
        } else {
          out[f.name] = typeof v === 'bigint' ? v.toString() : (v as string | number)
        }
      }
      return out
    },
    flagNames(field: string, value: number): string[] {
      const f = fields.find((x) => x.name === field)
      if (!f?.flags) throw bad(`${structName}.${field} is not a flags field`)
      return flagNames(f.flags, value)
    },
  }
}

function scalar<K extends 'u32' | 'u64'>(cType: string, kind: K): Codec<KindValue<K>> {
  const f: FieldSpec = {name: '', offset: 0, size: KIND_SIZE[kind], kind}
  return {
    cType,
    size: f.size,
    fields: [],
    encode(value: KindValue<K>): Buffer {
      const buf = Buffer.alloc(f.size)
      writeField(buf, {...f, name: cType}, value)
      return buf
    },
    decode(buf: Buffer): KindValue<K> {
      if (buf.length < f.size) throw bad(`${cType}: ${buf.length} bytes, expected ${f.size}`)
      // readField returns the JS type that KindValue<K> names for this kind.
      return readField(buf, f) as KindValue<K>
    },
    display(value: KindValue<K>): string | number {
      return typeof value === 'bigint' ? value.toString() : value
    },
  }
}

export const u32 = scalar('__u32', 'u32')
export const u64 = scalar('__u64', 'u64')

/* ---- bpf/include/layout.h ---- */

export const SN_CONFIG_FLAGS = {READY: 0x1} as const
export const SN_NET_FLAGS = {INGRESS: 0x1} as const
export const SN_EP_FLAGS = {LOCAL: 0x1, VIP: 0x2, BACKEND: 0x4} as const
export const SN_DEV_FLAGS = {BACKEND: 0x1} as const

export const snConfig = defineStruct('sn_config', 20, [
  {name: 'node_ip', offset: 0, size: 4, kind: 'ipv4'},
  {name: 'vxlan_port', offset: 4, size: 2, kind: 'be16'},
  {name: 'flags', offset: 6, size: 2, kind: 'u16', flags: SN_CONFIG_FLAGS},
  {name: 'underlay_ifindex', offset: 8, size: 4, kind: 'u32'},
  {name: 'ct_udp_idle', offset: 12, size: 4, kind: 'u32'},
  {name: 'mesh_udp_idle', offset: 16, size: 4, kind: 'u32'},
])

export const snNetwork = defineStruct('sn_network', 8, [
  {name: 'subnet', offset: 0, size: 4, kind: 'ipv4'},
  {name: 'prefix_len', offset: 4, size: 1, kind: 'u8'},
  {name: 'flags', offset: 5, size: 1, kind: 'u8', flags: SN_NET_FLAGS},
  {name: 'mtu', offset: 6, size: 2, kind: 'u16'},
])

export const snEndpointKey = defineStruct('sn_endpoint_key', 8, [
  {name: 'vni', offset: 0, size: 4, kind: 'u32'},
  {name: 'ip', offset: 4, size: 4, kind: 'ipv4'},
])

export const snEndpoint = defineStruct('sn_endpoint', 16, [
  {name: 'node_ip', offset: 0, size: 4, kind: 'ipv4'},
  {name: 'ifindex', offset: 4, size: 4, kind: 'u32'},
  {name: 'mac', offset: 8, size: 6, kind: 'mac'},
  {name: 'flags', offset: 14, size: 2, kind: 'u16', flags: SN_EP_FLAGS},
])

export const snDevice = defineStruct('sn_device', 12, [
  {name: 'vni', offset: 0, size: 4, kind: 'u32'},
  {name: 'ip', offset: 4, size: 4, kind: 'ipv4'},
  {name: 'flags', offset: 8, size: 4, kind: 'u32', flags: SN_DEV_FLAGS},
])

/* ---- bpf/include/lb.h ---- */

export const SN_CT_DIR = {FORWARD: 0, REPLY: 1} as const
export const SN_CT_FLAGS = {SEEN_FIN: 0x1, FIN_CLIENT: 0x2, FIN_BACKEND: 0x4, HAIRPIN: 0x8} as const
/** Slots of one sn_maglev value. */
export const SN_MAGLEV_CHUNK = 256

export const snServiceKey = defineStruct('sn_service_key', 8, [
  {name: 'vni', offset: 0, size: 4, kind: 'u32'},
  {name: 'vip', offset: 4, size: 4, kind: 'ipv4'},
])

export const snService = defineStruct('sn_service', 12, [
  {name: 'table', offset: 0, size: 4, kind: 'u32'},
  {name: 'size', offset: 4, size: 4, kind: 'u32'},
  {name: 'count', offset: 8, size: 2, kind: 'u16'},
  {name: 'flags', offset: 10, size: 2, kind: 'u16'},
])

export const snMaglevKey = defineStruct('sn_maglev_key', 8, [
  {name: 'table', offset: 0, size: 4, kind: 'u32'},
  {name: 'chunk', offset: 4, size: 4, kind: 'u32'},
])

/** The layout of struct sn_maglev_chunk for the BTF check; values go through snMaglevChunk. */
export const snMaglevChunkLayout = defineStruct('sn_maglev_chunk', SN_MAGLEV_CHUNK * 4, [
  {name: 'backend', offset: 0, size: SN_MAGLEV_CHUNK * 4, kind: 'pad'},
])

/**
 * One chunk of a Maglev table: the backends' addresses, slot by slot. A
 * table's last chunk is padded with 0.0.0.0 (slots past its size are never read).
 */
export const snMaglevChunk: Codec<string[]> = {
  cType: 'struct sn_maglev_chunk',
  size: SN_MAGLEV_CHUNK * 4,
  fields: snMaglevChunkLayout.fields,
  encode(value: string[]): Buffer {
    if (value.length > SN_MAGLEV_CHUNK) throw bad(`sn_maglev_chunk: ${value.length} slots, at most ${SN_MAGLEV_CHUNK}`)
    const buf = Buffer.alloc(SN_MAGLEV_CHUNK * 4)
    value.forEach((ip, i) => parseIpv4(ip).copy(buf, i * 4))
    return buf
  },
  decode(buf: Buffer): string[] {
    if (buf.length < SN_MAGLEV_CHUNK * 4) throw bad(`sn_maglev_chunk: ${buf.length} bytes, expected ${SN_MAGLEV_CHUNK * 4}`)
    const out: string[] = []
    for (let i = 0; i < SN_MAGLEV_CHUNK; i++) out.push(formatIpv4(buf.subarray(i * 4, i * 4 + 4)))
    return out
  },
  /** Summarised: how many slots each backend holds. */
  display(value: string[]): string {
    const n = new Map<string, number>()
    for (const ip of value) if (ip !== '0.0.0.0') n.set(ip, (n.get(ip) ?? 0) + 1)
    return [...n].map(([ip, c]) => `${ip} x${c}`).join(', ')
  },
}

export const snBackendKey = defineStruct('sn_backend_key', 12, [
  {name: 'vni', offset: 0, size: 4, kind: 'u32'},
  {name: 'vip', offset: 4, size: 4, kind: 'ipv4'},
  {name: 'ip', offset: 8, size: 4, kind: 'ipv4'},
])

export const snBackend = defineStruct('sn_backend', 8, [
  {name: 'node_ip', offset: 0, size: 4, kind: 'ipv4'},
  {name: 'flags', offset: 4, size: 4, kind: 'u32'},
])

export const snCtKey = defineStruct('sn_ct_key', 20, [
  {name: 'vni', offset: 0, size: 4, kind: 'u32'},
  {name: 'src', offset: 4, size: 4, kind: 'ipv4'},
  {name: 'dst', offset: 8, size: 4, kind: 'ipv4'},
  {name: 'sport', offset: 12, size: 2, kind: 'be16'},
  {name: 'dport', offset: 14, size: 2, kind: 'be16'},
  {name: 'proto', offset: 16, size: 1, kind: 'u8'},
  {name: 'dir', offset: 17, size: 1, kind: 'u8'},
  {name: 'pad', offset: 18, size: 2, kind: 'pad'},
])

export const snCt = defineStruct('sn_ct', 32, [
  {name: 'addr', offset: 0, size: 4, kind: 'ipv4'},
  {name: 'table', offset: 4, size: 4, kind: 'u32'},
  {name: 'flags', offset: 8, size: 4, kind: 'u32', flags: SN_CT_FLAGS},
  {name: 'seen', offset: 12, size: 4, kind: 'u32'},
  // struct bpf_timer: the kernel's, never read or written from user space (it reads back as zeros).
  {name: 'close', offset: 16, size: 16, kind: 'pad'},
])

export const SN_MESH_MODE = {INGRESS: 1, HOST: 2} as const

/** bpf/include/mesh.h: the routing mesh's maps. */
export const snMeshPortKey = defineStruct('sn_mesh_port_key', 4, [
  {name: 'port', offset: 0, size: 2, kind: 'be16'},
  {name: 'proto', offset: 2, size: 1, kind: 'u8'},
  {name: 'pad', offset: 3, size: 1, kind: 'pad'},
])

export const snMeshPort = defineStruct('sn_mesh_port', 24, [
  {name: 'vni', offset: 0, size: 4, kind: 'u32'},
  {name: 'addr', offset: 4, size: 4, kind: 'ipv4'},
  {name: 'target', offset: 8, size: 2, kind: 'be16'},
  {name: 'mode', offset: 10, size: 1, kind: 'u8'},
  {name: 'flags', offset: 11, size: 1, kind: 'u8'},
  {name: 'ifindex', offset: 12, size: 4, kind: 'u32'},
  {name: 'mac', offset: 16, size: 6, kind: 'mac'},
  {name: 'pad', offset: 22, size: 2, kind: 'pad'},
])

export const snMeshStats = defineStruct('sn_mesh_stats', 24, [
  {name: 'packets', offset: 0, size: 8, kind: 'u64'},
  {name: 'bytes', offset: 8, size: 8, kind: 'u64'},
  {name: 'new_flows', offset: 16, size: 8, kind: 'u64'},
])

export const snMeshCtKey = defineStruct('sn_mesh_ct_key', 16, [
  {name: 'src', offset: 0, size: 4, kind: 'ipv4'},
  {name: 'dst', offset: 4, size: 4, kind: 'ipv4'},
  {name: 'sport', offset: 8, size: 2, kind: 'be16'},
  {name: 'dport', offset: 10, size: 2, kind: 'be16'},
  {name: 'proto', offset: 12, size: 1, kind: 'u8'},
  {name: 'dir', offset: 13, size: 1, kind: 'u8'},
  {name: 'pad', offset: 14, size: 2, kind: 'pad'},
])

/** Flags of a mesh reply entry (bpf/include/mesh.h). */
export const SN_MESH_CT_FLAGS = {FIN_CLIENT: 0x1, FIN_BACKEND: 0x2, CLOSING: 0x4} as const

export const snMeshCt = defineStruct('sn_mesh_ct', 48, [
  {name: 'addr', offset: 0, size: 4, kind: 'ipv4'},
  {name: 'node', offset: 4, size: 4, kind: 'ipv4'},
  {name: 'port', offset: 8, size: 2, kind: 'be16'},
  {name: 'pad', offset: 10, size: 2, kind: 'pad'},
  {name: 'vni', offset: 12, size: 4, kind: 'u32'},
  {name: 'table', offset: 16, size: 4, kind: 'u32'},
  {name: 'seen', offset: 20, size: 4, kind: 'u32'},
  {name: 'flags', offset: 24, size: 8, kind: 'u64', flags: SN_MESH_CT_FLAGS},
  {name: 'peer_mac', offset: 32, size: 6, kind: 'mac'},
  {name: 'own_mac', offset: 38, size: 6, kind: 'mac'},
  {name: 'pad2', offset: 44, size: 4, kind: 'pad'},
])

export const snMeshNode = defineStruct('sn_mesh_node', 4, [
  {name: 'gossip_port', offset: 0, size: 2, kind: 'be16'},
  {name: 'flags', offset: 2, size: 2, kind: 'u16'},
])

/** A task's gateway-bridge veth: the addresses it may send from (bpf/include/mesh.h). */
export const snGateway = defineStruct('sn_gateway', 8, [
  {name: 'gw_ip', offset: 0, size: 4, kind: 'ipv4'},
  {name: 'ingress_ip', offset: 4, size: 4, kind: 'ipv4'},
])

export const snMeshConfig = defineStruct('sn_mesh_config', 8, [
  {name: 'ingress_vni', offset: 0, size: 4, kind: 'u32'},
  {name: 'flags', offset: 4, size: 4, kind: 'u32'},
])

/* ---- bpf/include/probe.h ---- */

export const SN_PROBE_KEY_FLAGS = {SET: 0x1} as const

/** A slot of sn_probe_keys (by cluster key id): the data-path probe's SipHash key. */
export const snProbeKey = defineStruct('sn_probe_key', 24, [
  {name: 'key', offset: 0, size: 16, kind: 'bytes'},
  {name: 'flags', offset: 16, size: 4, kind: 'u32', flags: SN_PROBE_KEY_FLAGS},
  {name: 'pad', offset: 20, size: 4, kind: 'pad'},
])

/** A node's underlay address as the key of sn_mesh_nodes, a local address as sn_mesh_addrs' (__be32). */
export const ipv4Key: Codec<string> = {
  cType: '__be32',
  size: 4,
  fields: [],
  encode: (v: string) => parseIpv4(v),
  decode: (b: Buffer) => formatIpv4(b),
  display: (v: string) => v,
}

export type SnConfig = ReturnType<typeof snConfig.decode>
export type SnNetwork = ReturnType<typeof snNetwork.decode>
export type SnEndpointKey = ReturnType<typeof snEndpointKey.decode>
export type SnEndpoint = ReturnType<typeof snEndpoint.decode>
export type SnDevice = ReturnType<typeof snDevice.decode>
export type SnServiceKey = ReturnType<typeof snServiceKey.decode>
export type SnService = ReturnType<typeof snService.decode>
export type SnBackendKey = ReturnType<typeof snBackendKey.decode>
export type SnBackend = ReturnType<typeof snBackend.decode>
export type SnCtKey = ReturnType<typeof snCtKey.decode>
export type SnCt = ReturnType<typeof snCt.decode>

/* ---- bpf/include/layout_dns.h, the maps in dns.h ---- */

export const SN_DNS_NAME_MAX = 64
export const SN_DNS_MAX_IPS = 8
export const SN_DNS_MAX_NETS = 8
export const SN_DNS_PTR_MAX = 128
export const SN_DNS_FLAGS = {PASS: 0x1, ROTATE: 0x2, KNOWN: 0x4} as const
/** The key vni of a name some network of the cluster has (KNOWN): no VNI is, they are 24 bits. */
export const SN_DNS_VNI_KNOWN = 0xffffffff

/** name: the wire-format name (lower case, root label included), zero-padded, as hex. */
export const snDnsKey = defineStruct('sn_dns_key', 68, [
  {name: 'vni', offset: 0, size: 4, kind: 'u32'},
  {name: 'name', offset: 4, size: SN_DNS_NAME_MAX, kind: 'bytes'},
])

/** ips: SN_DNS_MAX_IPS addresses in network order, as hex (src/dns/fastpath.ts reads and writes them). */
export const snDnsName = defineStruct('sn_dns_name', 40, [
  {name: 'ips', offset: 0, size: 4 * SN_DNS_MAX_IPS, kind: 'bytes'},
  {name: 'count', offset: 32, size: 4, kind: 'u32'},
  {name: 'flags', offset: 36, size: 4, kind: 'u32', flags: SN_DNS_FLAGS},
])

/** A reverse question's address on one network (sn_dns_ptrs). */
export const snDnsPtrKey = defineStruct('sn_dns_ptr_key', 8, [
  {name: 'vni', offset: 0, size: 4, kind: 'u32'},
  {name: 'ip', offset: 4, size: 4, kind: 'ipv4'},
])

/** name: the answer's wire-format name (lower case, root label included), zero-padded, as hex; len its bytes. */
export const snDnsPtr = defineStruct('sn_dns_ptr', 8 + SN_DNS_PTR_MAX, [
  {name: 'len', offset: 0, size: 4, kind: 'u32'},
  {name: 'flags', offset: 4, size: 4, kind: 'u32', flags: SN_DNS_FLAGS},
  {name: 'name', offset: 8, size: SN_DNS_PTR_MAX, kind: 'bytes'},
])

/** vnis: SN_DNS_MAX_NETS host-order u32s, as hex (src/dns/fastpath.ts). */
export const snDnsScope = defineStruct('sn_dns_scope', 44, [
  {name: 'resolver', offset: 0, size: 4, kind: 'ipv4'},
  {name: 'ttl', offset: 4, size: 4, kind: 'u32'},
  {name: 'count', offset: 8, size: 4, kind: 'u32'},
  {name: 'vnis', offset: 12, size: 4 * SN_DNS_MAX_NETS, kind: 'bytes'},
])

/** The routing mesh from the node itself (bpf/include/sock_mesh.h). */
export const snSockConfig = defineStruct('sn_sock_config', 16, [
  {name: 'netns_cookie', offset: 0, size: 8, kind: 'u64'},
  {name: 'node_ip', offset: 8, size: 4, kind: 'ipv4'},
  {name: 'flags', offset: 12, size: 4, kind: 'u32'},
])

export const SN_SOCK_MAX_TARGETS = 8

/** A published port as sn_sock_targets' key: the same bytes as sn_mesh_port_key. */
export const snSockKey = defineStruct('sn_sock_key', 4, [
  {name: 'port', offset: 0, size: 2, kind: 'be16'},
  {name: 'proto', offset: 2, size: 1, kind: 'u8'},
  {name: 'pad', offset: 3, size: 1, kind: 'pad'},
])

export const snSockTarget = defineStruct('sn_sock_target', 8, [
  {name: 'addr', offset: 0, size: 4, kind: 'ipv4'},
  {name: 'port', offset: 4, size: 2, kind: 'be16'},
  {name: 'pad', offset: 6, size: 2, kind: 'pad'},
])

/** The layout of struct sn_sock_targets for the BTF check; values go through snSockTargets. */
export const snSockTargetsLayout = defineStruct('sn_sock_targets', 8 + SN_SOCK_MAX_TARGETS * 8, [
  {name: 'count', offset: 0, size: 4, kind: 'u32'},
  {name: 'flags', offset: 4, size: 4, kind: 'u32'},
  {name: 'to', offset: 8, size: SN_SOCK_MAX_TARGETS * 8, kind: 'pad'},
])

export interface SockTarget {
  addr: string
  port: number
}

/** Where a node's own socket to a published port goes: 1 to SN_SOCK_MAX_TARGETS (address, port). */
export const snSockTargets: Codec<SockTarget[]> = {
  cType: 'struct sn_sock_targets',
  size: snSockTargetsLayout.size,
  fields: snSockTargetsLayout.fields,
  encode(value: SockTarget[]): Buffer {
    if (value.length < 1 || value.length > SN_SOCK_MAX_TARGETS) {
      throw bad(`sn_sock_targets: ${value.length} targets, 1 to ${SN_SOCK_MAX_TARGETS}`)
    }
    const buf = Buffer.alloc(snSockTargetsLayout.size)
    buf.writeUInt32LE(value.length, 0)
    value.forEach((t, i) => snSockTarget.encode(t).copy(buf, 8 + i * 8))
    return buf
  },
  decode(buf: Buffer): SockTarget[] {
    if (buf.length < snSockTargetsLayout.size)
      throw bad(`sn_sock_targets: ${buf.length} bytes, expected ${snSockTargetsLayout.size}`)
    const n = Math.min(buf.readUInt32LE(0), SN_SOCK_MAX_TARGETS)
    const out: SockTarget[] = []
    for (let i = 0; i < n; i++) {
      const t = snSockTarget.decode(buf.subarray(8 + i * 8, 16 + i * 8))
      out.push({addr: t.addr, port: t.port})
    }
    return out
  },
  display: (value: SockTarget[]) => value.map((t) => `${t.addr}:${t.port}`).join(', '),
}

export const snSockRevKey = defineStruct('sn_sock_rev_key', 16, [
  {name: 'cookie', offset: 0, size: 8, kind: 'u64'},
  {name: 'addr', offset: 8, size: 4, kind: 'ipv4'},
  {name: 'port', offset: 12, size: 2, kind: 'be16'},
  {name: 'proto', offset: 14, size: 1, kind: 'u8'},
  {name: 'pad', offset: 15, size: 1, kind: 'pad'},
])

export const snSockRev = defineStruct('sn_sock_rev', 8, [
  {name: 'addr', offset: 0, size: 4, kind: 'ipv4'},
  {name: 'port', offset: 4, size: 2, kind: 'be16'},
  {name: 'pad', offset: 6, size: 2, kind: 'pad'},
])

/** Load balancing at connect() (bpf/include/sock_lb.h). */
export const SN_SOCK_LB_NETS = 8

export const snSockLbNet = defineStruct('sn_sock_lb_net', 8, [
  {name: 'vni', offset: 0, size: 4, kind: 'u32'},
  {name: 'ip', offset: 4, size: 4, kind: 'ipv4'},
])

/** The layout of struct sn_sock_lb_task for the BTF check; values go through snSockLbTask. */
export const snSockLbTaskLayout = defineStruct('sn_sock_lb_task', 8 + SN_SOCK_LB_NETS * 8, [
  {name: 'count', offset: 0, size: 4, kind: 'u32'},
  {name: 'flags', offset: 4, size: 4, kind: 'u32'},
  {name: 'net', offset: 8, size: SN_SOCK_LB_NETS * 8, kind: 'pad'},
])

export interface SockLbNet {
  vni: number
  ip: string
}

/** The networks of one task (keyed by its cgroup id): 0 to SN_SOCK_LB_NETS (VNI, the task's address). */
export const snSockLbTask: Codec<SockLbNet[]> = {
  cType: 'struct sn_sock_lb_task',
  size: snSockLbTaskLayout.size,
  fields: snSockLbTaskLayout.fields,
  encode(value: SockLbNet[]): Buffer {
    if (value.length > SN_SOCK_LB_NETS) throw bad(`sn_sock_lb_task: ${value.length} networks, at most ${SN_SOCK_LB_NETS}`)
    const buf = Buffer.alloc(snSockLbTaskLayout.size)
    buf.writeUInt32LE(value.length, 0)
    value.forEach((n, i) => snSockLbNet.encode(n).copy(buf, 8 + i * 8))
    return buf
  },
  decode(buf: Buffer): SockLbNet[] {
    if (buf.length < snSockLbTaskLayout.size)
      throw bad(`sn_sock_lb_task: ${buf.length} bytes, expected ${snSockLbTaskLayout.size}`)
    const n = Math.min(buf.readUInt32LE(0), SN_SOCK_LB_NETS)
    const out: SockLbNet[] = []
    for (let i = 0; i < n; i++) {
      const t = snSockLbNet.decode(buf.subarray(8 + i * 8, 16 + i * 8))
      out.push({vni: t.vni, ip: t.ip})
    }
    return out
  },
  display: (value: SockLbNet[]) => value.map((n) => `${n.vni}/${n.ip}`).join(', '),
}

export const snSockLbRevKey = defineStruct('sn_sock_lb_rev_key', 16, [
  {name: 'cookie', offset: 0, size: 8, kind: 'u64'},
  {name: 'addr', offset: 8, size: 4, kind: 'ipv4'},
  {name: 'port', offset: 12, size: 2, kind: 'be16'},
  {name: 'proto', offset: 14, size: 1, kind: 'u8'},
  {name: 'pad', offset: 15, size: 1, kind: 'pad'},
])

export const snSockLbRev = defineStruct('sn_sock_lb_rev', 12, [
  {name: 'vip', offset: 0, size: 4, kind: 'ipv4'},
  {name: 'port', offset: 4, size: 2, kind: 'be16'},
  {name: 'pad', offset: 6, size: 2, kind: 'pad'},
  {name: 'vni', offset: 8, size: 4, kind: 'u32'},
])

/** Every struct codec, for the layout check. */
export const structCodecs = [
  snConfig,
  snNetwork,
  snEndpointKey,
  snEndpoint,
  snDevice,
  snServiceKey,
  snService,
  snMaglevKey,
  snMaglevChunkLayout,
  snBackendKey,
  snBackend,
  snCtKey,
  snCt,
  snMeshPortKey,
  snMeshPort,
  snMeshStats,
  snMeshCtKey,
  snMeshCt,
  snMeshNode,
  snGateway,
  snMeshConfig,
  snSockConfig,
  snSockKey,
  snSockTarget,
  snSockTargetsLayout,
  snSockRevKey,
  snSockRev,
  snDnsKey,
  snDnsName,
  snDnsPtrKey,
  snDnsPtr,
  snDnsScope,
  snProbeKey,
  snSockLbNet,
  snSockLbTaskLayout,
  snSockLbRevKey,
  snSockLbRev,
] as const

/** Sum per-CPU values of an all-integer struct field by field. */
export function sumPerCpu<T>(codec: Codec<T>, values: readonly T[]): T {
  const zero = codec.decode(Buffer.alloc(codec.size))
  if (typeof zero === 'bigint') {
    // A scalar u64 codec: T is bigint here.
    return values.reduce<bigint>((a, v) => a + (v as bigint), 0n) as T
  }
  if (typeof zero === 'number') return values.reduce<number>((a, v) => a + (v as number), 0) as T
  const out = {...(zero as Record<string, unknown>)}
  for (const v of values) {
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      const cur = out[k]
      if (typeof x === 'bigint' && typeof cur === 'bigint') out[k] = cur + x
      else if (typeof x === 'number' && typeof cur === 'number') out[k] = cur + x
      else throw bad(`${codec.cType}.${k} cannot be summed`)
    }
  }
  // Same keys and value types as the decoded T.
  return out as T
}

export interface MapCodec<K, V> {
  key: Codec<K>
  value: Codec<V>
  /** Values are per-CPU: decode each CPU's slot, sum for display. */
  percpu?: boolean
}

/** What every registry entry has, whatever its key and value types. */
type CodecShape = Pick<Codec<unknown>, 'cType' | 'size' | 'fields'>
export interface MapCodecShape {
  key: CodecShape
  value: CodecShape
  percpu?: boolean
}

/** The maps of bpf/include/maps.h, by name. */
export const mapCodecs = {
  sn_config: {key: u32, value: snConfig},
  sn_networks: {key: u32, value: snNetwork}, // key: VNI
  sn_endpoints: {key: snEndpointKey, value: snEndpoint},
  sn_devices: {key: u32, value: snDevice}, // key: ifindex of the host-side device
  sn_services: {key: snServiceKey, value: snService},
  sn_maglev: {key: snMaglevKey, value: snMaglevChunk},
  sn_backends: {key: snBackendKey, value: snBackend},
  sn_ct: {key: snCtKey, value: snCt},
  sn_stats: {key: u32, value: u64, percpu: true}, // key: enum sn_counter (src/bpf/counters.ts)
  sn_mesh_ports: {key: snMeshPortKey, value: snMeshPort},
  sn_mesh_stats: {key: snMeshPortKey, value: snMeshStats, percpu: true},
  sn_mesh_ct: {key: snMeshCtKey, value: snMeshCt},
  sn_mesh_nodes: {key: ipv4Key, value: snMeshNode},
  sn_mesh_addrs: {key: ipv4Key, value: u32}, // bpf/include/mesh_addrs.h; value: flags, none yet
  sn_mesh_config: {key: u32, value: snMeshConfig},
  sn_gateways: {key: u32, value: snGateway},
  sn_mesh_syn: {key: snMeshCtKey, value: snMeshCt}, // key: ifindex of a task's gateway-bridge device (host side)
  sn_sock_config: {key: u32, value: snSockConfig},
  sn_sock_targets: {key: snSockKey, value: snSockTargets},
  sn_sock_rev: {key: snSockRevKey, value: snSockRev},
  sn_dns_names: {key: snDnsKey, value: snDnsName},
  sn_dns_ptrs: {key: snDnsPtrKey, value: snDnsPtr},
  sn_dns_scopes: {key: u32, value: snDnsScope}, // key: ifindex of a task's gateway-bridge device (host side)
  sn_probe_keys: {key: u32, value: snProbeKey}, // key: the cluster key's id (bpf/include/probe.h)
  sn_sock_lb_tasks: {key: u64, value: snSockLbTask}, // key: a task's cgroup v2 id (bpf/include/sock_lb.h)
  sn_sock_lb_rev: {key: snSockLbRevKey, value: snSockLbRev},
} as const satisfies Record<string, MapCodecShape>

export type MapName = keyof typeof mapCodecs

export interface DecodedEntry<K, V> {
  key: K
  /** For per-CPU maps, the sum over CPUs. */
  value: V
  perCpu?: V[]
}

/**
 * Decode one raw entry of a known map. `value` is the raw value buffer: for
 * per-CPU maps, all CPU slots (each padded to 8 bytes), as BpfMap returns it.
 */
export function decodeEntry<N extends MapName>(
  map: N,
  key: Buffer,
  value: Buffer,
): DecodedEntry<ReturnType<(typeof mapCodecs)[N]['key']['decode']>, ReturnType<(typeof mapCodecs)[N]['value']['decode']>> {
  // Indexing the const registry by a generic key loses the per-entry link
  // between codec and value type, so go through the general Codec shape.
  const mc = mapCodecs[map] as MapCodec<unknown, unknown>
  const k = mc.key.decode(key)
  type R = ReturnType<typeof decodeEntry<N>>
  if (!mc.percpu) return {key: k, value: mc.value.decode(value)} as R
  const stride = (mc.value.size + 7) & ~7
  if (value.length % stride !== 0) throw bad(`${map}: per-CPU value of ${value.length} bytes is not a multiple of ${stride}`)
  const perCpu: unknown[] = []
  for (let at = 0; at < value.length; at += stride) perCpu.push(mc.value.decode(value.subarray(at, at + mc.value.size)))
  return {key: k, value: sumPerCpu(mc.value, perCpu), perCpu} as R
}
