/**
 * What each program must do with a packet, worked out in TypeScript from the
 * maps alone, independently of the C: the verdict, the counters that move,
 * and the bytes that come out. The fuzzer (bench/fuzz.ts) holds every run of
 * the programs to it, so a redirect the maps do not justify, a missing or
 * extra count, a wrong rewritten address or port, or a broken checksum is a
 * mismatch.
 *
 * The maps the agent writes are the oracle's (bench/fuzz-world.ts); the
 * connection tracking the programs write is read from the kernel before each
 * run (`Tracked`), so a tracked flow's backend is the one its entry names,
 * and a new flow's is the one the agent's Maglev table (src/lb) gives its hash.
 * Rewrites are checked field by field; a rewritten checksum must leave what it
 * covers summing as before (valid stays valid, RFC 1624), as every rewrite
 * here is incremental.
 *
 * Mesh lifetimes (mesh.h: FIN marks, the 10 s close, UDP idle) need the clock the programs read:
 * the oracle takes the window a run may read it in (`clock`), decides each lifetime against both
 * ends, and holds a written `seen` to that window; a decision that falls inside it is not guessed
 * (TooClose: the fuzzer does not run that packet and counts it).
 */
import {type CounterName, type SnCt} from '../src/bpf/index.js'
import {lbSlot} from '../src/lb/hash.js'
import {maglevChunks} from '../src/dataplane/mapsync.js'
import {PROBE_BYTES, PROBE_REPLY, PROBE_REQUEST, decodeProbe, encodeProbe, probeKey} from '../src/dataplane/probe-wire.js'
import type {DesiredMaps, DesiredEndpoint} from '../src/dataplane/desired.js'
import {TC_ACT_REDIRECT, TC_ACT_SHOT, XDP_DROP, XDP_PASS, XDP_REDIRECT, type EndpointSpec} from '../test/bpf/harness.js'
import * as P from '../test/bpf/packets.js'
import * as W from './fuzz-world.js'

export const XDP_TX = 3
export const TC_ACT_UNSPEC = 0xffffffff

/** An endpoint as the fuzzer writes it into sn_endpoints. */
export type Endpoint = EndpointSpec

export type Counts = Partial<Record<CounterName, number>>

export interface Expected {
  verdict: number
  /** Every counter that moves, by how much (the others must not). */
  counters: Counts
  /** The outcome's name in the report. */
  label: string
  /** The exact output; undefined when the input must come out untouched (unless `check` is given). */
  out?: Buffer
  /** Checks an output that cannot be predicted byte for byte; returns a problem or undefined. */
  check?: (out: Buffer) => string | undefined
  /** Checks the connection-tracking entries the run wrote, read after it; returns a problem or undefined. */
  entries?: (t: Tracked) => string | undefined
}

/** Mesh connection-tracking values as the codecs decode them. */
export interface MeshCt {
  addr: string
  node: string
  port: number
  flags: number
  vni: number
  table: number
  /** ms of the kernel's monotonic clock, wrapping (mesh.h): UDP's last packet, TCP's close. */
  seen: number
  peer_mac: string
  own_mac: string
}

export interface CtKey {
  vni: number
  src: string
  dst: string
  sport: number
  dport: number
  proto: number
  dir: number
}
export type MeshKey = Omit<CtKey, 'vni'>

/** The programs' connection tracking as it is before the run (read from the kernel). */
export interface Tracked {
  ct(k: CtKey): SnCt | undefined
  meshCt(k: MeshKey): MeshCt | undefined
  meshSyn(k: MeshKey): MeshCt | undefined
}

const FWD = 0
const REPLY = 1
const CT_SEEN_FIN = 0x1
const CT_HAIRPIN = 0x8
const TCP = P.IPPROTO_TCP
const UDP = P.IPPROTO_UDP
const ICMP = P.IPPROTO_ICMP
const SYN = 0x02
const ACK = 0x10
const RST = 0x04
const QUOTE = 548
const FIN = 0x01

// ---- mesh lifetimes (mesh.h, issue 19 hole 5): the oracle's own clock -------------------------

const FIN_CLIENT = 0x1
const FIN_BACKEND = 0x2
const CLOSING = 0x4
const CLOSE_GRACE_MS = 10_000
/** The world leaves sn_config.mesh_udp_idle 0: the programs' default, 120 s. */
const UDP_IDLE_MS = 120_000
/** sn_mesh_ct_touch's step: an eighth of the lifetime, at most a second. */
const TOUCH_STEP_MS = Math.min(UDP_IDLE_MS / 8, 1000)

/** CLOCK_MONOTONIC in ms, wrapping as the programs' u32 (the coarse clock the programs read lags it by a tick at most). */
export const monoMs = (): number => Number((process.hrtime.bigint() / 1_000_000n) & 0xffffffffn)
/** The coarse clock lags the fine one by at most a tick (10 ms at HZ=100): the window's low end allows for it. */
const TICK_SLACK_MS = 20
/** How long after the expectation the run may read the clock, on a loaded machine. */
const RUN_SLACK_MS = 1000

/**
 * The clock the programs may read during the run about to be judged: between `lo` and `hi`
 * (set by the fuzzer before each expectation). A lifetime decision that falls inside that window
 * cannot be predicted: TooClose is thrown and the fuzzer draws another packet.
 */
export const clock = {lo: 0, hi: 0}
export function startClock(): void {
  const now = monoMs()
  clock.lo = (now - TICK_SLACK_MS) >>> 0
  clock.hi = (now + RUN_SLACK_MS) >>> 0
}
export class TooClose extends Error {}

/** mesh.h SN_MESH_AHEAD_MS: a `seen` up to this far ahead of the clock is just seen. */
const AHEAD_MS = 5000
/**
 * now - seen as the programs compute it (u32), 0 for a `seen` up to AHEAD_MS ahead (mesh.h
 * sn_mesh_past; it also covers the window's low end, which may fall below a `seen` written a
 * moment ago). sn_mesh_ct_touch writes a truly-ahead `seen` back to the clock; the fuzzer never
 * makes one, so `touched` uses this too.
 */
const since = (now: number, seen: number) => {
  const d = (now - seen) >>> 0
  return d >= 2 ** 32 - AHEAD_MS ? 0 : d
}
/** Is `now - seen > limit` at the time of the run? */
function past(seen: number, limit: number): boolean {
  const lo = since(clock.lo, seen) > limit
  const hi = since(clock.hi, seen) > limit
  if (lo !== hi) throw new TooClose(`${since(clock.lo, seen)} ms against ${limit}`)
  return lo
}

/** mesh.h sn_mesh_ct_live: an entry past its lifetime is a missing one (and is counted). */
function meshLive(ct: MeshCt, proto: number): boolean {
  if (proto === UDP) return !past(ct.seen, UDP_IDLE_MS)
  if (ct.flags & CLOSING) return !past(ct.seen, CLOSE_GRACE_MS)
  return true
}

/** mesh.h sn_mesh_reply_lookup: an established reply entry alive, else (TCP) an embryonic one; with the counters it moved. */
function meshReplyLookup(t: Tracked, rk: MeshKey): {ct?: MeshCt; syn: boolean; counters: Counts} {
  let ct = t.meshCt(rk)
  let counters: Counts = {}
  if (ct && !meshLive(ct, rk.proto)) {
    counters = one('mesh_ct_expired')
    ct = undefined
  }
  if (ct) return {ct, syn: false, counters}
  const s = rk.proto === TCP ? t.meshSyn(rk) : undefined
  return {ct: s, syn: s !== undefined, counters}
}

/** What `seen` must be after the run: as it was, a clock reading of the run, or either (too close to call). */
type Seen = {is: number} | 'now' | {nowOr: number}

/** mesh.h sn_mesh_ct_touch on an entry whose `seen` was `seen`. */
function touched(seen: number): Seen {
  const lo = since(clock.lo, seen) >= TOUCH_STEP_MS
  const hi = since(clock.hi, seen) >= TOUCH_STEP_MS
  return lo ? 'now' : hi ? {nowOr: seen} : {is: seen}
}

/** mesh.h sn_mesh_ct_fin: the flags and seen after a FIN from `side`, and the counters. */
function finned(ct: MeshCt, side: number): {flags: number; seen: Seen; counters: Counts} {
  const was = ct.flags
  if (was & side || (was | side) !== (FIN_CLIENT | FIN_BACKEND)) return {flags: was | side, seen: {is: ct.seen}, counters: {}}
  return {flags: was | side | CLOSING, seen: 'now', counters: one('mesh_ct_closed')}
}

/** mesh.h sn_mesh_ct_used on a live entry: UDP moves its clock, a TCP FIN marks `side`. */
function used(ct: MeshCt, proto: number, tflags: number, side: number): {flags: number; seen: Seen; counters: Counts} {
  if (proto === UDP) return {flags: ct.flags, seen: touched(ct.seen), counters: {}}
  if (tflags & FIN) return finned(ct, side)
  return {flags: ct.flags, seen: {is: ct.seen}, counters: {}}
}

/** `seen` as read after the run, held to the rule (a clock reading: between the window's start and now). */
function seenIs(what: string, got: MeshCt | undefined, want: Seen): string | undefined {
  if (!got) return undefined
  const inRun = (v: number) => ((v - clock.lo) | 0) >= 0 && ((monoMs() - v) | 0) >= 0
  if (want === 'now')
    return inRun(got.seen) ? undefined : `${what} entry seen ${got.seen}, expected a clock of the run (from ${clock.lo})`
  if ('is' in want) return got.seen === want.is ? undefined : `${what} entry seen ${got.seen}, expected ${want.is}`
  return got.seen === want.nowOr || inRun(got.seen)
    ? undefined
    : `${what} entry seen ${got.seen}, expected ${want.nowOr} or a clock of the run`
}

/** A mesh entry held to `want` field by field (`seen` by its rule). */
function meshEntry(what: string, got: MeshCt | undefined, want: Omit<MeshCt, 'seen'>, seen: Seen): string | undefined {
  return sameEntry(what, got ? noSeen(got) : undefined, want) ?? seenIs(what, got, seen)
}
const noSeen = (c: MeshCt): Omit<MeshCt, 'seen'> => {
  const {seen, ...rest} = c
  void seen
  return rest
}

export interface World {
  want: DesiredMaps
  ix: W.Ifindexes
  /** vni/vip -> slot -> backend address ('0.0.0.0': none) */
  tables: Map<string, string[]>
  /** Probe keys by key id (src/dataplane/probe-wire.ts probeKey of the cluster key). */
  probeKeys: Map<number, Buffer>
}

export function world(want: DesiredMaps, ix: W.Ifindexes): World {
  const tables = new Map<string, string[]>()
  for (const [k, s] of want.services ?? []) tables.set(k, maglevChunks(s).flat())
  return {want, ix, tables, probeKeys: new Map(W.CLUSTER_KEYS.map((k) => [k.id, probeKey(k.key)]))}
}

export const ip4 = (b: Buffer, at: number) => `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`

function endpoint(w: World, vni: number, ip: string): DesiredEndpoint | undefined {
  return w.want.endpoints.get(`${vni}/${ip}`)
}

const pass = (counters: Counts = {xdp_pass: 1}): Expected => ({verdict: XDP_PASS, counters, label: 'xdp_pass'})
const one = (c: CounterName, n = 1): Counts => ({[c]: n})
const add = (a: Counts, b: Counts): Counts => {
  const out: Counts = {...a}
  for (const [k, n] of Object.entries(b) as Array<[CounterName, number]>) out[k] = (out[k] ?? 0) + n
  return out
}
const xdrop = (c: CounterName, extra: Counts = {}): Expected => ({verdict: XDP_DROP, counters: add(one(c), extra), label: c})
const withCounts = (e: Expected, c: Counts): Expected => ({...e, counters: add(c, e.counters)})
const tdrop = (c: CounterName, extra: Counts = {}): Expected => ({verdict: TC_ACT_SHOT, counters: add(one(c), extra), label: c})

// ---- checksums: what a rewrite must keep -------------------------------------------------------

function sum16(b: Buffer, from: number, to: number, acc = 0): number {
  let s = acc
  let i = from
  for (; i + 1 < to; i += 2) s += b.readUInt16BE(i)
  if (i < to) s += b[i]! << 8
  return s
}
function fold(s: number): number {
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000)
  return s
}
/** The folded sum over what a checksum covers: 0xffff (or 0) when it is right, and kept by an incremental update. */
export type Residual = (b: Buffer) => number
const ipRes =
  (at: number): Residual =>
  (b) =>
    fold(sum16(b, at, at + 20))
/** TCP/UDP at ipAt+20 to the frame's end, with the pseudo-header's addresses and protocol (the length is the same in and out). */
const l4Res =
  (ipAt: number): Residual =>
  (b) =>
    fold(sum16(b, ipAt + 20, b.length, sum16(b, ipAt + 12, ipAt + 20) + b[ipAt + 9]!))
const icmpRes =
  (at: number): Residual =>
  (b) =>
    fold(sum16(b, at, b.length))
const sameRes = (a: number, b: number) => a === b || (a === 0 && b === 0xffff) || (a === 0xffff && b === 0)

interface Field {
  at: number
  bytes: Buffer
}
const f32 = (at: number, ip: string): Field => ({at, bytes: P.ipv4(ip)})
const f16 = (at: number, v: number): Field => {
  const bytes = Buffer.alloc(2)
  bytes.writeUInt16BE(v)
  return {at, bytes}
}
const fmac = (at: number, mac: string): Field => ({at, bytes: P.mac(mac)})

interface Sum {
  /** Where the checksum sits (2 bytes), excluded from the byte comparison. */
  at: number
  /** What it covers, in `in`'s coordinates and `out`'s (the same unless the frame moved). */
  res: Residual
  /** UDP: 0 means none and stays 0; a rewritten one is never 0. */
  udp?: boolean
}

/**
 * The output must be `input` with `fields` written and nothing else changed, but for the
 * checksums in `sums`, each of which must keep the sum of what it covers. `shift`: bytes the
 * output has in front of the input's frame (an encapsulation), checked apart by `head`.
 */
function rewritten(
  input: Buffer,
  fields: Field[],
  sums: Sum[],
  o: {shift?: number; head?: (out: Buffer) => string | undefined} = {},
): (out: Buffer) => string | undefined {
  const shift = o.shift ?? 0
  const want = Buffer.from(input)
  for (const f of fields) f.bytes.copy(want, f.at)
  return (out) => {
    if (out.length !== want.length + shift) return `${out.length} bytes out, expected ${want.length + shift}`
    const head = o.head?.(out)
    if (head) return head
    const body = Buffer.from(out.subarray(shift))
    for (const s of sums) {
      if (s.at + 2 > input.length) continue
      const inCheck = input.readUInt16BE(s.at)
      const outCheck = body.readUInt16BE(s.at)
      if (s.udp && inCheck === 0) {
        if (outCheck !== 0) return `UDP checksum 0 became ${outCheck}`
        continue
      }
      if (s.udp && outCheck === 0) return `a rewritten UDP checksum is 0 (must be 0xffff)`
      const a = s.res(input)
      const b = s.res(body)
      if (!sameRes(a, b)) return `checksum at ${s.at}: covers a sum of ${b.toString(16)}, was ${a.toString(16)}`
      body.writeUInt16BE(inCheck, s.at)
      want.writeUInt16BE(inCheck, s.at)
    }
    if (!body.equals(want)) return `rewrite differs:\n  got  ${body.toString('hex')}\n  want ${want.toString('hex')}`
    return undefined
  }
}

/**
 * The checksums of a TCP or UDP packet with a plain header at ipAt that a rewrite updates: tc's
 * helper updates the L4 one when it lies within the frame, XDP's direct writes (`direct`) when
 * the whole L4 header does; one not updated must come out as it went in.
 */
function l4Sums(p: Buffer, ipAt: number, proto: number, direct = false): Sum[] {
  const sums: Sum[] = [{at: ipAt + 10, res: ipRes(ipAt)}]
  const at = ipAt + 20 + (proto === TCP ? 16 : 6)
  const whole = p.length >= ipAt + 20 + (proto === TCP ? 20 : 8)
  if (direct ? whole : at + 2 <= p.length) sums.push({at, res: l4Res(ipAt), udp: proto === UDP})
  return sums
}

// ---- xdp_underlay -------------------------------------------------------------------------------

export interface XdpCtx {
  /** The FIB's answer for a destination from this node (fuzz-world's namespace). */
  fib: (dst: string, totLen: number) => FibAnswer
}

export type FibAnswer = {ok: true; dmac: string; smac: string} | {ok: false; counter: CounterName}

/** The namespace's FIB: the underlay /24 with its permanent neighbours, nothing beyond. */
export function fibOf(w: World): XdpCtx['fib'] {
  return (dst, totLen) => {
    const onLink = dst.startsWith('172.30.0.')
    if (!onLink) return {ok: false, counter: 'mesh_fib_fail'}
    if (totLen > 1500) return {ok: false, counter: 'mesh_underlay_mtu'}
    const mac = W.NEIGH.get(dst)
    return mac ? {ok: true, dmac: mac, smac: w.ix.underlayMac} : {ok: false, counter: 'mesh_fib_fail'}
  }
}

const isNodeAddr = (a: string) => a === W.NODE || a === W.SECOND

function plain(p: Buffer, at: number): boolean {
  return p[at]! >> 4 === 4 && (p[at]! & 15) === 5 && (p.readUInt16BE(at + 6) & 0x3fff) === 0
}

/** sn_xdp_underlay. */
export function expectXdp(w: World, p: Buffer, t: Tracked): Expected {
  const fib = fibOf(w)
  const mesh = expectMeshXdp(w, p, t, fib)
  if (mesh && 'verdict' in mesh) return mesh
  const before: Counts = mesh?.counters ?? {}
  const icmp = expectMeshIcmpXdp(w, p, t, fib)
  if (icmp) return icmp
  const withBefore = (e: Expected): Expected => ({...e, counters: add(before, e.counters)})
  return withBefore(expectVxlan(w, p, t, fib))
}

/** The overlay path of sn_xdp_underlay: VXLAN to the node. */
function expectVxlan(w: World, p: Buffer, t: Tracked, fib: XdpCtx['fib']): Expected {
  if (p.length < 14 || p.readUInt16BE(12) !== P.ETH_P_IP) return pass()
  if (p.length < 34) return pass()
  if (p[23] !== UDP || !plain(p, 14)) return pass()
  if (p.length < 42) return pass()
  if (p.readUInt16BE(36) !== W.VXLAN_PORT || ip4(p, 30) !== W.NODE) return pass()
  if (p.length < 50) return xdrop('xdp_malformed')
  // Not VXLAN: a liveness probe, and no key is set in this world (probe.test.ts covers the keys).
  if (!(p[42]! & 0x08)) return expectProbe(w, p)
  const vni = p.readUIntBE(46, 3)
  const refuse = (c: CounterName): Expected => (w.want.networks.has(vni) ? xdrop(c) : pass())
  if (p.length < 64) return refuse('xdp_malformed')
  if (p.readUInt16BE(62) !== P.ETH_P_IP) return refuse('xdp_not_ipv4')
  if (p.length < 84 || p[64]! >> 4 !== 4) return refuse('xdp_malformed')
  const outerSrc = ip4(p, 26)
  const src = endpoint(w, vni, ip4(p, 76))
  // A mesh path that looked a flow up and found none (or one past its lifetime) may have counted on the way.
  let before: Counts = {}
  if (!src) {
    const m = expectMeshDecap(w, p, t, vni)
    if (m && 'verdict' in m) return m
    before = m?.counters ?? {}
  }
  const withBefore = (e: Expected): Expected => ({...e, counters: add(before, e.counters)})
  if (!src || src.local || src.nodeIp !== outerSrc) return withBefore(refuse('xdp_bad_source'))
  const dst = endpoint(w, vni, ip4(p, 80))
  if (!dst) {
    const m = expectMeshReply(w, p, t, fib)
    if (m && 'verdict' in m) return m
    before = m?.counters ?? {}
  }
  if (!dst || !dst.local || !dst.ifindex) return withBefore(xdrop('xdp_no_endpoint'))
  // The inner frame, its destination MAC set; a backend's reply may get its VIP back.
  const inner = Buffer.from(p.subarray(50))
  P.mac(dst.mac).copy(inner, 0)
  const rev = src.backend && (p[64]! & 15) === 5 ? expectRevNatDirect(inner, 14, vni, t) : undefined
  if (rev) return {verdict: XDP_REDIRECT, counters: add(rev.counters, one('xdp_decap')), label: 'xdp_decap', check: rev.check}
  return {verdict: XDP_REDIRECT, counters: one('xdp_decap'), label: 'xdp_decap', out: inner}
}

/** A datagram to the data-path port without the VXLAN I flag: a liveness probe (probe.h), held to the agent's own wire code. */
function expectProbe(w: World, p: Buffer): Expected {
  const b = p.subarray(42)
  if (b.length < PROBE_BYTES || b.readUInt32LE(0) !== 0x504c4e53 || b[4] !== 1 || b[5] !== PROBE_REQUEST || b[7] !== 0)
    return xdrop('xdp_malformed')
  const key = w.probeKeys.get(b[6]!)
  const probe = key && decodeProbe(b, ip4(p, 26), ip4(p, 30), (id) => (id === b[6] ? key : undefined))
  if (!key || !probe) return xdrop('probe_refused')
  const out = Buffer.from(p)
  p.copy(out, 0, 6, 12)
  p.copy(out, 6, 0, 6)
  p.copy(out, 26, 30, 34)
  p.copy(out, 30, 26, 30)
  p.copy(out, 34, 36, 38)
  p.copy(out, 36, 34, 36)
  out.writeUInt16BE(0, 40)
  encodeProbe({type: PROBE_REPLY, keyId: probe.keyId, nonce: probe.nonce}, key, ip4(p, 30), ip4(p, 26)).copy(out, 42)
  return {verdict: XDP_TX, counters: one('probe_answered'), label: 'probe_answered', out}
}

/**
 * Reverse NAT where XDP writes the packet itself (nat.h sn_rev_nat_direct) on `f`, an
 * Ethernet frame whose IPv4 header (plain) is at ipAt. undefined: nothing to do.
 */
function expectRevNatDirect(
  f: Buffer,
  ipAt: number,
  vni: number,
  t: Tracked,
): {counters: Counts; check: (o: Buffer) => string | undefined} | undefined {
  if (!plain(f, ipAt)) return undefined
  const proto = f[ipAt + 9]!
  if (proto === ICMP) return expectRevNatIcmp(f, ipAt, vni, t)
  if ((proto !== TCP && proto !== UDP) || f.length < ipAt + 24) return undefined
  const k = keyOf(f, ipAt, vni, REPLY)
  const ct = t.ct(k)
  if (!ct || ct.flags & CT_HAIRPIN) return undefined
  const l4len = proto === TCP ? 20 : 8
  if (f.length < ipAt + 20 + l4len) return undefined
  let counters: Counts = one('lb_rev_nat')
  if (proto === TCP) counters = add(counters, replySeen(k, ct, f[ipAt + 33]!, t))
  return {counters, check: rewritten(f, [f32(ipAt + 12, ct.addr)], l4Sums(f, ipAt, proto, true))}
}

/** nat.h sn_rev_nat_icmp: an ICMP error from a backend about a client's datagram to a VIP. */
function expectRevNatIcmp(
  f: Buffer,
  ipAt: number,
  vni: number,
  t: Tracked,
): {counters: Counts; check: (o: Buffer) => string | undefined} | undefined {
  const q = quoteOf(f, ipAt)
  if (!q || ip4(f, q + 12) !== ip4(f, ipAt + 16)) return undefined
  const k: CtKey = {
    vni,
    src: ip4(f, q + 16),
    dst: ip4(f, q + 12),
    sport: f.readUInt16BE(q + 22),
    dport: f.readUInt16BE(q + 20),
    proto: f[q + 9]!,
    dir: REPLY,
  }
  const ct = t.ct(k)
  if (!ct || ct.flags & CT_HAIRPIN) return undefined
  return {counters: one('lb_rev_nat_icmp'), check: quoteRewrite(f, ipAt, q, false, ct.addr, k.sport)}
}

/** The quoted datagram's offset in an ICMP error at ipAt (plain outer header), or undefined (nat.h sn_icmp_quote). */
function quoteOf(f: Buffer, ipAt: number): number | undefined {
  const q = ipAt + 28
  if (f.length < q + 24) return undefined
  const type = f[ipAt + 20]!
  if (type !== 3 && type !== 11 && type !== 12) return undefined
  if ((f[q]! & 15) !== 5) return undefined
  const proto = f[q + 9]!
  return proto === TCP || proto === UDP ? q : undefined
}

/** nat.h sn_icmp_quote_nat: one side of the quote and the matching outer address. */
function quoteRewrite(
  f: Buffer,
  ipAt: number,
  q: number,
  quotedSrc: boolean,
  addr: string,
  port: number,
  extra: Field[] = [],
  o: {shift?: number; head?: (out: Buffer) => string | undefined} = {},
) {
  const proto = f[q + 9]!
  const fields = [
    ...extra,
    quotedSrc ? f32(q + 12, addr) : f32(q + 16, addr),
    quotedSrc ? f16(q + 20, port) : f16(q + 22, port),
    quotedSrc ? f32(ipAt + 16, addr) : f32(ipAt + 12, addr),
  ]
  const sums: Sum[] = [
    {at: ipAt + 10, res: ipRes(ipAt)},
    {at: ipAt + 22, res: icmpRes(ipAt + 20)},
    {at: q + 10, res: ipRes(q)},
  ]
  const l4at = q + 20 + (proto === TCP ? 16 : 6)
  const l4whole = f.length >= q + 20 + (proto === TCP ? 20 : 8)
  if (l4whole && !(proto === UDP && f.readUInt16BE(l4at) === 0)) sums.push({at: l4at, res: l4Res(q), udp: proto === UDP})
  return rewritten(f, fields, sums, o)
}

function keyOf(f: Buffer, ipAt: number, vni: number, dir: number): CtKey {
  return {
    vni,
    src: ip4(f, ipAt + 12),
    dst: ip4(f, ipAt + 16),
    sport: f.readUInt16BE(ipAt + 20),
    dport: f.readUInt16BE(ipAt + 22),
    proto: f[ipAt + 9]!,
    dir,
  }
}

/** nat.h sn_ct_reply_seen: what a reply's FIN or RST does to the counters (a RST of a flow ends it). */
function replySeen(rk: CtKey, rev: SnCt, flags: number, t: Tracked): Counts {
  if (rk.proto !== TCP || !(flags & RST)) return {}
  const hair = rev.flags & CT_HAIRPIN
  const fk: CtKey = {
    vni: rk.vni,
    src: hair ? rk.src : rk.dst,
    dst: hair ? rk.dst : rev.addr,
    sport: rk.dport,
    dport: rk.sport,
    proto: rk.proto,
    dir: FWD,
  }
  return t.ct(fk) ? one('lb_ct_reset') : {}
}

// ---- the routing mesh in XDP --------------------------------------------------------------------

interface MeshPort {
  vni: number
  addr: string
  target: number
  mode: 'ingress' | 'host'
  ifindex: number
  mac: string
}

function meshPort(w: World, port: number, proto: number): MeshPort | undefined {
  const p = w.want.mesh?.ports.get(`${port}/${proto === TCP ? 'tcp' : 'udp'}`)
  return p && {vni: p.vni, addr: p.addr, target: p.target, mode: p.mode, ifindex: p.ifindex, mac: p.mac}
}

/**
 * mesh_xdp.h sn_mesh_xdp: undefined when the packet is not the mesh's, {counters} when it is
 * not but counted something on the way (a TCP non-SYN of no flow), else the outcome.
 */
function expectMeshXdp(w: World, p: Buffer, t: Tracked, fib: XdpCtx['fib']): Expected | {counters: Counts} | undefined {
  if (p.length < 34 || p.readUInt16BE(12) !== P.ETH_P_IP) return undefined
  const proto = p[23]!
  if (proto !== TCP && proto !== UDP) return undefined
  if (!plain(p, 14) || p.length < 38) return undefined
  const daddr = ip4(p, 30)
  if (!isNodeAddr(daddr)) return undefined
  const dport = p.readUInt16BE(36)
  if (proto === UDP && dport === W.VXLAN_PORT) return undefined
  const mp = meshPort(w, dport, proto)
  if (!mp) return undefined
  if (mp.mode === 'ingress') {
    const len = p.readUInt16BE(16)
    const mtu = w.want.networks.get(mp.vni)?.mtu ?? 0
    if (len > 576 && 14 + len <= p.length && mtu && len > mtu) {
      if (!(p[20]! & 0x40)) return xdrop('mesh_too_big')
      return meshFragNeeded(p, mtu, fib)
    }
  }
  const client = ip4(p, 26)
  const sport = p.readUInt16BE(34)
  const tflags = proto === TCP && p.length > 47 ? p[47]! : 0
  const fk: MeshKey = {src: client, dst: daddr, sport, dport, proto, dir: FWD}
  let ct = t.meshCt(fk)
  let counters: Counts = {}
  let rct: MeshCt | undefined
  if (ct) {
    // Has the flow ended (mesh_xdp.h sn_mesh_fwd_ended)? Its reply entry holds the FINs and the backend's last packet.
    rct = t.meshCt({src: ct.addr, dst: client, sport: mp.target, dport: sport, proto, dir: REPLY})
    let ended: boolean
    if (proto === UDP) {
      let last = ct.seen
      if (rct && ((rct.seen - last) | 0) > 0) last = rct.seen
      ended = past(last, UDP_IDLE_MS)
    } else if (!rct || !(rct.flags & CLOSING)) ended = false
    else if ((tflags & (SYN | ACK)) === SYN) ended = true
    else ended = past(rct.seen, CLOSE_GRACE_MS)
    if (ended || (mp.mode === 'host' && ct.addr !== mp.addr)) {
      // Both entries go; a SYN then is a new flow, anything else of TCP no flow of ours.
      counters = one('mesh_ct_expired')
      ct = undefined
      rct = undefined
    }
  }
  const established = ct !== undefined
  if (!ct && proto === TCP) ct = t.meshSyn(fk)
  let backend: string
  let node: string
  let newFlow = false
  if (mp.mode === 'host') {
    backend = mp.addr
    node = W.NODE
    newFlow = !ct
  } else if (ct) {
    // The tables never change in this world: a tracked flow keeps its backend.
    backend = ct.addr
    node = ct.node
  } else {
    const table = w.tables.get(`${mp.vni}/${mp.addr}`)
    const svc = w.want.services?.get(`${mp.vni}/${mp.addr}`)
    const pick =
      table && svc && svc.backends.length ? table[lbSlot(client, mp.addr, sport, mp.target, proto, table.length)] : undefined
    const b = pick && svc!.backends.find((x) => x.ip === pick)
    if (!b) return xdrop('mesh_no_backend', counters)
    backend = b.ip
    node = b.nodeIp
    newFlow = true
  }
  if (newFlow && proto === TCP && (tflags & (SYN | ACK)) !== SYN) return {counters: add(counters, one('mesh_not_syn'))}
  const rk: MeshKey = {src: backend, dst: client, sport: mp.target, dport: sport, proto, dir: REPLY}
  const restored = !newFlow && established && !rct
  if (restored) counters = add(counters, one('mesh_reply_restored'))
  // An established flow's reply entry marked by this packet: UDP's clock (both entries), a client's FIN.
  const mark = !newFlow && established && rct ? used(rct, proto, tflags, FIN_CLIENT) : undefined
  if (mark) counters = add(counters, mark.counters)
  if (tflags & RST) counters = add(counters, one('mesh_ct_reset'))
  if (newFlow) counters = add(counters, one('mesh_new_flow'))
  // The entries the run writes (mesh_xdp.h): a new flow's pair (TCP: embryonic), or a handshake's ACK moving them over.
  const rev: Omit<MeshCt, 'seen'> = {
    addr: daddr,
    node: W.NODE,
    port: dport,
    flags: 0,
    vni: mp.vni,
    table: 0,
    peer_mac: macAt(p, 6),
    own_mac: macAt(p, 0),
  }
  let entries: Expected['entries']
  if (newFlow && !(tflags & RST)) {
    const svc = w.want.services?.get(`${mp.vni}/${mp.addr}`)
    const fwd: Omit<MeshCt, 'seen'> = {
      addr: backend,
      node,
      port: mp.target,
      flags: 0,
      vni: mp.vni,
      table: mp.mode === 'host' ? 0 : svc!.tableId,
      peer_mac: ZERO_MAC,
      own_mac: ZERO_MAC,
    }
    entries = (t2) => {
      const look = (k: MeshKey) => (proto === TCP ? t2.meshSyn(k) : t2.meshCt(k))
      return (
        meshEntry('forward', look(fk), fwd, 'now') ??
        meshEntry('reply', look(rk), rev, 'now') ??
        (proto === TCP && t2.meshCt(rk) ? 'an older reply entry outlived the SYN' : undefined)
      )
    }
  } else if (!newFlow && !established && (tflags & (SYN | ACK | RST)) === ACK) {
    // The forward entry moves as it was (its clock too); the reply entry is written anew, its clock unread (0).
    const fwd = {...noSeen(ct!), port: mp.target, vni: mp.vni, ...(mp.mode === 'host' ? {addr: mp.addr, node: W.NODE} : {})}
    entries = (t2) =>
      meshEntry('forward (established)', t2.meshCt(fk), fwd, {is: ct!.seen}) ??
      meshEntry('reply (established)', t2.meshCt(rk), rev, {is: 0}) ??
      (t2.meshSyn(fk) || t2.meshSyn(rk) ? 'embryonic entries left after the handshake' : undefined)
  } else if (restored && !(tflags & RST)) {
    // A lost reply entry written again: UDP with the clock of the run, TCP with none read (0).
    entries = (t2) => meshEntry('reply (restored)', t2.meshCt(rk), rev, proto === UDP ? 'now' : {is: 0})
  } else if (mark && !(tflags & RST)) {
    const fwdBefore = ct!
    const rctBefore = rct!
    entries = (t2) =>
      meshEntry('reply (marked)', t2.meshCt(rk), {...noSeen(rctBefore), flags: mark.flags}, mark.seen) ??
      (proto === UDP ? meshEntry('forward (touched)', t2.meshCt(fk), noSeen(fwdBefore), touched(fwdBefore.seen)) : undefined)
  }
  const fields = [f32(30, backend), f16(36, mp.target)]
  const sums = l4Sums(p, 14, proto, true)
  if (mp.mode === 'host') {
    if (!mp.ifindex) return {...xdrop('mesh_no_backend', counters), entries}
    return {
      verdict: XDP_REDIRECT,
      entries,
      counters: add(counters, one('mesh_local')),
      label: 'mesh_local (host)',
      check: rewritten(p, [...fields, fmac(0, mp.mac)], sums),
    }
  }
  if (node === W.NODE) {
    const ep = endpoint(w, mp.vni, backend)
    if (!ep || !ep.local || !ep.ifindex) return {...xdrop('mesh_no_backend', counters), entries}
    return {
      verdict: XDP_REDIRECT,
      entries,
      counters: add(counters, one('mesh_local')),
      label: 'mesh_local',
      check: rewritten(p, [...fields, fmac(0, ep.mac)], sums),
    }
  }
  // A backend elsewhere: the MSS lowered to the ingress network's, then VXLAN to its node.
  const mtu = w.want.networks.get(mp.vni)?.mtu ?? 0
  const mss = mssField(p, proto, mtu - 40)
  if (mss) fields.push(mss)
  fields.push(fmac(0, W.macOfIp(backend)))
  counters = add(counters, one('mesh_remote'))
  const out = fib(node, p.length + 36)
  if (!out.ok) return {...xdrop(out.counter, counters), entries}
  return {
    verdict: XDP_TX,
    entries,
    counters,
    label: 'mesh_remote',
    check: rewritten(p, fields, sums, {shift: 50, head: encapHead(p, W.NODE, node, mp.vni, out.dmac, out.smac)}),
  }
}

/** The MSS option, when it is the SYN's first option and larger than mss: lowered (mesh.h sn_mss_lower). */
function mssField(p: Buffer, proto: number, mss: number): Field | undefined {
  if (proto !== TCP || p.length < 14 + 20 + 24) return undefined
  const tcp = 34
  if (!(p[tcp + 13]! & SYN) || p[tcp + 12]! >> 4 < 6) return undefined
  if (p[tcp + 20] !== 2 || p[tcp + 21] !== 4 || p.readUInt16BE(tcp + 22) <= mss) return undefined
  return f16(tcp + 22, mss)
}

/** The 50 bytes of an encapsulation as vxlan.h builds them (the source port only within its range). */
function encapHead(inner: Buffer, src: string, dst: string, vni: number, dmac: string, smac: string) {
  return (out: Buffer): string | undefined => {
    const sport = out.readUInt16BE(34)
    if (sport < 49152) return `encap: source port ${sport}`
    const want = P.ethernet(
      {dst: dmac, src: smac, type: P.ETH_P_IP},
      P.ipv4Packet(
        {src, dst, protocol: UDP, ttl: 64, id: 0, fragOff: 0x4000},
        P.udp({srcPort: sport, dstPort: W.VXLAN_PORT, checksum: 0}, P.vxlan({vni, flags: 0x08}, Buffer.alloc(0))),
      ),
    ).subarray(0, 50)
    // The outer lengths are the inner frame's plus the headers'.
    want.writeUInt16BE(inner.length + 36, 16)
    want.writeUInt16BE(P.inetChecksum(Buffer.concat([want.subarray(14, 24), Buffer.alloc(2), want.subarray(26, 34)])), 24)
    want.writeUInt16BE(inner.length + 16, 38)
    const head = out.subarray(0, 50)
    return head.equals(want) ? undefined : `encap headers:\n  got  ${head.toString('hex')}\n  want ${want.toString('hex')}`
  }
}

/** ICMP "fragmentation needed" from the published address to the client (mesh_xdp.h sn_mesh_frag_needed). */
function meshFragNeeded(p: Buffer, mtu: number, fib: XdpCtx['fib']): Expected {
  const client = ip4(p, 26)
  const out = fib(client, 20 + 8 + QUOTE)
  const icmp = fragNeeded(p, mtu)
  if (!out.ok) {
    if (!/^(0)+$/.test(p.subarray(6, 12).toString('hex')))
      return {
        verdict: XDP_TX,
        counters: add(one('mesh_frag_needed'), one(out.counter)),
        label: 'mesh_frag_needed',
        out: icmp,
      }
    return xdrop(out.counter, one('mesh_frag_needed'))
  }
  const want = Buffer.from(icmp)
  P.mac(out.dmac).copy(want, 0)
  P.mac(out.smac).copy(want, 6)
  return {verdict: XDP_TX, counters: one('mesh_frag_needed'), label: 'mesh_frag_needed', out: want}
}

/** mesh_xdp.h sn_mesh_icmp_xdp: an ICMP error about a mesh flow's reply, to its backend. */
function expectMeshIcmpXdp(w: World, p: Buffer, t: Tracked, fib: XdpCtx['fib']): Expected | undefined {
  if (p.length < 34 || p.readUInt16BE(12) !== P.ETH_P_IP || p[23] !== ICMP || !plain(p, 14)) return undefined
  const q = quoteOf(p, 14)
  if (q === undefined || ip4(p, q + 12) !== ip4(p, 30)) return undefined
  const fk: MeshKey = {
    src: ip4(p, q + 16),
    dst: ip4(p, q + 12),
    sport: p.readUInt16BE(q + 22),
    dport: p.readUInt16BE(q + 20),
    proto: p[q + 9]!,
    dir: FWD,
  }
  const ct = t.meshCt(fk) ?? (fk.proto === TCP ? t.meshSyn(fk) : undefined)
  if (!ct || ct.addr === '0.0.0.0' || !ct.port) return undefined
  const c = one('mesh_icmp_to_backend')
  if (!ct.vni) {
    const mp = meshPort(w, fk.dport, fk.proto)
    if (!mp || mp.mode !== 'host' || !mp.ifindex || mp.addr !== ct.addr) return xdrop('mesh_no_backend', c)
    return {
      verdict: XDP_REDIRECT,
      counters: c,
      label: 'mesh_icmp_to_backend',
      check: quoteRewrite(p, 14, q, true, ct.addr, ct.port, [fmac(0, mp.mac)]),
    }
  }
  if (ct.node === W.NODE) {
    const ep = endpoint(w, ct.vni, ct.addr)
    if (!ep || !ep.local || !ep.ifindex) return xdrop('mesh_no_backend', c)
    return {
      verdict: XDP_REDIRECT,
      counters: c,
      label: 'mesh_icmp_to_backend',
      check: quoteRewrite(p, 14, q, true, ct.addr, ct.port, [fmac(0, ep.mac)]),
    }
  }
  const out = fib(ct.node, p.length + 36)
  if (!out.ok) return xdrop(out.counter, c)
  return {
    verdict: XDP_TX,
    counters: c,
    label: 'mesh_icmp_to_backend (remote)',
    check: quoteRewrite(p, 14, q, true, ct.addr, ct.port, [fmac(0, W.macOfIp(ct.addr))], {
      shift: 50,
      head: encapHead(p, W.NODE, ct.node, ct.vni, out.dmac, out.smac),
    }),
  }
}

/** mesh_xdp.h sn_mesh_decap: a request an ingress node forwarded to a backend here (VXLAN at 0, inner IP at 64). */
function expectMeshDecap(w: World, p: Buffer, t: Tracked, vni: number): Expected | {counters: Counts} | undefined {
  const net = w.want.networks.get(vni)
  if (!net?.ingress || !w.want.mesh?.nodes.has(ip4(p, 26))) return undefined
  const proto = p[73]!
  const ipAt = 64
  const dst = endpoint(w, vni, ip4(p, 80))
  const ok = dst && dst.local && dst.backend && dst.ifindex
  const inner = (): Buffer => {
    const f = Buffer.from(p.subarray(50))
    P.mac(dst!.mac).copy(f, 0)
    return f
  }
  if (proto === ICMP && plain(p, ipAt)) {
    if (!ok) return undefined
    const q = quoteOf(p, ipAt)
    if (q === undefined || ip4(p, q + 12) !== ip4(p, 80)) return undefined
    const rk: MeshKey = {
      src: ip4(p, q + 12),
      dst: ip4(p, q + 16),
      sport: p.readUInt16BE(q + 20),
      dport: p.readUInt16BE(q + 22),
      proto: p[q + 9]!,
      dir: REPLY,
    }
    const {ct, counters} = meshReplyLookup(t, rk)
    if (!ct || ct.node !== ip4(p, 26)) return {counters}
    return {verdict: XDP_REDIRECT, counters: add(counters, one('mesh_decap')), label: 'mesh_decap', out: inner()}
  }
  if (!plain(p, ipAt) || (proto !== TCP && proto !== UDP) || p.length < ipAt + 24) return undefined
  if (!ok) return undefined
  const tflags = proto === TCP && p.length > ipAt + 33 ? p[ipAt + 33]! : 0
  let counters = one('mesh_decap')
  const rk: MeshKey = {
    src: ip4(p, 80),
    dst: ip4(p, 76),
    sport: p.readUInt16BE(ipAt + 22),
    dport: p.readUInt16BE(ipAt + 20),
    proto,
    dir: REPLY,
  }
  const rev: Omit<MeshCt, 'seen'> = {
    addr: ip4(p, 80),
    node: ip4(p, 26),
    port: 0,
    flags: 0,
    vni,
    table: 0,
    peer_mac: ZERO_MAC,
    own_mac: ZERO_MAC,
  }
  const syn = proto === TCP && (tflags & (SYN | ACK)) === SYN
  const rst = proto === TCP && !syn && (tflags & RST) !== 0
  if (rst) counters = add(counters, one('mesh_ct_reset'))
  let entries: Expected['entries']
  if (rst) entries = (t2) => (t2.meshCt(rk) || t2.meshSyn(rk) ? 'a reset flow kept its entry' : undefined)
  else if (syn)
    entries = (t2) =>
      meshEntry('reply (embryonic)', t2.meshSyn(rk), rev, 'now') ??
      (t2.meshCt(rk) ? 'an older reply entry outlived the SYN' : undefined)
  else {
    // The flow's entry as this node has it (by this ingress node, alive) is only marked; else it is written anew.
    const ct = t.meshCt(rk)
    const same = ct && ct.node === rev.node && ct.addr === rev.addr && ct.vni === vni
    let live = false
    if (same) {
      live = meshLive(ct, proto)
      if (!live) counters = add(counters, one('mesh_ct_expired'))
    }
    if (same && live) {
      const m = used(ct, proto, tflags, FIN_CLIENT)
      counters = add(counters, m.counters)
      entries = (t2) => meshEntry('reply (marked)', t2.meshCt(rk), {...noSeen(ct), flags: m.flags}, m.seen)
    } else {
      const fresh = {...rev, flags: tflags & FIN ? FIN_CLIENT : 0}
      entries = (t2) =>
        meshEntry('reply', t2.meshCt(rk), fresh, 'now') ??
        (proto === TCP && t2.meshSyn(rk) ? 'an embryonic entry left' : undefined)
    }
  }
  return {verdict: XDP_REDIRECT, counters, label: 'mesh_decap', out: inner(), entries}
}

/** mesh_xdp.h sn_mesh_reply_xdp: a backend's reply come back to this, the ingress node. */
function expectMeshReply(w: World, p: Buffer, t: Tracked, fib: XdpCtx['fib']): Expected | {counters: Counts} | undefined {
  const ipAt = 64
  const proto = p[73]!
  const f = p.subarray(50)
  if (proto === ICMP && plain(p, ipAt)) {
    const q = quoteOf(p, ipAt)
    if (q === undefined || ip4(p, q + 16) !== ip4(p, 76) || ip4(p, q + 12) !== ip4(p, 80)) return undefined
    const rk: MeshKey = {
      src: ip4(p, q + 16),
      dst: ip4(p, q + 12),
      sport: p.readUInt16BE(q + 22),
      dport: p.readUInt16BE(q + 20),
      proto: p[q + 9]!,
      dir: REPLY,
    }
    const {ct, counters} = meshReplyLookup(t, rk)
    if (!ct || ct.node !== W.NODE || ct.addr === '0.0.0.0') return {counters}
    const e = meshOut(f, ct, 'mesh_icmp_to_client', fib, (extra) => quoteRewrite(f, 14, q - 50, false, ct.addr, ct.port, extra))
    return {...e, counters: add(counters, e.counters)}
  }
  if (!plain(p, ipAt) || (proto !== TCP && proto !== UDP) || p.length < ipAt + 24) return undefined
  const rk: MeshKey = {src: ip4(p, 76), dst: ip4(p, 80), sport: p.readUInt16BE(84), dport: p.readUInt16BE(86), proto, dir: REPLY}
  const look = meshReplyLookup(t, rk)
  const ct = look.ct
  if (!ct || ct.node !== W.NODE || ct.addr === '0.0.0.0') return {counters: look.counters}
  const tflags = proto === TCP && f.length > 47 ? f[47]! : 0
  // The backend's FIN (or UDP's clock) marks the entry found, embryonic or not, before the reply goes out.
  const m = used(ct, proto, tflags, FIN_BACKEND)
  const e = meshOut(f, ct, 'mesh_reply', fib, (extra) =>
    rewritten(f, [f32(26, ct.addr), f16(34, ct.port), ...extra], l4Sums(f, 14, proto, true)),
  )
  let counters = add(add(look.counters, m.counters), e.counters)
  if (tflags & RST) return {...e, counters: add(counters, one('mesh_ct_reset'))}
  const entries = (t2: Tracked) =>
    meshEntry('reply (marked)', look.syn ? t2.meshSyn(rk) : t2.meshCt(rk), {...noSeen(ct), flags: m.flags}, m.seen)
  return {...e, counters, entries}
}

/** Out of the underlay to the client as mesh_xdp.h sn_mesh_xdp_out sends it (the MACs the request came with when the FIB has none). */
function meshOut(
  f: Buffer,
  ct: MeshCt,
  counter: CounterName,
  fib: XdpCtx['fib'],
  check: (extra: Field[]) => (out: Buffer) => string | undefined,
): Expected {
  const out = fib(ip4(f, 30), f.readUInt16BE(16))
  if (out.ok)
    return {verdict: XDP_TX, counters: one(counter), label: counter, check: check([fmac(0, out.dmac), fmac(6, out.smac)])}
  const counters = add(one(counter), one(out.counter))
  if (ct.peer_mac === '00:00:00:00:00:00') return {verdict: XDP_DROP, counters, label: counter, check: () => undefined}
  return {verdict: XDP_TX, counters, label: counter, check: check([fmac(0, ct.peer_mac), fmac(6, ct.own_mac)])}
}

// ---- tc_task ------------------------------------------------------------------------------------

/** sn_tc_task, for a frame arriving on `ifindex` with no GSO. */
export function expectTc(w: World, p: Buffer, ifindex: number, t: Tracked): Expected {
  const dev = w.want.devices.get(ifindex)
  if (!dev) return tdrop('tc_unknown_device')
  if (p.length < 14) return tdrop('tc_drop_other')
  const proto = p.readUInt16BE(12)
  if (proto === P.ETH_P_ARP) return expectArp(w, p, dev)
  if (proto !== P.ETH_P_IP) return tdrop('tc_drop_other')
  if (p.length < 34 || p[14]! >> 4 !== 4) return tdrop('tc_drop_other')
  if (ip4(p, 26) !== dev.ip) return tdrop('tc_drop_other')
  const mtu = w.want.networks.get(dev.vni)?.mtu
  if (p.length > 14 + 576 && mtu && p.length - 14 > mtu) {
    if (!(p[20]! & 0x40)) return tdrop('tc_too_big')
    return {verdict: TC_ACT_REDIRECT, counters: one('tc_frag_needed'), label: 'tc_frag_needed', out: fragNeeded(p, mtu)}
  }
  let ep = endpoint(w, dev.vni, ip4(p, 30))
  if (!ep) return tdrop('tc_no_endpoint')
  let entries: Expected['entries']
  let counters: Counts = {}
  let fields: Field[] = []
  let sums: Sum[] = []
  if (ep.vip) {
    const lb = expectLb(w, p, dev, t)
    if ('verdict' in lb) return lb
    counters = lb.counters
    fields = lb.fields
    sums = lb.sums
    entries = lb.entries
    ep = endpoint(w, dev.vni, lb.backend)
    if (!ep || ep.vip) return {...tdrop('tc_no_endpoint', counters), entries}
  }
  const after = Buffer.from(p)
  for (const f of fields) f.bytes.copy(after, f.at)
  if (ep.local) {
    if (dev.backend) {
      const rev = expectRevNatTc(after, dev.vni, t)
      if (rev) {
        // Two rewrites in a row: the first's exact fields, the second's checked on its result.
        if (fields.length) throw new Error('a VIP rewrite and a reverse NAT in one run: not modelled')
        return {
          verdict: TC_ACT_REDIRECT,
          counters: add(add(counters, rev.counters), one('tc_local')),
          label: 'tc_local (rev nat)',
          check: rev.check(ep.mac),
        }
      }
    }
    return {
      entries,
      verdict: TC_ACT_REDIRECT,
      counters: add(counters, one('tc_local')),
      label: fields.length ? 'tc_local (vip)' : 'tc_local',
      check: rewritten(p, [...fields, fmac(0, ep.mac)], sums),
    }
  }
  const node = ep.nodeIp
  const vni = dev.vni
  return {
    entries,
    verdict: TC_ACT_REDIRECT,
    counters: add(counters, one('tc_encap')),
    label: fields.length ? 'tc_encap (vip)' : 'tc_encap',
    check: rewritten(p, fields, sums, {shift: 50, head: tcEncapHead(w, p, vni, node)}),
  }
}

/**
 * tc's encapsulation (fib.h sn_encap_out_tc): the outer Ethernet header from the FIB's next hop
 * (no length checked: the kernel holds the skb to the device's MTU, and tc_task let through
 * nothing over the network's); without an answer the frame's own, which redirect_neigh fills in later.
 */
function tcEncapHead(w: World, p: Buffer, vni: number, node: string) {
  const fib = fibOf(w)(node, 0)
  const [dmac, smac] = fib.ok ? [fib.dmac, fib.smac] : [macAt(p, 0), macAt(p, 6)]
  return (out: Buffer) => encapHead(p, W.NODE, node, vni, dmac, smac)(out)
}
const ZERO_MAC = '00:00:00:00:00:00'

function sameEntry<T extends object>(what: string, got: T | undefined, want: Partial<T>): string | undefined {
  if (!got) return `no ${what} entry, expected ${JSON.stringify(want)}`
  const pick = (o: Partial<T>) => JSON.stringify(Object.keys(want).map((k) => (o as Record<string, unknown>)[k]))
  return pick(got) === pick(want) ? undefined : `${what} entry ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`
}

const macAt = (b: Buffer, at: number) => [...b.subarray(at, at + 6)].map((x) => x.toString(16).padStart(2, '0')).join(':')

type LbGoOn = {backend: string; counters: Counts; fields: Field[]; sums: Sum[]; entries?: Expected['entries']}

/** tc_task.c sn_lb: a frame to a VIP. */
function expectLb(w: World, p: Buffer, dev: {vni: number; ip: string}, t: Tracked): Expected | LbGoOn {
  if (p.readUInt16BE(20) & 0x3fff) return tdrop('lb_fragment')
  if ((p[14]! & 15) !== 5) return tdrop('lb_drop_other')
  const proto = p[23]!
  if (proto === ICMP) return expectEcho(p)
  if ((proto !== TCP && proto !== UDP) || p.length < 38) return tdrop('lb_drop_other')
  const tflags = proto === TCP && p.length > 47 ? p[47]! : 0
  const ck = keyOf(p, 14, dev.vni, FWD)
  const vip = ck.dst
  let ct = t.ct(ck)
  if (ct && ct.flags & CT_SEEN_FIN && (tflags & (SYN | ACK)) === SYN) ct = undefined
  const csumFits = p.length >= 14 + 20 + (proto === TCP ? 18 : 8)
  if (!ct) {
    const rct = t.ct({...ck, dir: REPLY})
    if (rct && rct.flags & CT_HAIRPIN) {
      let counters = one('lb_hairpin')
      if (tflags) counters = add(counters, replySeen({...ck, dir: REPLY}, rct, tflags, t))
      if (!csumFits) return tdrop('lb_drop_other', counters)
      return {backend: ck.src, counters, fields: [f32(26, ck.dst), f32(30, ck.src)], sums: l4Sums(p, 14, proto)}
    }
  }
  const svc = w.want.services?.get(`${dev.vni}/${vip}`)
  let counters: Counts = {}
  let backend: string
  let hairpin: boolean
  let entries: Expected['entries']
  if (ct) {
    backend = ct.addr
    hairpin = (ct.flags & CT_HAIRPIN) !== 0
    const rk = replyKey(ck, ct)
    if (!t.ct(rk)) counters = add(counters, one('lb_reply_restored'))
    if (tflags & RST) counters = add(counters, one('lb_ct_reset'))
  } else {
    const table = w.tables.get(`${dev.vni}/${vip}`)
    if (!svc || !svc.backends.length || !table) return lbRefuse(p, proto, 'lb_no_backend')
    const pick = table[lbSlot(ck.src, vip, ck.sport, ck.dport, proto, table.length)]!
    if (pick === '0.0.0.0') return lbRefuse(p, proto, 'lb_no_backend')
    backend = pick
    hairpin = backend === ck.src
    counters = one('lb_new_flow')
    const flags = hairpin ? CT_HAIRPIN : 0
    const rk = replyKey(ck, {addr: backend, table: 0, flags, seen: 0} as SnCt)
    entries = (t2) =>
      sameEntry('VIP forward', t2.ct(ck), {addr: backend, table: svc.tableId, flags}) ??
      sameEntry('VIP reply', t2.ct(rk), {addr: vip, table: 0, flags})
  }
  const fields: Field[] = []
  if (hairpin) {
    counters = add(counters, one('lb_hairpin'))
    if (!csumFits) return tdrop('lb_drop_other', counters)
    fields.push(f32(26, vip))
  }
  if (!csumFits) return tdrop('lb_drop_other', counters)
  fields.push(f32(30, backend))
  return {backend, counters, fields, sums: l4Sums(p, 14, proto), entries}
}

function replyKey(fk: CtKey, fwd: SnCt): CtKey {
  const hair = fwd.flags & CT_HAIRPIN
  return {
    vni: fk.vni,
    src: hair ? fk.src : fwd.addr,
    dst: hair ? fk.dst : fk.src,
    sport: fk.dport,
    dport: fk.sport,
    proto: fk.proto,
    dir: REPLY,
  }
}

/** A flow to a VIP that cannot go on: TCP gets a RST back (tc_task.c sn_tcp_reset), the rest is dropped. */
function lbRefuse(p: Buffer, proto: number, c: CounterName): Expected {
  if (proto !== TCP) return tdrop(c)
  const t = 34
  if (p.length < t + 20 || p[t + 13]! & RST) return tdrop(c)
  const hadAck = (p[t + 13]! & ACK) !== 0
  const syn = (p[t + 13]! & SYN) !== 0 ? 1 : 0
  const fin = p[t + 13]! & 0x01
  const payload = (p.readUInt16BE(16) - 20 - (p[t + 12]! >> 4) * 4 + syn + fin) >>> 0
  const tcp = Buffer.alloc(20)
  tcp.writeUInt16BE(p.readUInt16BE(t + 2), 0)
  tcp.writeUInt16BE(p.readUInt16BE(t), 2)
  if (hadAck) p.copy(tcp, 4, t + 8, t + 12)
  else tcp.writeUInt32BE((p.readUInt32BE(t + 4) + payload) >>> 0, 8)
  tcp[12] = 5 << 4
  tcp[13] = RST | (hadAck ? 0 : ACK)
  tcp.writeUInt16BE(P.l4Checksum(ip4(p, 30), ip4(p, 26), TCP, tcp), 16)
  const ip = P.ipv4Packet({src: ip4(p, 30), dst: ip4(p, 26), protocol: TCP, ttl: 64, id: 0, fragOff: 0x4000}, tcp)
  const out = Buffer.concat([p.subarray(6, 12), p.subarray(0, 6), Buffer.from([0x08, 0x00]), ip])
  return {verdict: TC_ACT_REDIRECT, counters: one(c), label: `${c} (RST)`, out}
}

/** ICMP echo to a VIP: answered in place (tc_task.c sn_lb_echo). */
function expectEcho(p: Buffer): Expected {
  if (p.length < 42 || p[34] !== 8 || p[35] !== 0) return tdrop('lb_drop_other')
  const want = Buffer.from(p)
  p.copy(want, 0, 6, 12)
  p.copy(want, 6, 0, 6)
  p.copy(want, 26, 30, 34)
  p.copy(want, 30, 26, 30)
  want[22] = 64
  want.writeUInt16BE(0, 24)
  want.writeUInt16BE(P.inetChecksum(want.subarray(14, 34)), 24)
  want[34] = 0
  return {
    verdict: TC_ACT_REDIRECT,
    counters: one('lb_echo'),
    label: 'lb_echo',
    check: rewritten(p, [...fieldsOf(want, 0, 34), f16(34, 0)], [{at: 36, res: icmpRes(34)}]),
  }
}
const fieldsOf = (b: Buffer, from: number, to: number): Field[] => [{at: from, bytes: Buffer.from(b.subarray(from, to))}]

/** tc_task.c sn_rev_nat_tc on `f` (what goes to a local task from a backend task). */
function expectRevNatTc(
  f: Buffer,
  vni: number,
  t: Tracked,
): {counters: Counts; check: (mac: string) => (o: Buffer) => string | undefined} | undefined {
  if (f.length < 38 || (f[14]! & 15) !== 5 || f.readUInt16BE(20) & 0x3fff) return undefined
  const proto = f[23]!
  if (proto === ICMP) {
    const r = expectRevNatIcmp(f, 14, vni, t)
    if (!r) return undefined
    const k = quoteOf(f, 14)!
    const ct = t.ct({
      vni,
      src: ip4(f, k + 16),
      dst: ip4(f, k + 12),
      sport: f.readUInt16BE(k + 22),
      dport: f.readUInt16BE(k + 20),
      proto: f[k + 9]!,
      dir: REPLY,
    })!
    return {counters: r.counters, check: (mac) => quoteRewrite(f, 14, k, false, ct.addr, f.readUInt16BE(k + 22), [fmac(0, mac)])}
  }
  if (proto !== TCP && proto !== UDP) return undefined
  const k = keyOf(f, 14, vni, REPLY)
  const ct = t.ct(k)
  if (!ct || ct.flags & CT_HAIRPIN) return undefined
  if (f.length < 14 + 20 + (proto === TCP ? 18 : 8)) return undefined
  const tflags = proto === TCP && f.length > 47 ? f[47]! : 0
  return {
    counters: add(one('lb_rev_nat'), replySeen(k, ct, tflags, t)),
    check: (mac) => rewritten(f, [f32(26, ct.addr), fmac(0, mac)], l4Sums(f, 14, proto)),
  }
}

function expectArp(w: World, p: Buffer, dev: {vni: number; ip: string}): Expected {
  if (p.length < 42) return tdrop('tc_drop_other')
  const a = 14
  if (
    p.readUInt16BE(a) !== 1 ||
    p.readUInt16BE(a + 2) !== P.ETH_P_IP ||
    p[a + 4] !== 6 ||
    p[a + 5] !== 4 ||
    p.readUInt16BE(a + 6) !== 1
  )
    return tdrop('tc_drop_other')
  const spa = ip4(p, a + 14)
  const tpa = ip4(p, a + 24)
  if (tpa === spa || tpa === dev.ip) return tdrop('tc_drop_other')
  const ep = endpoint(w, dev.vni, tpa)
  if (!ep) return tdrop('tc_no_endpoint')
  const out = Buffer.from(p)
  out.writeUInt16BE(2, a + 6)
  p.copy(out, a + 18, a + 8, a + 14) // tha = old sha
  p.copy(out, a + 24, a + 14, a + 18) // tpa = old spa
  P.mac(ep.mac).copy(out, a + 8) // sha = the endpoint's MAC
  P.ipv4(tpa).copy(out, a + 14) // spa = the asked address
  p.copy(out, 0, 6, 12) // back to the asker
  P.mac(ep.mac).copy(out, 6)
  return {verdict: TC_ACT_REDIRECT, counters: one('tc_arp_reply'), label: 'tc_arp_reply', out}
}

/** RFC 792/1191 "fragmentation needed" from the frame's destination back to its source, quoting 548 bytes. */
export function fragNeeded(p: Buffer, mtu: number): Buffer {
  const icmp = Buffer.concat([Buffer.from([3, 4, 0, 0, 0, 0, mtu >> 8, mtu & 0xff]), p.subarray(14, 14 + QUOTE)])
  icmp.writeUInt16BE(P.inetChecksum(icmp), 2)
  const ip = P.ipv4Packet({src: ip4(p, 30), dst: ip4(p, 26), protocol: ICMP, ttl: 64, id: 0, fragOff: 0x4000}, icmp)
  return Buffer.concat([p.subarray(6, 12), p.subarray(0, 6), Buffer.from([0x08, 0x00]), ip])
}

// ---- tc_gw --------------------------------------------------------------------------------------

/** sn_tc_gw, for a frame arriving on `ifindex` (a task's gateway veth, or a device with no entry). */
export function expectGw(w: World, p: Buffer, ifindex: number, t: Tracked): Expected {
  const next: Expected = {verdict: TC_ACT_UNSPEC, counters: {}, label: 'gw next'}
  if (p.length < 14 || p.readUInt16BE(12) !== P.ETH_P_IP) return next
  if (gwToNodePort(w, p)) return tdrop('gw_node_port')
  if (p.length < 34) return next
  const gw = w.want.gateways?.get(ifindex)
  const from = ip4(p, 26)
  if (gw && from !== gw.gwIp && (!gw.ingressIp || from !== gw.ingressIp)) return tdrop('gw_spoofed')
  const proto = p[23]!
  if (gw && proto === ICMP) return expectGwIcmp(w, p, gw, t)
  if (p.length < 38 || !plain(p, 14) || (proto !== TCP && proto !== UDP)) return next
  if (!gw) {
    const ingress = w.want.mesh?.ingressVni
    const net = ingress ? w.want.networks.get(ingress) : undefined
    if (net?.ingress && inSubnet(from, net.subnet, net.prefixLen)) return tdrop('mesh_untracked')
    return next
  }
  let rk: MeshKey = {src: from, dst: ip4(p, 30), sport: p.readUInt16BE(34), dport: p.readUInt16BE(36), proto, dir: REPLY}
  let look = meshReplyLookup(t, rk)
  let before = look.counters
  if (!look.ct && from === gw.gwIp && gw.ingressIp) {
    rk = {...rk, src: gw.ingressIp}
    look = meshReplyLookup(t, rk)
    before = add(before, look.counters)
  }
  const ct = look.ct
  const tflags = proto === TCP && p.length > 47 ? p[47]! : 0
  if (!ct) return withCounts(gw.ingressIp && from === gw.ingressIp ? tdrop('mesh_untracked') : next, before)
  // The backend's FIN (or UDP's clock) marks the entry found before anything else is decided (tc_gw.c).
  const m = used(ct, proto, tflags, FIN_BACKEND)
  before = add(before, m.counters)
  const foundAt = rk
  const entries =
    tflags & RST
      ? undefined
      : (t2: Tracked) =>
          meshEntry(
            'reply (marked)',
            look.syn ? t2.meshSyn(foundAt) : t2.meshCt(foundAt),
            {...noSeen(ct), flags: m.flags},
            m.seen,
          )
  const done = (e: Expected): Expected => ({...withCounts(e, before), entries})
  const client = rk.dst
  const csumFits = p.length >= 14 + 20 + (proto === TCP ? 18 : 8)
  if (ct.node === W.NODE) {
    if (ct.addr === '0.0.0.0' || !csumFits) return done(tdrop('mesh_drop'))
    let counters = one('mesh_reply')
    if (tflags & RST) counters = add(counters, one('mesh_ct_reset'))
    const fields = [f32(26, ct.addr), f16(34, ct.port)]
    return done(gwOut(w, p, ct.addr, client, counters, fields, l4Sums(p, 14, proto)))
  }
  if (ct.addr === '0.0.0.0') return done(tdrop('mesh_drop'))
  const mtu = w.want.networks.get(ct.vni)?.mtu ?? 0
  if (mtu && p.length - 14 > mtu) {
    if (!(p[20]! & 0x40)) return done(tdrop('mesh_too_big'))
    return done({
      verdict: TC_ACT_REDIRECT,
      counters: one('mesh_frag_needed'),
      label: 'mesh_frag_needed (gw)',
      out: fragNeeded(p, mtu),
    })
  }
  let counters: Counts = add(before, tflags & RST ? one('mesh_ct_reset') : {})
  const fields: Field[] = []
  if (from !== ct.addr) {
    if (!csumFits) return {...tdrop('mesh_drop', counters), entries}
    fields.push(f32(26, ct.addr))
  }
  const mss = mssField(p, proto, mtu - 40)
  if (mss) fields.push(mss)
  fields.push(fmac(6, W.macOfIp(ct.addr)), fmac(0, W.macOfIp(client)))
  counters = add(counters, one('mesh_return'))
  const node = ct.node
  const vni = ct.vni
  return {
    verdict: TC_ACT_REDIRECT,
    entries,
    counters,
    label: 'mesh_return',
    check: rewritten(p, fields, l4Sums(p, 14, proto), {shift: 50, head: gwEncapHead(p, fields, vni, node)}),
  }
}

function gwEncapHead(p: Buffer, fields: Field[], vni: number, node: string) {
  const inner = Buffer.from(p)
  for (const f of fields) f.bytes.copy(inner, f.at)
  return (out: Buffer) => encapHead(inner, W.NODE, node, vni, macAt(inner, 0), macAt(inner, 6))(out)
}

/** Out of the underlay to the client (tc_gw.c sn_gw_out): the FIB's MACs, or the kernel's neighbour resolution. */
function gwOut(w: World, p: Buffer, src: string, client: string, counters: Counts, fields: Field[], sums: Sum[]): Expected {
  const out = fibOf(w)(client, p.length - 14)
  if (!out.ok) {
    return {
      verdict: TC_ACT_REDIRECT,
      counters: add(counters, one('mesh_fib_fail')),
      label: 'mesh_reply (neigh)',
      check: rewritten(p, fields, sums),
    }
  }
  void src
  return {
    verdict: TC_ACT_REDIRECT,
    counters,
    label: 'mesh_reply',
    check: rewritten(p, [...fields, fmac(0, out.dmac), fmac(6, out.smac)], sums),
  }
}

function inSubnet(a: string, subnet: string, len: number): boolean {
  const n = (s: string) => s.split('.').reduce((x, b) => x * 256 + Number(b), 0)
  const m = len === 0 ? 0 : 2 ** 32 - 2 ** (32 - len)
  return (n(a) & m) >>> 0 === (n(subnet) & m) >>> 0
}

/** tc_gw.c sn_gw_to_node_port: a node's data-path or gossip port, on any node's address or one of this node's. */
function gwToNodePort(w: World, p: Buffer): boolean {
  if (p.length < 34) return false
  const proto = p[23]!
  const ihl = (p[14]! & 15) * 4
  if ((proto !== TCP && proto !== UDP) || p.readUInt16BE(20) & 0x1fff || ihl < 20) return false
  if (p.length < 14 + ihl + 4) return false
  const dport = p.readUInt16BE(14 + ihl + 2)
  const daddr = ip4(p, 30)
  const isPort = (gossip: number) => (proto === UDP && dport === W.VXLAN_PORT) || (gossip !== 0 && dport === gossip)
  const node = w.want.mesh?.nodes.get(daddr)
  if (node !== undefined) return isPort(node)
  if (!isPort(w.want.mesh?.nodes.get(W.NODE) ?? 0)) return false
  // The FIB: forwarded away only to another address of a link of the node (the underlay's, the gateway bridge's), not its own.
  const own = [W.NODE, W.SECOND, '172.30.0.255', '172.30.0.0', W.GW_BRIDGE, '172.18.255.255', '172.18.0.0']
  return !((daddr.startsWith('172.30.0.') || daddr.startsWith('172.18.')) && !own.includes(daddr))
}

/** tc_gw.c sn_gw_icmp: an ICMP error the task sent about a client's request to a published port. */
function expectGwIcmp(w: World, p: Buffer, gw: {gwIp: string; ingressIp?: string}, t: Tracked): Expected {
  const next: Expected = {verdict: TC_ACT_UNSPEC, counters: {}, label: 'gw next'}
  if (!plain(p, 14)) return next
  const q = quoteOf(p, 14)
  if (q === undefined) return next
  const qsrc = ip4(p, q + 12)
  const qdst = ip4(p, q + 16)
  if (qdst !== ip4(p, 26) || qsrc !== ip4(p, 30) || (qdst !== gw.gwIp && qdst !== gw.ingressIp)) return next
  const rk: MeshKey = {
    src: qdst,
    dst: qsrc,
    sport: p.readUInt16BE(q + 22),
    dport: p.readUInt16BE(q + 20),
    proto: p[q + 9]!,
    dir: REPLY,
  }
  const look = meshReplyLookup(t, rk)
  const ct = look.ct
  if (!ct || ct.addr === '0.0.0.0') return withCounts(next, look.counters)
  const e = gwIcmpFound(w, p, q, rk, ct)
  return withCounts(e, look.counters)
}

function gwIcmpFound(w: World, p: Buffer, q: number, rk: MeshKey, ct: MeshCt): Expected {
  const qdst = rk.src
  if (ct.node === W.NODE) {
    const out = fibOf(w)(rk.dst, p.length - 14)
    const extra = out.ok ? [fmac(0, out.dmac), fmac(6, out.smac)] : []
    const counters = add(one('mesh_icmp_to_client'), out.ok ? {} : one('mesh_fib_fail'))
    return {
      verdict: TC_ACT_REDIRECT,
      counters,
      label: 'mesh_icmp_to_client (gw)',
      check: quoteRewrite(p, 14, q, false, ct.addr, ct.port, extra),
    }
  }
  if (qdst !== ct.addr) return tdrop('mesh_drop')
  const inner = Buffer.from(p)
  P.mac(W.macOfIp(ct.addr)).copy(inner, 6)
  P.mac(W.macOfIp(rk.dst)).copy(inner, 0)
  const want = Buffer.concat([Buffer.alloc(50), inner])
  const head = encapHead(inner, W.NODE, ct.node, ct.vni, macAt(inner, 0), macAt(inner, 6))
  return {
    verdict: TC_ACT_REDIRECT,
    counters: one('mesh_return'),
    label: 'mesh_return (icmp)',
    check: (out) => head(out) ?? (out.subarray(50).equals(want.subarray(50)) ? undefined : 'inner frame differs'),
  }
}
