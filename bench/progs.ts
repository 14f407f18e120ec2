/**
 * Cost of swarmnet's programs per packet, measured in the kernel with
 * BPF_PROG_TEST_RUN on 64-byte (inner) frames: no wire, only the program, the
 * helpers it calls and, where said, the redirect it asks for.
 *
 * What a plain test run does not do: carry out a redirect. The program runs to
 * its verdict (bpf_redirect only records the target), so the figures marked
 * "(program)" are the program alone. XDP can do better: with
 * BPF_F_TEST_XDP_LIVE_FRAMES the kernel carries the verdict out, so
 * "xdp decap + redirect (executed)" is timed with the frame really transmitted
 * into a veth (whose far end drops it in XDP), in a namespace of its own
 * (live-redirect.ts). tc has no such mode: its redirects are never executed here.
 *
 * Three ways of timing:
 *
 * - `loop`: programs that leave the packet as they found it (XDP pass, tc local
 *   redirect) run with repeat = 1e6 and the kernel reports the mean.
 * - `single`: programs that rewrite the packet into something else (decap,
 *   encap, ARP reply) would take another path from the second run on, so
 *   they run once per call, many times, and the median of the kernel's
 *   per-call time is taken, minus the timer's own cost for one run: the
 *   single-call median of an empty program of the same hook (bench/empty.c),
 *   reported with each figure.
 * - `live`: XDP with live frames, repeat = 1e6, a fresh copy of the packet each run.
 *
 * Every measurement checks the counters, so a case that took another path
 * than intended fails instead of reporting a wrong number.
 *
 * Run alone: node --import tsx bench/progs.ts
 */
import {execFileSync} from 'node:child_process'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {fileURLToPath, pathToFileURL} from 'node:url'
import {BpfObject, type CounterName, testRun} from '../src/bpf/index.js'
import {compileBpf} from '../test/fixtures/bpf/build.js'
import {Loaded, TC_ACT_REDIRECT, XDP_PASS, XDP_REDIRECT, skbCtx} from '../test/bpf/harness.js'
import * as P from '../test/bpf/packets.js'
import {tsxInNetns} from '../test/bpf/netns-child.js'

const HERE = dirname(fileURLToPath(import.meta.url))

export interface ProgBench {
  name: string
  nsPerPacket: number
  method: 'loop' | 'single' | 'live'
  /** Exactly what the figure covers. */
  measures: string
  /** The per-run values the median was taken from. */
  runs?: number[]
  /** For 'single': the timer's cost for one run (an empty program's), subtracted. */
  overheadNs?: number
}

const LOOP_REPEAT = 1_000_000
const SINGLE_CALLS = 5_000
const RUNS = 5

const NODE = '172.30.0.11'
const PEER = '172.30.0.12'
const VNI = 4097
const TASK = {ip: '10.0.1.4', mac: '02:42:0a:00:01:04'}
const LOCAL = {ip: '10.0.1.5', mac: '02:42:0a:00:01:05'}
const REMOTE = {ip: '10.0.1.9', mac: '02:42:0a:00:01:09'}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

interface Case {
  name: string
  prog: Loaded
  data: Buffer
  ctx?: Buffer
  retval: number
  counter: CounterName
}

function counterDelta(c: Case, fn: () => void): number {
  const before = c.prog.stats()[c.counter]
  fn()
  return Number(c.prog.stats()[c.counter] - before)
}

/** Mean ns per run over the kernel's repeat loop. */
function loopOnce(c: Case): number {
  let ns = 0
  const moved = counterDelta(c, () => {
    const r = c.prog.run(c.data, {ctx: c.ctx, repeat: LOOP_REPEAT})
    if (r.retval !== c.retval) throw new Error(`${c.name}: verdict ${r.retval}, expected ${c.retval}`)
    ns = r.durationNs
  })
  if (moved !== LOOP_REPEAT) throw new Error(`${c.name}: ${moved} of ${LOOP_REPEAT} runs counted ${c.counter}`)
  return ns
}

/** Median of the kernel's time for one run, over many calls (timer overhead included). */
function singleOnce(c: Case): number {
  const times: number[] = []
  const moved = counterDelta(c, () => {
    for (let i = 0; i < SINGLE_CALLS; i++) {
      const r = c.prog.run(c.data, {ctx: c.ctx})
      if (r.retval !== c.retval) throw new Error(`${c.name}: verdict ${r.retval}, expected ${c.retval}`)
      times.push(r.durationNs)
    }
  })
  if (moved !== SINGLE_CALLS) throw new Error(`${c.name}: ${moved} of ${SINGLE_CALLS} runs counted ${c.counter}`)
  return median(times)
}

function repeatRuns(f: () => number): number[] {
  f() // warm up: first-touch of maps and code
  return Array.from({length: RUNS}, f)
}

/** Median single-call time of an empty program: the timer's and the call's own cost for one run. */
function timerCost(progFd: number, data: Buffer, ctx?: Buffer): number {
  const once = (): number => {
    const times: number[] = []
    for (let i = 0; i < SINGLE_CALLS; i++) times.push(testRun(progFd, {data, ctx}).durationNs)
    return median(times)
  }
  return median(repeatRuns(once))
}

/** The decap with its redirect carried out, in a namespace of its own (live-redirect.ts). */
function liveDecap(emptyObj: string): number[] {
  const ns = `sn-bl${process.pid}`
  execFileSync('ip', ['netns', 'add', ns])
  try {
    const out = execFileSync('ip', tsxInNetns(ns, join(HERE, 'live-redirect.ts'), emptyObj, String(RUNS), String(LOOP_REPEAT)), {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    const r = JSON.parse(out) as {ns: number[]; decaps: number; expected: number; delivered: number}
    if (r.decaps !== r.expected) throw new Error(`live decap: ${r.decaps} of ${r.expected} runs counted xdp_decap`)
    // The far end's XDP saw (nearly) every frame: the redirects were carried out.
    if (r.delivered < r.expected * 0.99)
      throw new Error(`live decap: ${r.delivered} of ${r.expected} frames reached the veth's far end`)
    return r.ns
  } finally {
    execFileSync('ip', ['netns', 'del', ns])
  }
}

export async function benchPrograms(): Promise<ProgBench[]> {
  const pinRoot = `/sys/fs/bpf/swarmnet-bench-${process.pid}`
  const tmp = mkdtempSync(join(tmpdir(), 'sn-bench-'))
  const loaded: Loaded[] = []
  let empty: BpfObject | undefined
  try {
    // One pin root: both objects share the maps, as on a node.
    const xdp = new Loaded(pinRoot, 'xdp_underlay.o', 'sn_xdp_underlay')
    loaded.push(xdp)
    const tc = new Loaded(pinRoot, 'tc_task.o', 'sn_tc_task', {keepPins: true})
    loaded.push(tc)
    const emptyObj = compileBpf(join(HERE, 'empty.c'), join(tmp, 'empty.o'))
    empty = BpfObject.open(emptyObj)
    empty.load()

    xdp.setConfig({nodeIp: NODE, vxlanPort: 4789, underlayIfindex: 1})
    xdp.addNetwork(VNI, '10.0.1.0', 24)
    xdp.addDevice(1, VNI, TASK.ip)
    xdp.addEndpoint({vni: VNI, ip: TASK.ip, nodeIp: NODE, ifindex: 1, mac: TASK.mac, local: true})
    xdp.addEndpoint({vni: VNI, ip: LOCAL.ip, nodeIp: NODE, ifindex: 1, mac: LOCAL.mac, local: true})
    xdp.addEndpoint({vni: VNI, ip: REMOTE.ip, nodeIp: PEER, ifindex: 0, mac: REMOTE.mac, local: false})

    const frame64 = (dst: string, dstMac: string): Buffer => P.udpFrame({srcMac: TASK.mac, dstMac, src: TASK.ip, dst}, 64)
    const underlay = {outerSrcMac: '02:00:ac:1e:00:0c', outerDstMac: '02:00:ac:1e:00:0b', outerSrc: PEER, outerDst: NODE}
    const ctx = skbCtx(1)

    const xdpPass: Case = {
      name: 'xdp pass (not ours)',
      prog: xdp,
      data: P.udpFrame({srcMac: underlay.outerSrcMac, dstMac: underlay.outerDstMac, src: PEER, dst: NODE, dstPort: 7946}, 64),
      retval: XDP_PASS,
      counter: 'xdp_pass',
    }
    const xdpDecap: Case = {
      name: 'xdp decap (program)',
      prog: xdp,
      data: P.vxlanFrame(
        {...underlay, vni: VNI},
        P.udpFrame({srcMac: REMOTE.mac, dstMac: TASK.mac, src: REMOTE.ip, dst: TASK.ip}, 64),
      ),
      retval: XDP_REDIRECT,
      counter: 'xdp_decap',
    }
    const tcLocal: Case = {
      name: 'tc local (program)',
      prog: tc,
      data: frame64(LOCAL.ip, LOCAL.mac),
      ctx,
      retval: TC_ACT_REDIRECT,
      counter: 'tc_local',
    }
    const tcEncap: Case = {
      name: 'tc encap (program)',
      prog: tc,
      data: frame64(REMOTE.ip, REMOTE.mac),
      ctx,
      retval: TC_ACT_REDIRECT,
      counter: 'tc_encap',
    }
    const tcArp: Case = {
      name: 'tc arp reply (program)',
      prog: tc,
      data: P.padTo(
        P.ethernet(
          {dst: 'ff:ff:ff:ff:ff:ff', src: TASK.mac, type: P.ETH_P_ARP},
          P.arp({op: 1, sha: TASK.mac, spa: TASK.ip, tha: '00:00:00:00:00:00', tpa: LOCAL.ip}),
        ),
        64,
      ),
      ctx,
      retval: TC_ACT_REDIRECT,
      counter: 'tc_arp_reply',
    }

    const out: ProgBench[] = []
    const loop = (c: Case, measures: string): void => {
      const runs = repeatRuns(() => loopOnce(c))
      out.push({name: c.name, nsPerPacket: median(runs), method: 'loop', measures, runs})
    }
    const single = (c: Case, timer: number, measures: string): void => {
      const runs = repeatRuns(() => singleOnce(c)).map((ns) => Math.max(0, ns - timer))
      out.push({name: c.name, nsPerPacket: median(runs), method: 'single', measures, runs, overheadNs: timer})
    }

    const xdpTimer = timerCost(empty.program('bench_xdp_pass').fd, xdpDecap.data)
    const tcTimer = timerCost(empty.program('bench_tc_ok').fd, tcEncap.data, ctx)
    loop(xdpPass, 'to XDP_PASS')
    single(xdpDecap, xdpTimer, 'parse, both lookups, rewrite, adjust_head, to the redirect verdict; the redirect not executed')
    const live = liveDecap(emptyObj)
    out.push({
      name: 'xdp decap + redirect (executed)',
      nsPerPacket: median(live),
      method: 'live',
      measures:
        "the program and the redirect carried out: xdp_do_redirect, the veth transmit, the far end's NAPI dropping it in XDP",
      runs: live,
    })
    loop(tcLocal, 'to the redirect verdict; a test run does not execute tc redirects')
    single(tcEncap, tcTimer, 'adjust_room and the 50 bytes of headers; bpf_redirect_neigh not executed')
    single(tcArp, tcTimer, 'the reply written in place; the redirect not executed')
    return out
  } finally {
    empty?.close()
    for (const l of loaded.reverse()) l.close()
    rmSync(tmp, {recursive: true, force: true})
  }
}

export function table(rows: ProgBench[]): string {
  const lines = [['program'.padEnd(32), 'ns/pkt', 'method'.padEnd(22), 'runs'].join('\t')]
  for (const r of rows) {
    const method = r.method === 'single' ? `single (-${(r.overheadNs ?? 0).toFixed(0)} ns timer)` : r.method
    lines.push(
      [
        r.name.padEnd(32),
        r.nsPerPacket.toFixed(1).padStart(6),
        method.padEnd(22),
        (r.runs ?? []).map((x) => x.toFixed(0)).join(' '),
      ].join('\t'),
      `  ${''.padEnd(30)}${r.measures}`,
    )
  }
  return lines.join('\n')
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const rows = await benchPrograms()
  console.log(table(rows))
}
