/**
 * Cross-node task -> VIP, measured in a 3-node lab (issues 8, 25):
 *
 * - swarmnet, to the VIP: a client task (service snvip-client, --mode global, one per node)
 *   sends to the VIP of service snvip-iperf (1 replica, iperf3 -s) from a node that does not run
 *   the server; iperf3 runs in the client task's cgroup as well as its namespace, so its sockets
 *   are balanced at connect() (bpf/sock_lb.c: TCP and iperf3's connected UDP), and what that
 *   misses tc_task balances per packet;
 * - swarmnet, direct: the same client task to the server task's own address;
 * - the kernel's path: the Docker-style kernel vxlan + bridge overlay between the same two nodes
 *   (bench/kernel-path.ts), with nftables DNAT in the client's namespace (nat output hook:
 *   the VIP 10.99.0.100 -> the server's 10.99.0.2, conntrack reverses the replies).
 *
 * For each: small UDP (iperf3 -u -l 64 -b 0, packets/s received at the server) and one TCP
 * stream (iperf3, Gb/s received). The paths alternate within each run, VIP and direct side by
 * side with their order swapped every run (drift and being first hit both alike); the figure is
 * the median of the runs with its spread, the paired VIP/direct ratio of each run, the iperf3
 * sender's CPU and the load average beside it. Around every swarmnet measurement the programs
 * behind both nodes' pinned links are timed by the kernel (BPF_ENABLE_STATS: run count and run
 * time per program) and their counters read: the VIP path's BPF time per packet against the
 * direct path's is what load balancing still costs per packet.
 *
 *   node --import tsx bench/vip-lab.ts [--seconds 5] [--runs 5]
 *
 * It brings up its own lab (refusing if one is up: the lab's names are fixed) and always takes
 * it, the kernel path and the nft table down again, also when a step fails.
 */
import {spawn, type ChildProcess} from 'node:child_process'
import {pathToFileURL} from 'node:url'
import {execIn, listNetns, netnsPath} from '../src/sys/netns.js'
import {readLabState} from '../src/lab/state.js'
import {buildKernelPath, kernelEnds, removeKernelPath, type KernelEnd} from './kernel-path.js'
import {cli, labDown, measurer, sleep, type Stats} from './lab-bench.js'
import {
  counterDelta,
  enableBpfStats,
  loadAverage,
  nodeCounters,
  progRunTimes,
  runTimeDelta,
  type ProgRunTime,
} from './bpf-run-time.js'
import {fmtSpread, spread} from './summary.js'
import {tcpStream, udpSmall} from './throughput.js'
import {taskCgroup} from '../src/tasks/runner.js'

const NETWORK = 'snvip'
const SERVER = 'snvip-iperf'
const CLIENT = 'snvip-client'
const KVIP = '10.99.0.100'
const NFT_TABLE = 'snbench_vip'

export type VipPath = 'vip' | 'direct' | 'kernel'
export type VipTest = 'udp' | 'tcp'
/** The swarmnet paths, whose BPF programs are timed. */
export type SnPath = 'vip' | 'direct'

/** Where a swarmnet path's BPF time went over all its runs of one test. */
export interface BpfCost {
  /** Datagrams sent (udp) or MB received (tcp) over those runs: what the time is divided by. */
  units: number
  progs: {node: 'client' | 'server'; name: string; runs: number; ns: number}[]
  /** sn_stats counters that moved, per node, over those runs. */
  counters: {client: string; server: string}
}

export interface VipLabFigures {
  seconds: number
  runs: number
  udp: Record<VipPath, number[]>
  tcp: Record<VipPath, number[]>
  /** The iperf3 sender's CPU %, per run. */
  senderCpu: Record<VipTest, Record<VipPath, number[]>>
  /** Each run's path order. */
  order: VipPath[][]
  /** The 1-minute load average at each run's start, and at the end. */
  load: number[]
  bpf: Record<VipTest, Record<SnPath, BpfCost>>
  notes: string[]
}

interface TaskJson {
  id: string
  node: string
  state: string
  netns?: string
  addresses: {network: string; ip: string}[]
}

async function running(svc: string, n: number): Promise<TaskJson[]> {
  const deadline = Date.now() + 60_000
  let last: TaskJson[] = []
  while (Date.now() < deadline) {
    last = JSON.parse(await cli(['service', 'ps', svc, '--json'], 'n1')) as TaskJson[]
    const up = last.filter((t) => t.state === 'running' && t.netns && t.addresses.some((a) => a.network === NETWORK))
    if (up.length >= n) return up
    await sleep(500)
  }
  throw new Error(`${svc}: not ${n} running tasks after 60 s: ${JSON.stringify(last)}`)
}

const lbCounter = (k: string) => k.startsWith('lb_') || k.startsWith('sock_lb_')

/** The order of the paths in run i: VIP and direct side by side, their order swapped every run. */
export function runOrder(i: number): VipPath[] {
  const base: VipPath[] = ['vip', 'direct', 'kernel']
  return i % 2 === 0 ? base : [...base].reverse()
}

const emptyCost = (): BpfCost => ({units: 0, progs: [], counters: {client: '', server: ''}})

type Cost = {runs: number; ns: number}
const newSums = () => ({client: new Map<string, Cost>(), server: new Map<string, Cost>(), units: 0})
function addCost(into: Map<string, Cost>, d: Map<string, Cost>): void {
  for (const [name, x] of d) {
    const cur = into.get(name) ?? {runs: 0, ns: 0}
    into.set(name, {runs: cur.runs + x.runs, ns: cur.ns + x.ns})
  }
}

/** Both nodes' programs' run times and counters, read from their pins (milliseconds, no CLI). */
function snapshot(clientNode: string, serverNode: string) {
  return {
    progs: {client: progRunTimes(clientNode), server: progRunTimes(serverNode)} as Record<
      'client' | 'server',
      Map<number, ProgRunTime>
    >,
    counters: {client: nodeCounters(clientNode), server: nodeCounters(serverNode)},
  }
}

export async function benchVipLab(
  opts: {seconds?: number; runs?: number; log?: (s: string) => void} = {},
): Promise<VipLabFigures> {
  const seconds = opts.seconds ?? 5
  const runs = opts.runs ?? 5
  const log = opts.log ?? ((s: string) => console.error(`[bench vip] ${s}`))
  if (listNetns('sn-lab-').length > 0 || readLabState()) throw new Error('a lab is up: not ours, not touching it')
  const out: VipLabFigures = {
    seconds,
    runs,
    udp: {vip: [], direct: [], kernel: []},
    tcp: {vip: [], direct: [], kernel: []},
    senderCpu: {udp: {vip: [], direct: [], kernel: []}, tcp: {vip: [], direct: [], kernel: []}},
    order: [],
    load: [],
    bpf: {udp: {vip: emptyCost(), direct: emptyCost()}, tcp: {vip: emptyCost(), direct: emptyCost()}},
    notes: [],
  }
  let stats: {close(): void} | undefined
  let ends: KernelEnd[] = []
  let kserver: ChildProcess | undefined
  log('lab up --nodes 3')
  try {
    // Inside the try: a lab up that fails half way leaves pieces that lab down removes.
    await cli(['lab', 'up', '--nodes', '3'], undefined, 180_000)
    const state = readLabState()
    if (!state) throw new Error('lab up left no state file')
    await cli(['network', 'create', NETWORK], 'n1')
    await cli(['service', 'create', '--name', SERVER, '--network', NETWORK, '--', 'iperf3', '-s'], 'n1')
    await cli(['service', 'create', '--name', CLIENT, '--mode', 'global', '--network', NETWORK, '--', 'sleep', 'infinity'], 'n1')
    const [server] = await running(SERVER, 1)
    const clients = await running(CLIENT, 2)
    const client = clients.find((t) => t.node !== server!.node)
    if (!client) throw new Error(`no client task on a node other than the server's (${server!.node})`)
    const ipOf = (t: TaskJson) => t.addresses.find((a) => a.network === NETWORK)!.ip
    const svc = JSON.parse(await cli(['service', 'inspect', SERVER, '--json'], 'n1')) as {vips: {network: string; ip: string}[]}
    const vip = svc.vips.find((v) => v.network === NETWORK)?.ip
    if (!vip) throw new Error(`${SERVER} has no VIP on ${NETWORK}: ${JSON.stringify(svc.vips)}`)
    const cns = client.netns!
    const sip = ipOf(server!)
    log(`client ${client.node} ${ipOf(client)}, server ${server!.node} ${sip}, VIP ${vip}`)

    const node = (name: string) => {
      const n = state.nodes.find((x) => x.name === name)
      if (!n) throw new Error(`node ${name} not in the lab state`)
      return n
    }
    // Set before building so that a half-built path is removed too.
    ends = kernelEnds([node(client.node), node(server!.node)])
    log(
      `kernel path: vxlan id 5000 dstport 4790 + bridge, ${ends.map((e) => `${e.node} ${e.ip}`).join(' -> ')}; nft DNAT ${KVIP}`,
    )
    await buildKernelPath(ends)
    const [kc, ks] = ends as [KernelEnd, KernelEnd]
    // The client's own namespace DNATs the VIP as kube-proxy's nftables mode would; conntrack
    // reverses the replies. The VIP is on-link in 10.99.0.0/24: no neighbour is asked before the
    // DNAT, and the rerouted packet goes to the server's permanent neighbour entry.
    const rules = `table ip ${NFT_TABLE} {
  chain out { type nat hook output priority -100; ip daddr ${KVIP} counter dnat to ${ks.ip}; }
}`
    await execIn(kc.netns, ['nft', '-f', '-'], 'nft DNAT rules', {input: rules})
    kserver = spawn('nsenter', [`--net=${netnsPath(ks.netns)}`, '--', 'iperf3', '-s'], {stdio: 'ignore'})
    kserver.on('error', () => undefined)
    await sleep(500)

    // swarmnet's paths from inside the client task's cgroup too, as the task's own process: its
    // sockets meet the node's cgroup programs (load balancing at connect(), bpf/sock_lb.c).
    const ccg = taskCgroup(client.node, client.id)
    const paths: Record<VipPath, [string, string, string | undefined]> = {
      vip: [cns, vip, ccg],
      direct: [cns, sip, ccg],
      kernel: [kc.netns, KVIP, undefined],
    }
    // Each path works before anything is measured (and warms up ARP, CT and caches).
    for (const [name, [ns, dst, cg]] of Object.entries(paths)) {
      await tcpStream(ns, dst, 1, cg).catch((e) => {
        throw new Error(`${name} path does not work: ${(e as Error).message}`)
      })
    }
    stats = enableBpfStats()
    // Per swarmnet path and test, summed over its runs: BPF run time on both nodes and the counters.
    const sums: Record<VipTest, Record<SnPath, {client: Map<string, Cost>; server: Map<string, Cost>; units: number}>> = {
      udp: {vip: newSums(), direct: newSums()},
      tcp: {vip: newSums(), direct: newSums()},
    }
    const counted: Record<VipTest, Record<SnPath, {client: Stats; server: Stats}>> = {
      udp: {vip: {client: {}, server: {}}, direct: {client: {}, server: {}}},
      tcp: {vip: {client: {}, server: {}}, direct: {client: {}, server: {}}},
    }
    const measure = measurer(out.notes)
    const one = async (test: VipTest, path: VipPath) => {
      const [ns, dst, cg] = paths[path]
      const sn = path === 'kernel' ? undefined : path
      const before = sn ? snapshot(client.node, server!.node) : undefined
      let units = 0
      await measure(`${test} ${path}`, out[test][path], async () => {
        if (test === 'udp') {
          const x = await udpSmall(ns, dst, seconds, cg)
          out.senderCpu.udp[path].push(x.cpu[0])
          units = x.sent
          return x.pps
        }
        const x = await tcpStream(ns, dst, seconds, cg)
        out.senderCpu.tcp[path].push(x.cpu[0])
        units = x.bytes / 1e6
        return x.gbps
      })
      // A failed measurement is NaN in both lists, so they stay aligned by run.
      if (out.senderCpu[test][path].length < out[test][path].length) out.senderCpu[test][path].push(NaN)
      if (sn && before) {
        const after = snapshot(client.node, server!.node)
        const s = sums[test][sn]
        s.units += units
        addCost(s.client, runTimeDelta(before.progs.client, after.progs.client))
        addCost(s.server, runTimeDelta(before.progs.server, after.progs.server))
        const c = counted[test][sn]
        for (const [k, v] of Object.entries(after.counters.client))
          c.client[k] = (c.client[k] ?? 0) + v - (before.counters.client[k] ?? 0)
        for (const [k, v] of Object.entries(after.counters.server))
          c.server[k] = (c.server[k] ?? 0) + v - (before.counters.server[k] ?? 0)
      }
    }
    for (let i = 0; i < runs; i++) {
      const order = runOrder(i)
      out.order.push(order)
      out.load.push(await loadAverage())
      for (const test of ['udp', 'tcp'] as const) for (const path of order) await one(test, path)
      log(
        `run ${i + 1} (${order.join(', ')}; load ${out.load[i]}): udp ${order.map((n) => `${n} ${Math.round(out.udp[n][i]!)}`).join(', ')} pps; tcp ${order.map((n) => `${n} ${out.tcp[n][i]!.toFixed(2)}`).join(', ')} Gb/s`,
      )
    }
    out.load.push(await loadAverage())
    for (const test of ['udp', 'tcp'] as const)
      for (const sn of ['vip', 'direct'] as const) {
        const s = sums[test][sn]
        const c = counted[test][sn]
        out.bpf[test][sn] = {
          units: s.units,
          progs: [
            ...[...s.client].map(([name, x]) => ({node: 'client' as const, name, ...x})),
            ...[...s.server].map(([name, x]) => ({node: 'server' as const, name, ...x})),
          ],
          counters: {
            client: counterDelta({}, c.client, (k) => lbCounter(k) && c.client[k] !== 0),
            server: counterDelta({}, c.server, (k) => lbCounter(k) && c.server[k] !== 0),
          },
        }
      }
    // The nat hook sees a connection's first packet only: the counter is the connections DNATed.
    const nft = await execIn(kc.netns, ['nft', 'list', 'table', 'ip', NFT_TABLE], 'nft counters')
    out.notes.push(
      `kernel path: the nft DNAT rule matched ${/counter packets (\d+)/.exec(nft)?.[1] ?? '?'} connections (first packets)`,
    )
  } finally {
    stats?.close()
    if (kserver && kserver.exitCode === null && kserver.signalCode === null) {
      const gone = new Promise<void>((r) => kserver!.once('close', () => r()))
      kserver.kill('SIGTERM')
      await Promise.race([gone, sleep(3000)])
      if (kserver.exitCode === null && kserver.signalCode === null) kserver.kill('SIGKILL')
    }
    if (ends.length > 0) {
      // The table lives in the client's kernel-path namespace: removing it first keeps this exact.
      await execIn(ends[0]!.netns, ['nft', 'delete', 'table', 'ip', NFT_TABLE], 'nft cleanup').catch(() => undefined)
      const errs = await removeKernelPath(ends)
      if (errs.length > 0) log(`kernel path cleanup: ${errs.join('; ')}`)
    }
    await labDown(log)
  }
  return out
}

export function formatVipLab(f: VipLabFigures): string[] {
  const lines = [
    `client task -> service with 1 remote backend, 3-node lab; iperf3, ${f.runs} runs of ${f.seconds} s per path, VIP and direct side by side, their order swapped every run (${f.order
      .slice(0, 2)
      .map((o) => o.join(' > '))
      .join(' / ')}); median (min-max, n)`,
    `load average (1 min) at each run's start: ${f.load.slice(0, -1).join(' / ')}; at the end: ${f.load[f.load.length - 1]}`,
  ]
  const row = (test: VipTest, name: string, unit: string, fmt: (x: number) => string) => {
    const r = f[test]
    const c = f.senderCpu[test]
    const [v, d, k] = [spread(r.vip), spread(r.direct), spread(r.kernel)]
    const pairs = r.vip.map((x, i) => x / r.direct[i]!)
    const cpu = (p: VipPath) => spread(c[p]).median.toFixed(0)
    const runs = (p: VipPath) => r[p].map((x, i) => `${fmt(x)} (${c[p][i]}%)`).join(' / ')
    const lines = [
      `${name}: VIP ${fmtSpread(v, fmt)} ${unit}, direct ${fmtSpread(d, fmt)} ${unit}, kernel vxlan + nft DNAT ${fmtSpread(k, fmt)} ${unit}`,
      `  VIP/direct ${(v.median / d.median).toFixed(3)} (issue 25 goal >= 0.99), paired per run ${fmtSpread(spread(pairs), (x) => x.toFixed(3))}: ${pairs.map((x) => x.toFixed(2)).join(' / ')}; VIP/kernel ${(v.median / k.median).toFixed(2)} (goal >= 2)`,
      `  runs (iperf3 sender CPU %): VIP ${runs('vip')}; direct ${runs('direct')}; kernel ${runs('kernel')}`,
    ]
    if (test === 'udp') {
      // The sender does the whole path in its own system call and softirqs (one CPU): packets per
      // second of its CPU is the path's cost, which another process taking the CPU moves less.
      const perCpu = (p: VipPath) => spread(r[p].map((x, i) => x / (c[p][i]! / 100)))
      const [pv, pd, pk] = [perCpu('vip'), perCpu('direct'), perCpu('kernel')]
      lines.push(
        `  per second of the sender's CPU: VIP ${fmtSpread(pv, fmt)}, direct ${fmtSpread(pd, fmt)}, kernel ${fmtSpread(pk, fmt)}; VIP/direct ${(pv.median / pd.median).toFixed(3)}, VIP/kernel ${(pv.median / pk.median).toFixed(2)}`,
      )
    } else {
      lines.push(`  iperf3 sender CPU (median %): VIP ${cpu('vip')}, direct ${cpu('direct')}, kernel ${cpu('kernel')}`)
    }
    return [...lines, ...bpfLines(f.bpf[test], test === 'udp' ? 'datagram sent' : 'MB received')]
  }
  lines.push(...row('udp', 'udp 64 B (-l 64 -b 0, connected)', 'pps', (x) => Math.round(x).toLocaleString('en-US')))
  lines.push(...row('tcp', '1 tcp stream', 'Gb/s', (x) => x.toFixed(2)))
  lines.push(...f.notes)
  return lines
}

/**
 * BPF run time per unit of traffic for each swarmnet path (kernel.bpf_stats), and VIP minus direct.
 * Programs that ran at least once per 100 units are listed; the rest (the connects, the agents'
 * own sockets, DNS and gateway traffic meanwhile) are summed as one figure, and counted in the total.
 */
function bpfLines(b: Record<SnPath, BpfCost>, per: string): string[] {
  const udp = per === 'datagram sent'
  const perUnit = (ns: number, c: BpfCost) => ns / (c.units || NaN)
  const total = (c: BpfCost) =>
    perUnit(
      c.progs.reduce((s, p) => s + p.ns, 0),
      c,
    )
  // ns per datagram; us per MB
  const fmt = (x: number) => (udp ? `${x.toFixed(1)} ns` : `${(x / 1e3).toFixed(2)} us`)
  const progs = (c: BpfCost) => {
    const often = c.progs.filter((p) => p.runs / (c.units || NaN) >= 0.01).sort((x, y) => y.ns - x.ns)
    const rest = c.progs.filter((p) => !often.includes(p))
    return [
      ...often.map(
        (p) =>
          `${p.node} ${p.name} ${(p.runs / c.units).toFixed(udp ? 3 : 1)} runs x ${(p.ns / p.runs).toFixed(0)} ns = ${fmt(perUnit(p.ns, c))}`,
      ),
      `${rest.length} others ${fmt(
        perUnit(
          rest.reduce((s, p) => s + p.ns, 0),
          c,
        ),
      )}`,
    ].join(', ')
  }
  return [
    `  BPF run time per ${per} (bpf_stats, both nodes, all runs): VIP ${fmt(total(b.vip))}, direct ${fmt(total(b.direct))}, VIP - direct ${fmt(total(b.vip) - total(b.direct))}`,
    `    VIP: ${progs(b.vip)}`,
    `    direct: ${progs(b.direct)}`,
    `  lb counters, VIP: client ${b.vip.counters.client}; server ${b.vip.counters.server}; direct: client ${b.direct.counters.client}; server ${b.direct.counters.server}`,
  ]
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const arg = (name: string) => {
    const i = process.argv.indexOf(name)
    return i >= 0 ? Number(process.argv[i + 1]) : undefined
  }
  benchVipLab({
    ...(arg('--seconds') ? {seconds: arg('--seconds')} : {}),
    ...(arg('--runs') ? {runs: arg('--runs')} : {}),
  }).then(
    (f) => {
      for (const l of formatVipLab(f)) console.log(l)
    },
    (e) => {
      console.error(e instanceof Error ? e.message : String(e))
      process.exitCode = 1
    },
  )
}
