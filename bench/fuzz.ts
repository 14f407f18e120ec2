/**
 * Fuzzes every packet program with random and mutated packets through
 * BPF_PROG_TEST_RUN, on a node whose maps the agent's own code wrote
 * (fuzz-world.ts): sn_xdp_underlay (the overlay, the routing mesh's requests,
 * forwarded requests, replies and ICMP errors, probes), sn_tc_task (the
 * overlay, VIPs: new and tracked flows, hairpins, reverse NAT), sn_tc_gw (mesh
 * replies, node ports, spoofed sources), sn_tc_dns (fuzz-dns.ts) and
 * sn_xdp_task_peer. Each run's verdict, counters and output are held to the
 * TypeScript oracle (fuzz-oracle.ts), so a verdict the maps do not justify, a
 * missed or extra count, a wrong rewrite or a broken checksum is reported with
 * the packet that caused it. The socket programs are fuzzed through their
 * syscalls by fuzz-sock.ts.
 *
 *   node --import tsx bench/fuzz.ts [--count 1000000] [--seed N] [--json]
 *
 * It makes a network namespace of its own (the FIB lookups of the mesh need
 * known routes and neighbours), runs itself inside it, and deletes it.
 * test/bpf/fuzz.test.ts runs a short one.
 */
import {spawnSync} from 'node:child_process'
import {pathToFileURL} from 'node:url'
import {BpfError, COUNTER_NAMES, type CounterName, snCt, snCtKey, snMeshCt, snMeshCtKey, u64} from '../src/bpf/index.js'
import {Loaded, XDP_PASS, skbCtx} from '../test/bpf/harness.js'
import * as P from '../test/bpf/packets.js'
import {
  type Counts,
  type Expected,
  type MeshCt,
  type Tracked,
  expectGw,
  expectTc,
  expectXdp,
  startClock,
  TooClose,
  world,
} from './fuzz-oracle.js'
import * as G from './fuzz-packets.js'
import * as W from './fuzz-world.js'
import {dnsFuzzer} from './fuzz-dns.js'

export interface FuzzResult {
  seed: number
  runs: number
  /** Packets the kernel refused before any program ran (an IPv4/IPv6 skb shorter than its header). */
  refusedByKernel: number
  /** Packets not run: the oracle could not tell a mesh lifetime ending within the run's clock window. */
  tooClose: number
  /** `${program} ${outcome}` -> runs */
  outcomes: Record<string, number>
  /** The first mismatches, with their packets. */
  mismatches: string[]
  /** Every mismatch, by outcome (`${program} ${label}`). */
  mismatchCounts: Record<string, number>
  /** Every counter the oracle expected to move, summed over the runs: which paths the run took. */
  counted: Partial<Record<CounterName, number>>
  seconds: number
}

/** Counters moved by timers, not by the run that is judged: left out of each run's comparison. */
const TIMER_COUNTERS = new Set<CounterName>(['lb_ct_closed'])

/** True when BPF_PROG_TEST_RUN refuses an skb before the program: its IPv4 or IPv6 header is cut. */
function kernelRefusesSkb(p: Buffer): boolean {
  const proto = p.readUInt16BE(12)
  return (proto === P.ETH_P_IP && p.length < 14 + 20) || (proto === P.ETH_P_IPV6 && p.length < 14 + 40)
}

/** struct xdp_md for a frame of `len` bytes arriving on the underlay. */
function xdpCtx(len: number, ifindex: number): Buffer {
  const c = Buffer.alloc(24)
  c.writeUInt32LE(len, 4)
  c.writeUInt32LE(ifindex, 12)
  return c
}

/** Runs inside the namespace fuzz-world.ts makes. */
export function fuzzInside(opts: {count: number; seed: number; log?: (s: string) => void}): FuzzResult {
  const started = Date.now()
  const r = new G.Rng(opts.seed)
  const pinRoot = `/sys/fs/bpf/swarmnet-fuzz-${process.pid}`
  const loaded: Loaded[] = []
  const res: FuzzResult = {
    seed: opts.seed,
    runs: 0,
    refusedByKernel: 0,
    tooClose: 0,
    outcomes: {},
    mismatches: [],
    mismatchCounts: {},
    counted: {},
    seconds: 0,
  }
  try {
    const xdp = new Loaded(pinRoot, 'xdp_underlay.o', 'sn_xdp_underlay')
    loaded.push(xdp)
    const tc = new Loaded(pinRoot, 'tc_task.o', 'sn_tc_task', {keepPins: true})
    loaded.push(tc)
    const gw = new Loaded(pinRoot, 'tc_gw.o', 'sn_tc_gw', {keepPins: true})
    loaded.push(gw)
    const peer = new Loaded(`${pinRoot}-peer`, 'xdp_task_peer.o', 'sn_xdp_task_peer')
    loaded.push(peer)
    const ix = W.ifindexes()
    const want = W.desired(ix)
    W.writeMaps(xdp, want, ix)
    const w = world(want, ix)
    const dns = dnsFuzzer(pinRoot, ix)
    loaded.push(dns.loaded)

    const ct = xdp.map('sn_ct')
    const meshCt = xdp.map('sn_mesh_ct')
    const meshSyn = xdp.map('sn_mesh_syn')
    // flags is a u64 in the map (or-ed atomically by XDP and tc); the oracle's bits fit a number.
    const decodeMesh = (b: Buffer | undefined): MeshCt | undefined => {
      if (!b) return undefined
      const d = snMeshCt.decode(b)
      return {...d, flags: Number(d.flags)} as MeshCt
    }
    const tracked: Tracked = {
      ct: (k) => {
        const v = ct.lookup(snCtKey.encode(k))
        return v && snCt.decode(v)
      },
      meshCt: (k) => decodeMesh(meshCt.lookup(snMeshCtKey.encode(k))),
      meshSyn: (k) => decodeMesh(meshSyn.lookup(snMeshCtKey.encode(k))),
    }

    const stats = xdp.map('sn_stats')
    const readCounters = (): bigint[] => {
      const out = COUNTER_NAMES.map(() => 0n)
      for (const [k, v] of stats.entries()) {
        const i = k.readUInt32LE(0)
        if (i < out.length) out[i] = stats.splitPerCpu(v).reduce((a, b) => a + u64.decode(b), 0n)
      }
      return out
    }
    let last = readCounters()

    const judge = (prog: string, pkt: Buffer, want: Expected, run: () => {retval: number; data: Buffer}) => {
      let got: {retval: number; data: Buffer}
      try {
        got = run()
      } catch (e) {
        // The kernel's test run refuses an skb whose IPv4/IPv6 header is cut before the program
        // runs (a real skb from a veth reaches it, and the short header fails sn_fits: dropped).
        if (e instanceof BpfError && e.errno === 22 && prog.startsWith('tc_') && kernelRefusesSkb(pkt)) {
          res.refusedByKernel++
          return
        }
        throw e
      }
      res.runs++
      const key = `${prog} ${want.label}`
      res.outcomes[key] = (res.outcomes[key] ?? 0) + 1
      for (const [c, n] of Object.entries(want.counters) as Array<[CounterName, number]>)
        res.counted[c] = (res.counted[c] ?? 0) + n
      const problems: string[] = []
      if (got.retval !== want.verdict) problems.push(`verdict ${got.retval}, expected ${want.verdict} (${want.label})`)
      const now = readCounters()
      const moved: Counts = {}
      COUNTER_NAMES.forEach((c, i) => {
        const d = Number(now[i]! - last[i]!)
        if (d !== 0 && !TIMER_COUNTERS.has(c)) moved[c] = d
      })
      last = now
      const fmt = (c: Counts) =>
        Object.entries(c)
          .sort()
          .map(([k, n]) => `${k}+${n}`)
          .join(' ')
      if (fmt(moved) !== fmt(want.counters))
        problems.push(`counters ${fmt(moved) || 'none'}, expected ${fmt(want.counters) || 'none'}`)
      const dropped =
        want.verdict === 1 /* XDP_DROP */ && prog.startsWith('xdp') ? true : want.verdict === 2 && prog.startsWith('tc_')
      if (got.retval === want.verdict && !dropped) {
        const expectOut = want.out ?? (want.check ? undefined : pkt)
        if (expectOut && !got.data.equals(expectOut))
          problems.push(`output differs:\n  got  ${got.data.toString('hex')}\n  want ${expectOut.toString('hex')}`)
        const bad = want.check?.(got.data)
        if (bad) problems.push(bad)
      }
      const entries = want.entries?.(tracked)
      if (entries) problems.push(entries)
      if (problems.length) res.mismatchCounts[key] = (res.mismatchCounts[key] ?? 0) + 1
      if (problems.length && res.mismatches.length < 20 && res.mismatchCounts[key]! <= 3)
        res.mismatches.push(`${prog} on ${pkt.toString('hex')}: ${problems.join('; ')}`)
    }

    const vipFlows = new G.Flows()
    const meshFlows = new G.Flows()
    const forwarded = new G.Flows()
    const ctxOf = new Map<number, Buffer>()
    const skb = (ifindex: number) => {
      let c = ctxOf.get(ifindex)
      if (!c) ctxOf.set(ifindex, (c = skbCtx(ifindex)))
      return c
    }
    /*
     * The expectation with the clock the run will read: a mesh lifetime that ends within that window
     * (a closed flow met about 10 s on) cannot be told beforehand; that packet is not run (counted).
     */
    const expecting = (f: () => Expected): Expected | undefined => {
      startClock()
      try {
        return f()
      } catch (e) {
        if (!(e instanceof TooClose)) throw e
        res.tooClose++
        return undefined
      }
    }
    const runXdp = (pkt: Buffer) => {
      if (pkt.length > 3000) return
      const want = expecting(() => expectXdp(w, pkt, tracked))
      if (want) judge('xdp_underlay', pkt, want, () => xdp.run(pkt, {ctx: xdpCtx(pkt.length, ix.underlay)}))
    }
    const runTc = (pkt: Buffer, ifindex: number) => {
      if (pkt.length > 3000) return
      const want = expecting(() => expectTc(w, pkt, ifindex, tracked))
      if (want) judge('tc_task', pkt, want, () => tc.run(pkt, {ctx: skb(ifindex)}))
    }
    const runGw = (pkt: Buffer, ifindex: number) => {
      if (pkt.length > 3000) return
      const want = expecting(() => expectGw(w, pkt, ifindex, tracked))
      if (want) judge('tc_gw', pkt, want, () => gw.run(pkt, {ctx: skb(ifindex)}))
    }
    const maybe = (p: Buffer, chance: number) => (r.chance(chance) ? G.mutate(r, p, 14) : p)

    // `count` packets reach a program or the kernel's refusal; oversized ones (a test run takes one page) are drawn again.
    for (let i = 0; res.runs + res.refusedByKernel < opts.count; i++) {
      const which = r.int(100)
      if (which < 14) runXdp(maybe(G.underlayPacket(r), 0.6))
      else if (which < 30) runXdp(maybe(G.meshRequest(r, meshFlows), 0.3))
      else if (which < 36) {
        const p = G.meshReturn(r, meshFlows)
        if (p) runXdp(maybe(p, 0.3))
      } else if (which < 42) runXdp(maybe(G.meshForwarded(r, forwarded), 0.3))
      else if (which < 45) {
        const p = G.vipReplyOverVxlan(r, vipFlows)
        if (p) runXdp(maybe(p, 0.3))
      } else if (which < 57) {
        const unknown = r.chance(0.05)
        runTc(maybe(G.taskFrame(r), 0.5), unknown ? ix.stray : ix.taskA)
      } else if (which < 70) {
        const a = r.chance(0.5)
        runTc(maybe(G.vipFrame(r, a ? '10.0.1.4' : '10.0.1.5', vipFlows), 0.3), a ? ix.taskA : ix.taskB)
      } else if (which < 84) {
        const host = r.chance(0.25)
        const dev = r.chance(0.05) ? ix.stray : host ? ix.hostGw : ix.gw
        runGw(maybe(G.gwFrame(r, host, meshFlows, forwarded), 0.3), dev)
      } else if (which < 94) {
        if (!dns.fuzzOne(r, judge)) continue
      } else {
        const pkt = G.mutate(r, r.chance(0.5) ? G.underlayPacket(r) : G.taskFrame(r), 14)
        if (pkt.length > 3000) continue
        judge('xdp_task_peer', pkt, {verdict: XDP_PASS, counters: {}, label: 'pass'}, () => peer.run(pkt))
      }
      if (opts.log && (i + 1) % 100_000 === 0) opts.log(`${res.runs} runs, ${res.mismatches.length} mismatches`)
    }
    res.seconds = (Date.now() - started) / 1000
    return res
  } finally {
    for (const l of loaded.reverse()) l.close()
  }
}

/**
 * The fuzzer in a namespace of its own: made, the fuzzer run inside it (this file, `--inside`),
 * and deleted, also when the run fails. The result as the child printed it.
 */
export function fuzz(opts: {count: number; seed?: number}): FuzzResult {
  const seed = opts.seed ?? Date.now() & 0x7fffffff
  const ns = `sn-fz${process.pid}`
  try {
    W.makeNetns(ns)
    const r = spawnSync(
      'ip',
      [
        'netns',
        'exec',
        ns,
        process.execPath,
        '--import',
        'tsx',
        new URL(import.meta.url).pathname,
        '--inside',
        '--count',
        String(opts.count),
        '--seed',
        String(seed),
      ],
      {encoding: 'utf8', env: {...process.env, NODE_TEST_CONTEXT: undefined}, maxBuffer: 64 << 20},
    )
    const line = r.stdout.split('\n').find((l) => l.startsWith('{'))
    if (!line) throw new Error(`the fuzzer failed (exit ${r.status}):\n${r.stdout}\n${r.stderr}`)
    return JSON.parse(line) as FuzzResult
  } finally {
    W.deleteNetns(ns)
  }
}

export function formatFuzz(res: FuzzResult): string[] {
  const lines = [
    `fuzz: seed ${res.seed}, ${res.runs} program runs (+${res.refusedByKernel} refused by the kernel before the program, ${res.tooClose} not run: a mesh lifetime ending within the run's clock window) in ${res.seconds.toFixed(0)} s`,
  ]
  for (const [k, n] of Object.entries(res.outcomes).sort()) lines.push(`  ${k.padEnd(44)} ${n}`)
  lines.push(
    `  counters: ${Object.entries(res.counted)
      .sort()
      .map(([k, n]) => `${k} ${n}`)
      .join(', ')}`,
  )
  for (const [k, n] of Object.entries(res.mismatchCounts).sort()) lines.push(`  MISMATCHES ${k.padEnd(33)} ${n}`)
  lines.push(
    res.mismatches.length
      ? `MISMATCHES (the first):\n${res.mismatches.join('\n')}`
      : 'no mismatches: every verdict, count and output as the maps say',
  )
  return lines
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const arg = (name: string) => {
    const i = process.argv.indexOf(name)
    return i > 0 ? Number(process.argv[i + 1]) : undefined
  }
  const count = arg('--count') ?? 1_000_000
  if (process.argv.includes('--inside')) {
    const res = fuzzInside({count, seed: arg('--seed')!, log: (s) => console.error(s)})
    console.log(JSON.stringify(res))
  } else {
    const res = fuzz({count, seed: arg('--seed')})
    if (process.argv.includes('--json')) console.log(JSON.stringify(res))
    else for (const l of formatFuzz(res)) console.log(l)
    process.exit(res.mismatches.length ? 1 : 0)
  }
}
