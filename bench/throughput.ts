/**
 * Cross-node throughput, swarmnet's BPF data plane against the kernel's own vxlan + bridge path
 * built the Docker way and against the bare underlay (iperf3 between the two nodes' own
 * namespaces, node address to node address, no overlay, no task device: the limit here), in one
 * lab run.
 *
 *   node --import tsx bench/throughput.ts [--seconds 5] [--runs 5] [--xdp-task] [--tc-variant OBJ]
 *
 * Trial paths (not what the agent does), measured in the same runs, each first in its run:
 * --xdp-task: swarmnet with bpf/xdp_task.c attached by hand (native XDP) on both tasks' host-side
 * veths, taken off after; --tc-variant OBJ: swarmnet with the tasks' tc_task links switched to
 * sn_tc_task of OBJ (a build with other -D switches), switched back after (bench/trial-child.ts).
 *
 * For each path: small UDP packets (iperf3 -u -l 64 -b 0) -> packets/s received at the server,
 * and one TCP stream -> Gb/s received. Runs alternate swarmnet / kernel / bare so that drift on a
 * shared machine hits both alike; the reported figure is the median of the runs (best is kept too).
 *
 * It brings up its own lab (waiting while someone else's lab is up: the lab's names are fixed)
 * and always takes it down again.
 */
import {spawn, type ChildProcess} from 'node:child_process'
import {dirname, join} from 'node:path'
import {fileURLToPath, pathToFileURL} from 'node:url'
import {run} from '../src/sys/exec.js'
import {execIn, listNetns, netnsPath} from '../src/sys/netns.js'
import {bpfObjectPath} from '../src/util/root.js'
import {readLabState} from '../src/lab/state.js'
import {buildKernelPath, kernelEnds, removeKernelPath, vxlanCounters, type KernelEnd} from './kernel-path.js'
import {cli, iperf, labDown, sleep, snStats, type IperfJson, type Stats} from './lab-bench.js'

const NETWORK = 'snbench'
const SERVICE = 'snbench-iperf'

export interface PathFigure {
  /** The reported figure: the median of the runs. */
  median: number
  best: number
  runs: number[]
}

export interface Result {
  test: 'udp-64B' | 'tcp-1-stream'
  unit: 'pps' | 'Gb/s'
  swarmnet: PathFigure
  kernel: PathFigure
  /** The bare underlay between the same two nodes, in the same run. */
  bare: PathFigure
  /** The trial paths (--xdp-task: "xdp", --tc-variant: "tc-variant"), by name. */
  trials: Record<string, PathFigure>
  /** swarmnet.median / kernel.median */
  ratio: number
  /** swarmnet.median / bare.median */
  bareRatio: number
  /** Counters showing where the traffic went, and anything odd (loss, drops). */
  notes: string[]
}

export interface BenchOptions {
  seconds?: number
  runs?: number
  /** Also measure swarmnet with xdp_task attached by hand (a trial path). */
  xdpTask?: boolean
  /** Also measure swarmnet with the tasks' tc_task switched to this object's (a trial path). */
  tcVariant?: string
  log?: (line: string) => void
}

/** Waits (polling every 30 s, up to 10 min) while a lab that is not ours is up. */
async function waitForNoLab(log: (s: string) => void): Promise<void> {
  const deadline = Date.now() + 10 * 60_000
  for (;;) {
    const ns = listNetns('sn-lab-')
    const state = readLabState()
    if (ns.length === 0 && !state) return
    if (Date.now() > deadline)
      throw new Error(`a lab is still up after 10 min (${ns.join(', ') || 'state file'}); not touching it`)
    log(`a lab is up (${ns.join(', ') || 'state file only'}), not ours: waiting 30 s`)
    await sleep(30_000)
  }
}

// ---- iperf3 -----------------------------------------------------------------

export interface UdpSample {
  pps: number
  sent: number
  received: number
  seconds: number
  /** iperf3's own CPU use, % of one host: client, server */
  cpu: [number, number]
}

export interface TcpSample {
  gbps: number
  /** Bytes received by the server. */
  bytes: number
  retransmits: number
  cpu: [number, number]
}

const cpuOf = (j: IperfJson): [number, number] => [
  Math.round(j.end?.cpu_utilization_percent?.host_total ?? NaN),
  Math.round(j.end?.cpu_utilization_percent?.remote_total ?? NaN),
]

export async function udpSmall(clientNs: string, server: string, seconds: number, cgroup?: string): Promise<UdpSample> {
  const j = await iperf(clientNs, ['-c', server, '-u', '-l', '64', '-b', '0', '-t', String(seconds)], seconds, cgroup)
  const sum = j.end?.sum ?? {}
  const sent = sum.packets ?? 0
  const lost = sum.lost_packets ?? 0
  // In iperf3's client JSON, end.sum carries the server's view for UDP: packets the server
  // expected (highest sequence seen) and the ones it counted lost.
  const received = sent - lost
  const secs = j.end?.sum_received?.seconds ?? sum.seconds ?? seconds
  return {pps: received / secs, sent: j.end?.sum_sent?.packets ?? sent, received, seconds: secs, cpu: cpuOf(j)}
}

export async function tcpStream(clientNs: string, server: string, seconds: number, cgroup?: string): Promise<TcpSample> {
  const j = await iperf(clientNs, ['-c', server, '-t', String(seconds)], seconds, cgroup)
  return {
    gbps: (j.end?.sum_received?.bits_per_second ?? 0) / 1e9,
    bytes: j.end?.sum_received?.bytes ?? 0,
    retransmits: j.end?.sum_sent?.retransmits ?? 0,
    cpu: cpuOf(j),
  }
}

// ---- swarmnet side ----------------------------------------------------------

interface TaskJson {
  node: string
  state: string
  addresses: {network: string; ip: string}[]
  netns?: string
}

interface Pair {
  client: {node: string; netns: string; ip: string}
  server: {node: string; netns: string; ip: string}
}

async function swarmnetPair(log: (s: string) => void): Promise<Pair> {
  await cli(['network', 'create', NETWORK], 'n1')
  await cli(['service', 'create', '--name', SERVICE, '--replicas', '2', '--network', NETWORK, '--', 'iperf3', '-s'], 'n1')
  const deadline = Date.now() + 60_000
  let tasks: TaskJson[] = []
  while (Date.now() < deadline) {
    tasks = JSON.parse(await cli(['service', 'ps', SERVICE, '--json'], 'n1')) as TaskJson[]
    const up = tasks.filter((t) => t.state === 'running' && t.netns && t.addresses.some((a) => a.network === NETWORK))
    const nodes = new Set(up.map((t) => t.node))
    if (up.length >= 2 && nodes.size >= 2) {
      const view = (t: TaskJson) => ({node: t.node, netns: t.netns!, ip: t.addresses.find((a) => a.network === NETWORK)!.ip})
      // Server on n2, client on n1 when the placement allows it; else any two nodes.
      const server = up.find((t) => t.node === 'n2') ?? up[1]!
      const client = up.find((t) => t.node === 'n1' && t !== server) ?? up.find((t) => t.node !== server.node)!
      log(
        `swarmnet tasks: client ${client.node} ${view(client).ip} (${client.netns}), server ${server.node} ${view(server).ip} (${server.netns})`,
      )
      return {client: view(client), server: view(server)}
    }
    await sleep(1000)
  }
  throw new Error(`service ${SERVICE}: no two running tasks on different nodes after 60 s: ${JSON.stringify(tasks)}`)
}

function delta(a: Stats, b: Stats): Stats {
  const d: Stats = {}
  for (const k of Object.keys(b)) if ((b[k] ?? 0) - (a[k] ?? 0) !== 0) d[k] = (b[k] ?? 0) - (a[k] ?? 0)
  return d
}

const fmtDelta = (d: Stats) =>
  Object.entries(d)
    .map(([k, v]) => `${k}+${v}`)
    .join(' ') || 'no change'

// ---- trial paths ---------------------------------------------------------------

/** The host side (in `nodeNs`) of the veth that holds `ip` in task namespace `taskNs`. */
async function hostVeth(taskNs: string, ip: string, nodeNs: string): Promise<string> {
  const addrs = JSON.parse(await execIn(taskNs, ['ip', '-j', 'addr', 'show'])) as {
    ifname: string
    link_index?: number
    addr_info: {local: string}[]
  }[]
  const dev = addrs.find((a) => a.addr_info.some((i) => i.local === ip))
  if (!dev?.link_index) throw new Error(`no veth with ${ip} in ${taskNs}`)
  const links = JSON.parse(await execIn(nodeNs, ['ip', '-j', 'link', 'show'])) as {ifindex: number; ifname: string}[]
  const host = links.find((l) => l.ifindex === dev.link_index)
  if (!host) throw new Error(`the peer of ${dev.ifname} (${taskNs}) is not in ${nodeNs}`)
  return host.ifname
}

interface Trial {
  name: string
  attach(): Promise<void>
  detach(): Promise<void>
}

const TRIAL_CHILD = join(dirname(fileURLToPath(import.meta.url)), 'trial-child.ts')

async function trialChild(nodeNs: string, args: string[], doing: string): Promise<void> {
  await run(['nsenter', `--net=${netnsPath(nodeNs)}`, '--', process.execPath, '--import', 'tsx', TRIAL_CHILD, ...args], doing)
}

type TrialEnd = {node: string; nodeNs: string; dev: string}

function xdpTrial(ends: TrialEnd[]): Trial {
  return {
    name: 'xdp',
    async attach() {
      for (const e of ends) await trialChild(e.nodeNs, ['xdp', e.node, e.dev], `xdp_task on ${e.dev}`)
    },
    async detach() {
      for (const e of ends)
        await run(['ip', '-n', e.nodeNs, 'link', 'set', 'dev', e.dev, 'xdpdrv', 'off'], `xdp_task off ${e.dev}`)
    },
  }
}

function tcTrial(ends: TrialEnd[], obj: string): Trial {
  return {
    name: 'tc-variant',
    async attach() {
      for (const e of ends) await trialChild(e.nodeNs, ['tc', e.node, obj, e.dev], `tc_task of ${obj} on ${e.dev}`)
    },
    async detach() {
      for (const e of ends)
        await trialChild(e.nodeNs, ['tc', e.node, bpfObjectPath('tc_task'), e.dev], `tc_task back on ${e.dev}`)
    },
  }
}

// ---- the bench --------------------------------------------------------------

function figure(runs: number[]): PathFigure {
  const s = [...runs].sort((a, b) => a - b)
  const mid = s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
  return {median: mid, best: s[s.length - 1] ?? 0, runs}
}

export async function benchThroughput(opts: BenchOptions = {}): Promise<Result[]> {
  const seconds = opts.seconds ?? 5
  const runs = opts.runs ?? 5
  const log = opts.log ?? ((s: string) => console.error(`[bench] ${s}`))

  await waitForNoLab(log)
  let ours = false
  let ends: KernelEnd[] = []
  try {
    log('lab up --nodes 3')
    ours = true
    try {
      await cli(['lab', 'up', '--nodes', '3', '--json'], undefined, 180_000)
    } catch (e) {
      // Someone else's lab won the race between our check and our `lab up`: not ours to remove.
      if (e instanceof Error && /already up/.test(e.message)) ours = false
      throw e
    }
    const state = readLabState()
    if (!state) throw new Error('lab up left no state file')
    // Checksum offload on the lab's veth underlay: lab up does it now; harmless to repeat.
    for (const n of state.nodes) await execIn(n.netns, ['ethtool', '-K', 'eth0', 'tx', 'off'], 'tx checksum offload off')

    const pair = await swarmnetPair(log)
    // The kernel path between the same two nodes as the swarmnet pair, client end first, so both
    // paths cross the same veths and share the same cores' softirq work.
    const node = (name: string) => {
      const n = state.nodes.find((x) => x.name === name)
      if (!n) throw new Error(`node ${name} not in the lab state`)
      return n
    }
    const nodeNs = (name: string) => node(name).netns
    const trialEnds: TrialEnd[] =
      opts.xdpTask || opts.tcVariant
        ? [
            {
              node: pair.client.node,
              nodeNs: nodeNs(pair.client.node),
              dev: await hostVeth(pair.client.netns, pair.client.ip, nodeNs(pair.client.node)),
            },
            {
              node: pair.server.node,
              nodeNs: nodeNs(pair.server.node),
              dev: await hostVeth(pair.server.netns, pair.server.ip, nodeNs(pair.server.node)),
            },
          ]
        : []
    const trials: Trial[] = [
      ...(opts.xdpTask ? [xdpTrial(trialEnds)] : []),
      ...(opts.tcVariant ? [tcTrial(trialEnds, opts.tcVariant)] : []),
    ]
    ends = kernelEnds([node(pair.client.node), node(pair.server.node)])
    log(`building the kernel path (vxlan id 5000 dstport 4790 + bridge) ${ends.map((e) => `${e.node} ${e.ip}`).join(' -> ')}`)
    await buildKernelPath(ends)
    const [kc, ks] = ends as [KernelEnd, KernelEnd]
    const kserver = startServer(ks.netns)
    // The bare underlay: the server node's own namespace, reached at its underlay address.
    const [bc, bs] = [node(pair.client.node), node(pair.server.node)]
    const bserver = startServer(bs.netns)
    try {
      // Warm up both paths (and check they work at all) before measuring.
      await execIn(kc.netns, ['ping', '-c', '2', '-W', '2', ks.ip], 'ping over the kernel path')
      await execIn(pair.client.netns, ['ping', '-c', '2', '-W', '2', pair.server.ip], 'ping over swarmnet')
      await execIn(bc.netns, ['ping', '-c', '2', '-W', '2', bs.address], 'ping over the bare underlay')

      const results: Result[] = []
      for (const test of ['udp-64B', 'tcp-1-stream'] as const) {
        const sn: number[] = []
        const kn: number[] = []
        const bn: number[] = []
        const tn: Record<string, number[]> = Object.fromEntries(trials.map((t) => [t.name, []]))
        const notes: string[] = []
        const snBefore = {c: await snStats(pair.client.node), s: await snStats(pair.server.node)}
        const kvBefore = {c: await vxlanCounters(kc.nodeNetns), s: await vxlanCounters(ks.nodeNetns)}
        let snSent = 0
        let snRecv = 0
        let kSent = 0
        let kRecv = 0
        let snRetr = 0
        let kRetr = 0
        for (let i = 0; i < runs; i++) {
          // The trial paths first in each run, so that the plain swarmnet runs right after them (taken off).
          let trialLine = ''
          for (const t of trials) {
            await t.attach()
            try {
              if (test === 'udp-64B') {
                const x = await udpSmall(pair.client.netns, pair.server.ip, seconds)
                tn[t.name]!.push(x.pps)
                trialLine += `, ${t.name} ${Math.round(x.pps)} pps (sent ${x.sent}, cpu ${x.cpu.join('/')}%)`
              } else {
                const x = await tcpStream(pair.client.netns, pair.server.ip, seconds)
                tn[t.name]!.push(x.gbps)
                trialLine += `, ${t.name} ${x.gbps.toFixed(2)} Gb/s (retr ${x.retransmits}, cpu ${x.cpu.join('/')}%)`
              }
            } finally {
              await t.detach()
            }
            await sleep(1000)
          }
          if (test === 'udp-64B') {
            const a = await udpSmall(pair.client.netns, pair.server.ip, seconds)
            sn.push(a.pps)
            snSent += a.sent
            snRecv += a.received
            await sleep(1000)
            const b = await udpSmall(kc.netns, ks.ip, seconds)
            kn.push(b.pps)
            kSent += b.sent
            kRecv += b.received
            await sleep(1000)
            const c = await udpSmall(bc.netns, bs.address, seconds)
            bn.push(c.pps)
            log(
              `udp run ${i + 1}: swarmnet ${Math.round(a.pps)} pps (sent ${a.sent}, iperf3 cpu c/s ${a.cpu.join('/')}%), kernel ${Math.round(b.pps)} pps (sent ${b.sent}, cpu ${b.cpu.join('/')}%), bare ${Math.round(c.pps)} pps (sent ${c.sent}, cpu ${c.cpu.join('/')}%)${trialLine}`,
            )
          } else {
            const a = await tcpStream(pair.client.netns, pair.server.ip, seconds)
            sn.push(a.gbps)
            snRetr += a.retransmits
            await sleep(1000)
            const b = await tcpStream(kc.netns, ks.ip, seconds)
            kn.push(b.gbps)
            kRetr += b.retransmits
            await sleep(1000)
            const c = await tcpStream(bc.netns, bs.address, seconds)
            bn.push(c.gbps)
            log(
              `tcp run ${i + 1}: swarmnet ${a.gbps.toFixed(2)} Gb/s (retr ${a.retransmits}, cpu ${a.cpu.join('/')}%), kernel ${b.gbps.toFixed(2)} Gb/s (retr ${b.retransmits}, cpu ${b.cpu.join('/')}%), bare ${c.gbps.toFixed(2)} Gb/s (retr ${c.retransmits}, cpu ${c.cpu.join('/')}%)${trialLine}`,
            )
          }
          await sleep(1000)
        }
        const snAfter = {c: await snStats(pair.client.node), s: await snStats(pair.server.node)}
        const kvAfter = {c: await vxlanCounters(kc.nodeNetns), s: await vxlanCounters(ks.nodeNetns)}
        notes.push(`sn_stats ${pair.client.node} (client): ${fmtDelta(delta(snBefore.c, snAfter.c))}`)
        notes.push(`sn_stats ${pair.server.node} (server): ${fmtDelta(delta(snBefore.s, snAfter.s))}`)
        const kv = (a: typeof kvBefore.c, b: typeof kvBefore.c) =>
          `tx+${b.txPackets - a.txPackets} rx+${b.rxPackets - a.rxPackets}` +
          (b.txDropped - a.txDropped || b.rxDropped - a.rxDropped
            ? ` txdrop+${b.txDropped - a.txDropped} rxdrop+${b.rxDropped - a.rxDropped}`
            : '')
        notes.push(`sn-kvx0 ${kc.node} (client): ${kv(kvBefore.c, kvAfter.c)}; ${ks.node} (server): ${kv(kvBefore.s, kvAfter.s)}`)
        if (test === 'udp-64B') {
          const pct = (r: number, s: number) => (s > 0 ? ((100 * (s - r)) / s).toFixed(1) : '?')
          notes.push(
            `udp received/expected at server: swarmnet ${snRecv}/${snSent} (lost ${pct(snRecv, snSent)}%), kernel ${kRecv}/${kSent} (lost ${pct(kRecv, kSent)}%)`,
          )
        } else {
          notes.push(`tcp retransmits: swarmnet ${snRetr}, kernel ${kRetr}`)
        }
        const s = figure(sn)
        const k = figure(kn)
        const b = figure(bn)
        results.push({
          test,
          unit: test === 'udp-64B' ? 'pps' : 'Gb/s',
          swarmnet: s,
          kernel: k,
          bare: b,
          trials: Object.fromEntries(Object.entries(tn).map(([k, v]) => [k, figure(v)])),
          ratio: k.median > 0 ? s.median / k.median : NaN,
          bareRatio: b.median > 0 ? s.median / b.median : NaN,
          notes,
        })
      }
      return results
    } finally {
      await stopServer(kserver)
      await stopServer(bserver)
    }
  } finally {
    if (ends.length > 0) {
      const errs = await removeKernelPath(ends)
      if (errs.length > 0) log(`kernel path cleanup: ${errs.join('; ')}`)
    }
    if (ours) await labDown(log)
  }
}

function startServer(ns: string): ChildProcess {
  const child = spawn('nsenter', [`--net=${netnsPath(ns)}`, '--', 'iperf3', '-s'], {stdio: 'ignore'})
  child.on('error', () => undefined)
  return child
}

async function stopServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return
  const gone = new Promise<void>((r) => child.once('close', () => r()))
  child.kill('SIGTERM')
  await Promise.race([gone, sleep(3000)])
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
}

// ---- standalone ---------------------------------------------------------------

export function formatTable(results: Result[]): string {
  const num = (v: number, unit: string) => (unit === 'pps' ? Math.round(v).toLocaleString('en-US') : v.toFixed(2))
  const rows = [
    [
      'test',
      'unit',
      'bare underlay',
      'swarmnet',
      'kernel vxlan',
      'swarmnet/bare',
      'swarmnet/kernel',
      'bare runs',
      'swarmnet runs',
      'kernel runs',
    ],
    ...results.map((r) => [
      r.test,
      r.unit,
      num(r.bare.median, r.unit),
      num(r.swarmnet.median, r.unit),
      num(r.kernel.median, r.unit),
      r.bareRatio.toFixed(2),
      r.ratio.toFixed(2),
      r.bare.runs.map((v) => num(v, r.unit)).join(' / '),
      r.swarmnet.runs.map((v) => num(v, r.unit)).join(' / '),
      r.kernel.runs.map((v) => num(v, r.unit)).join(' / '),
    ]),
  ]
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  const lines = rows.map((r) => r.map((c, i) => c.padEnd(w[i]!)).join('  '))
  lines.splice(1, 0, w.map((n) => '-'.repeat(n)).join('  '))
  return lines.join('\n')
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const arg = (name: string) => {
    const i = process.argv.indexOf(name)
    return i >= 0 ? Number(process.argv[i + 1]) : undefined
  }
  const seconds = arg('--seconds')
  const runs = arg('--runs')
  const tcAt = process.argv.indexOf('--tc-variant')
  const tcVariant = tcAt >= 0 ? process.argv[tcAt + 1] : undefined
  benchThroughput({
    ...(seconds ? {seconds} : {}),
    ...(runs ? {runs} : {}),
    xdpTask: process.argv.includes('--xdp-task'),
    ...(tcVariant ? {tcVariant} : {}),
  }).then(
    (results) => {
      console.log(formatTable(results))
      for (const r of results)
        for (const [name, f] of Object.entries(r.trials)) {
          const n = (v: number) => v.toFixed(r.unit === 'pps' ? 0 : 2)
          console.log(
            `${r.test} trial ${name}: median ${n(f.median)} (${(f.median / r.bare.median).toFixed(3)}x bare, ${(f.median / r.swarmnet.median).toFixed(3)}x swarmnet); runs ${f.runs.map(n).join(' / ')}`,
          )
        }
      console.log('\nfigures: median of the runs; ratio = swarmnet median / kernel median')
      for (const r of results) for (const n of r.notes) console.log(`${r.test}: ${n}`)
    },
    (e) => {
      console.error(e instanceof Error ? e.message : String(e))
      process.exitCode = 1
    },
  )
}
