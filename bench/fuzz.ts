/**
 * Fuzzes every program with random and mutated packets through
 * BPF_PROG_TEST_RUN, with the maps filled as on a node: each run's verdict,
 * counter and output are held to the TypeScript oracle (fuzz-oracle.ts), so a
 * verdict other than drop, pass or a redirect the maps justify, a missed or
 * double count, or a malformed output is reported with the packet that caused it.
 *
 *   node --import tsx bench/fuzz.ts [--count 1000000] [--seed N]
 *
 * The packets: well-formed VXLAN and task frames of every kind the programs
 * know, then mutated: truncated anywhere, bytes flipped, lying lengths, IP
 * options, VLAN tags, fragments, VXLAN with odd flags and reserved bits,
 * oversized frames, random garbage. test/bpf/fuzz.test.ts runs a short one.
 */
import {pathToFileURL} from 'node:url'
import {BpfError, COUNTER_NAMES, type CounterName, u32, u64} from '../src/bpf/index.js'
import {Loaded, XDP_PASS, skbCtx} from '../test/bpf/harness.js'
import * as P from '../test/bpf/packets.js'
import {type Endpoint, type Expected, type World, expectTc, expectXdp} from './fuzz-oracle.js'

export interface FuzzResult {
  seed: number
  runs: number
  /** Packets the kernel refused before any program ran (an IPv4/IPv6 skb shorter than its header). */
  refusedByKernel: number
  /** `${program} ${counter}` -> runs */
  outcomes: Record<string, number>
  mismatches: string[]
}

const NODE = '172.30.0.11'
const PEER = '172.30.0.12'
const THIRD = '172.30.0.13'
const STRANGER = '172.30.0.99'
const VNI = 4097
const VNI2 = 4098
const DEV = 1 // lo: a device that exists, for the redirects of a test run
const UNKNOWN_DEV = 2

const ep = (vni: number, ip: string, nodeIp: string, local: boolean): Endpoint => ({
  vni,
  ip,
  nodeIp,
  ifindex: local ? DEV : 0,
  mac: `02:42:${ip
    .split('.')
    .map((x) => Number(x).toString(16).padStart(2, '0'))
    .join(':')}`,
  local,
})

export const WORLD: World = {
  nodeIp: NODE,
  port: 4789,
  underlayIfindex: DEV,
  networks: new Map([
    [VNI, 1450],
    [VNI2, 1400],
  ]),
  endpoints: [
    ep(VNI, '10.0.1.4', NODE, true), // the task behind DEV
    ep(VNI, '10.0.1.5', NODE, true),
    ep(VNI, '10.0.1.9', PEER, false),
    ep(VNI, '10.0.1.10', PEER, false),
    ep(VNI, '10.0.1.13', THIRD, false),
    ep(VNI2, '10.0.2.4', NODE, true),
    ep(VNI2, '10.0.2.9', PEER, false),
  ],
  devices: new Map([[DEV, {vni: VNI, ip: '10.0.1.4'}]]),
}

/** xorshift32: small, seedable, and the same sequence in every run with the same seed. */
class Rng {
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

const ADDRS = ['10.0.1.4', '10.0.1.5', '10.0.1.9', '10.0.1.10', '10.0.1.13', '10.0.1.77', '10.0.2.4', '10.0.2.9', '8.8.8.8']
const NODES = [NODE, PEER, THIRD, STRANGER]

function l4(r: Rng, src: string, dst: string, size: number, df: boolean): Buffer {
  const payload = r.bytes(Math.max(0, size))
  const proto = r.pick([P.IPPROTO_UDP, P.IPPROTO_TCP, P.IPPROTO_ICMP, 47])
  const body =
    proto === P.IPPROTO_UDP
      ? P.udp({srcPort: 1024 + r.int(60000), dstPort: r.pick([53, 80, 8080, 4789])}, payload)
      : proto === P.IPPROTO_TCP
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

/** A packet on the underlay: mostly VXLAN to the node, sometimes something else. */
function underlayPacket(r: Rng): Buffer {
  const kind = r.int(8)
  const outer = {outerSrcMac: '02:00:ac:1e:00:0c', outerDstMac: '02:00:ac:1e:00:0b'}
  if (kind < 2) {
    // What a peer node sends: one of its tasks to one of ours (then maybe mutated).
    const src = r.pick(['10.0.1.9', '10.0.1.10'])
    const dst = r.pick(['10.0.1.4', '10.0.1.5', '10.0.1.77'])
    const inner = P.ethernet(
      {dst: '02:00:00:00:00:ee', src: '02:42:0a:00:01:09', type: P.ETH_P_IP},
      l4(r, src, dst, r.int(1400), r.chance(0.5)),
    )
    return P.vxlanFrame({...outer, outerSrc: PEER, outerDst: NODE, vni: VNI}, inner)
  }
  if (kind < 5) {
    // A well-formed VXLAN packet whose fields are drawn from what the maps know, and a little beyond.
    const flags = r.chance(0.85) ? 0x08 : r.int(256)
    const pkt = P.vxlanFrame(
      {
        ...outer,
        outerSrc: r.pick(NODES),
        outerDst: r.chance(0.9) ? NODE : PEER,
        dstPort: r.chance(0.9) ? 4789 : r.pick([4790, 8472, 53]),
        vni: r.pick([VNI, VNI, VNI, VNI2, 4242, 0, 0xffffff]),
        vxlanFlags: flags,
      },
      innerFrame(r),
    )
    if (r.chance(0.1)) pkt[43 + r.int(3)] = r.u32() & 0xff // reserved bits after the flags
    if (r.chance(0.1)) pkt[49] = r.u32() & 0xff // the reserved byte after the VNI
    return pkt
  }
  if (kind === 5)
    return P.udpFrame(
      {srcMac: '02:00:ac:1e:00:0c', dstMac: '02:00:ac:1e:00:0b', src: PEER, dst: NODE, dstPort: 7946},
      14 + 28 + r.int(200),
    )
  if (kind === 6)
    return P.ethernet(
      {dst: 'ff:ff:ff:ff:ff:ff', src: '02:00:ac:1e:00:0c', type: r.pick([P.ETH_P_ARP, P.ETH_P_IPV6, 0x8100, 0x88cc])},
      r.bytes(r.int(120)),
    )
  return r.bytes(14 + r.int(300))
}

/** A frame from a task's device. */
function taskFrame(r: Rng): Buffer {
  const kind = r.int(10)
  const src = r.chance(0.85) ? '10.0.1.4' : r.pick(ADDRS)
  const dst = r.pick(ADDRS)
  const dstMac = '02:42:0a:00:01:09'
  if (kind < 2) {
    return P.ethernet(
      {dst: 'ff:ff:ff:ff:ff:ff', src: '02:42:0a:00:01:04', type: P.ETH_P_ARP},
      P.arp({
        op: r.chance(0.9) ? 1 : r.int(4),
        sha: '02:42:0a:00:01:04',
        spa: r.chance(0.9) ? src : '0.0.0.0',
        tha: '00:00:00:00:00:00',
        tpa: dst,
      }),
    )
  }
  if (kind === 2) {
    // Around the MTU: frames that fit, and frames that do not, with and without DF.
    const size = r.pick([1400, 1428, 1450, 1451, 1460, 1500, 2000, 3000]) - 20 - 8 + r.int(3) - 1
    return P.ethernet({dst: dstMac, src: '02:42:0a:00:01:04', type: P.ETH_P_IP}, l4(r, src, dst, size, r.chance(0.7)))
  }
  if (kind === 3)
    return P.ethernet(
      {dst: dstMac, src: '02:42:0a:00:01:04', type: r.pick([P.ETH_P_IPV6, 0x8100, 0x88a8, 0x0000])},
      r.bytes(40 + r.int(100)),
    )
  if (kind === 4) return r.bytes(14 + r.int(200))
  return P.ethernet({dst: dstMac, src: '02:42:0a:00:01:04', type: P.ETH_P_IP}, l4(r, src, dst, r.int(300), r.chance(0.5)))
}

/** Breaks a packet in one of the ways the wire does, or leaves it alone. */
function mutate(r: Rng, p: Buffer, ipAt: number): Buffer {
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

/** True when BPF_PROG_TEST_RUN refuses an skb before the program: its IPv4 or IPv6 header is cut. */
function kernelRefusesSkb(p: Buffer): boolean {
  const proto = p.readUInt16BE(12)
  return (proto === P.ETH_P_IP && p.length < 14 + 20) || (proto === P.ETH_P_IPV6 && p.length < 14 + 40)
}

export function fuzz(opts: {count: number; seed?: number; log?: (s: string) => void}): FuzzResult {
  const seed = opts.seed ?? Date.now() & 0x7fffffff
  const r = new Rng(seed)
  const pinRoot = `/sys/fs/bpf/swarmnet-fuzz-${process.pid}`
  const loaded: Loaded[] = []
  const res: FuzzResult = {seed, runs: 0, refusedByKernel: 0, outcomes: {}, mismatches: []}
  try {
    const xdp = new Loaded(pinRoot, 'xdp_underlay.o', 'sn_xdp_underlay')
    loaded.push(xdp)
    const tc = new Loaded(pinRoot, 'tc_task.o', 'sn_tc_task', {keepPins: true})
    loaded.push(tc)
    const peer = new Loaded(`${pinRoot}-peer`, 'xdp_task_peer.o', 'sn_xdp_task_peer')
    loaded.push(peer)
    xdp.setConfig({nodeIp: WORLD.nodeIp, vxlanPort: WORLD.port, underlayIfindex: WORLD.underlayIfindex})
    for (const [vni, mtu] of WORLD.networks) xdp.addNetwork(vni, '10.0.0.0', 16, mtu)
    for (const e of WORLD.endpoints) xdp.addEndpoint(e)
    for (const [ifindex, d] of WORLD.devices) xdp.addDevice(ifindex, d.vni, d.ip)

    const stats = xdp.map('sn_stats')
    const counterOf = (c: CounterName): bigint => {
      const slots = stats.lookupPerCpu(u32.encode(COUNTER_NAMES.indexOf(c))) ?? []
      return slots.reduce((a, b) => a + u64.decode(b), 0n)
    }
    const total = (): bigint => COUNTER_NAMES.reduce((a, c) => a + counterOf(c), 0n)
    const totalBefore = total()
    let counted = 0
    const ctxDev = skbCtx(DEV)
    const ctxUnknown = skbCtx(UNKNOWN_DEV)

    const judge = (prog: string, pkt: Buffer, want: Expected, run: () => {retval: number; data: Buffer}, counts: boolean) => {
      const before = counts ? counterOf(want.counter) : 0n
      let got: {retval: number; data: Buffer}
      try {
        got = run()
      } catch (e) {
        // The kernel's test run refuses an skb whose IPv4/IPv6 header is cut before the program
        // runs (a real skb from a veth reaches it, and the short header fails sn_fits: dropped).
        if (e instanceof BpfError && e.errno === 22 && prog === 'tc_task' && kernelRefusesSkb(pkt)) {
          res.refusedByKernel++
          return
        }
        throw e
      }
      res.runs++
      const key = `${prog} ${counts ? want.counter : 'pass'}`
      res.outcomes[key] = (res.outcomes[key] ?? 0) + 1
      const problems: string[] = []
      if (got.retval !== want.verdict) problems.push(`verdict ${got.retval}, expected ${want.verdict} (${want.counter})`)
      if (counts) {
        counted++
        const moved = counterOf(want.counter) - before
        if (moved !== 1n) problems.push(`${want.counter} moved by ${moved}`)
      }
      if (got.retval === want.verdict) {
        const expectOut = want.out ?? (want.check ? undefined : pkt)
        if (expectOut && !got.data.equals(expectOut))
          problems.push(`output differs:\n  got  ${got.data.toString('hex')}\n  want ${expectOut.toString('hex')}`)
        const bad = want.check?.(got.data)
        if (bad) problems.push(bad)
      }
      if (problems.length && res.mismatches.length < 20)
        res.mismatches.push(`${prog} on ${pkt.toString('hex')}: ${problems.join('; ')}`)
    }

    // `count` packets reach a program or the kernel's refusal; oversized ones (a test run takes one page) are drawn again.
    for (let i = 0; res.runs + res.refusedByKernel < opts.count; i++) {
      const which = r.int(9)
      if (which < 4) {
        const pkt = r.chance(0.6) ? mutate(r, underlayPacket(r), 14) : underlayPacket(r)
        if (pkt.length > 3000) continue
        judge('xdp_underlay', pkt, expectXdp(WORLD, pkt), () => xdp.run(pkt), true)
      } else if (which < 8) {
        const pkt = r.chance(0.5) ? mutate(r, taskFrame(r), 14) : taskFrame(r)
        if (pkt.length > 3000) continue
        const unknown = r.chance(0.05)
        judge(
          'tc_task',
          pkt,
          expectTc(WORLD, pkt, unknown ? UNKNOWN_DEV : DEV),
          () => tc.run(pkt, {ctx: unknown ? ctxUnknown : ctxDev}),
          true,
        )
      } else {
        const pkt = mutate(r, r.chance(0.5) ? underlayPacket(r) : taskFrame(r), 14)
        if (pkt.length > 3000) continue
        judge('xdp_task_peer', pkt, {verdict: XDP_PASS, counter: 'xdp_pass'}, () => peer.run(pkt), false)
      }
      if (opts.log && (i + 1) % 100_000 === 0) opts.log(`${res.runs} runs, ${res.mismatches.length} mismatches`)
    }
    const moved = total() - totalBefore
    if (moved !== BigInt(counted))
      res.mismatches.push(`counters moved ${moved} times in ${counted} counted runs: some run counted twice or not at all`)
    return res
  } finally {
    for (const l of loaded.reverse()) l.close()
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const arg = (name: string) => {
    const i = process.argv.indexOf(name)
    return i > 0 ? Number(process.argv[i + 1]) : undefined
  }
  const started = Date.now()
  const res = fuzz({count: arg('--count') ?? 1_000_000, seed: arg('--seed'), log: (s) => console.error(s)})
  console.log(
    `fuzz: seed ${res.seed}, ${res.runs} program runs (+${res.refusedByKernel} refused by the kernel before the program) in ${((Date.now() - started) / 1000).toFixed(0)} s`,
  )
  for (const [k, n] of Object.entries(res.outcomes).sort()) console.log(`  ${k.padEnd(36)} ${n}`)
  console.log(
    res.mismatches.length
      ? `MISMATCHES:\n${res.mismatches.join('\n')}`
      : 'no mismatches: every verdict, count and output as the maps say',
  )
  process.exit(res.mismatches.length ? 1 : 0)
}
