/**
 * The routing mesh, measured:
 *
 * - ns/packet of sn_xdp_underlay for a 64-byte UDP packet to a published port: local and
 *   remote backend, connection tracked or not, and a 64-byte segment of an established TCP flow
 *   to the remote backend (mesh-progs-child.ts, in a namespace of its own so the FIB lookup
 *   answers as on a node);
 * - in a 3-node lab, from the lab's client (sn-lab-client) to the address of a node that runs
 *   no task, with the one backend on another node, swarmnet's published port against the kernel's
 *   path built the Docker way without IPVS: nftables DNAT on the receiving node to the task's
 *   address on a kernel vxlan + bridge overlay (bench/kernel-path.ts), and masquerade as Swarm's
 *   ingress does. Both from the same client with the same settings, which goes first swapped
 *   every run, the load average printed:
 *   - small UDP (64-byte payloads) from trafgen (bench/trafgen.ts: crafted frames, one sender
 *     per CPU, 256 source ports), counted where it arrives: the task namespace's UDP statistics
 *     around a socket that never reads (bench/udp-sink.ts), per second of sending; the headline
 *     (`meshUdpVsNft`). Checked first that swarmnet's frames are forwarded by the ingress node's
 *     XDP (mesh_remote) and the kernel path's by its vxlan device, not the other way;
 *   - small UDP from iperf3 -u -l 64 -b 0 (one client, received at its server), kept beside it:
 *     its client is at ~100% of a CPU, so it measures the sender more than the path;
 *   - TCP: one stream, one iperf3 with 4 streams, and two iperf3 processes with 2 streams each at
 *     once (two sending threads: iperf3 3.12 sends all its streams from one), with the iperf3
 *     clients' and servers' CPU %; the last is `meshTcpVsNft` (MESH_TCP_HEADLINE);
 *   - after the runs, one more trafgen and tcp -P 4 per path with the kernel's BPF statistics on:
 *     each program's ns per run and runs per frame / KB (not in the figures);
 * - create-to-reachable: from `service create -p` returning to the port answering on all 3
 *   nodes' addresses (curl from the client every 20 ms), median of 5.
 *
 *   node --import tsx bench/mesh.ts [--programs-only | --lab-only] [--seconds 5] [--runs 5] [--sender-cpus 2]
 */
import {execFileSync, spawn, type ChildProcess} from 'node:child_process'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {fileURLToPath, pathToFileURL} from 'node:url'
import {run} from '../src/sys/exec.js'
import {execIn, listNetns, netnsPath} from '../src/sys/netns.js'
import {readLabState} from '../src/lab/state.js'
import {compileBpf} from '../test/fixtures/bpf/build.js'
import {tsxInNetns} from '../test/bpf/netns-child.js'
import {buildKernelPath, kernelEnds, removeKernelPath, vxlanCounters, KBR, KVX, type KernelEnd} from './kernel-path.js'
import {cli, iperf, labDown, measurer, sleep, type IperfJson} from './lab-bench.js'
import {enableBpfStats, loadAverage, nodeCounters, progRunTimes, runTimeDelta} from './bpf-run-time.js'
import {sendFrames, trafgenConfig} from './trafgen.js'
import {delivered, startUdpSink, type UdpSink} from './udp-sink.js'
import {fmtSpread, spread} from './summary.js'

const HERE = dirname(fileURLToPath(import.meta.url))
const CLIENT_NS = 'sn-lab-client'
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

export interface MeshProgFigure {
  name: string
  nsPerPacket: number
  runs: number[]
  timer: number
}

/** ns/packet of the mesh's XDP path, in a namespace of its own (removed after). */
export function benchMeshPrograms(): MeshProgFigure[] {
  const ns = `sn-bm${process.pid}`
  const tmp = mkdtempSync(join(tmpdir(), 'sn-bench-mesh-'))
  execFileSync('ip', ['netns', 'add', ns])
  try {
    const ip = (args: string[]) => execFileSync('ip', ['-n', ns, ...args])
    ip(['link', 'add', 'sn-mu0', 'type', 'veth', 'peer', 'name', 'sn-mu1'])
    ip(['addr', 'add', '172.30.0.11/24', 'dev', 'sn-mu0'])
    ip(['link', 'set', 'sn-mu0', 'up'])
    ip(['link', 'set', 'sn-mu1', 'up'])
    ip(['neigh', 'replace', '172.30.0.12', 'lladdr', '02:00:00:00:00:0c', 'dev', 'sn-mu0', 'nud', 'permanent'])
    execFileSync('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1'])
    const empty = compileBpf(join(HERE, 'empty.c'), join(tmp, 'empty.o'))
    const out = execFileSync('ip', tsxInNetns(ns, join(HERE, 'mesh-progs-child.ts'), empty), {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    return JSON.parse(out) as MeshProgFigure[]
  } finally {
    execFileSync('ip', ['netns', 'del', ns])
    rmSync(tmp, {recursive: true, force: true})
  }
}

/** A measurement and the iperf3 client's (sender's) and server's CPU % over it. */
interface Sample {
  value: number
  cpu: [number, number]
  /** UDP: datagrams the client sent and the server lost. */
  sent?: number
  lost?: number
}

const cpuOf = (e: IperfJson['end']): [number, number] => [
  Math.round(e?.cpu_utilization_percent?.host_total ?? NaN),
  Math.round(e?.cpu_utilization_percent?.remote_total ?? NaN),
]

async function udpPps(addr: string, port: number, seconds: number): Promise<Sample> {
  const e =
    (await iperf(CLIENT_NS, ['-c', addr, '-p', String(port), '-u', '-l', '64', '-b', '0', '-t', String(seconds)], seconds)).end ??
    {}
  const received = (e.sum?.packets ?? 0) - (e.sum?.lost_packets ?? 0)
  return {
    value: received / (e.sum_received?.seconds ?? e.sum?.seconds ?? seconds),
    cpu: cpuOf(e),
    sent: e.sum?.packets ?? 0,
    lost: e.sum?.lost_packets ?? 0,
  }
}

async function tcpGbps(addr: string, port: number, seconds: number): Promise<Sample> {
  const e = (await iperf(CLIENT_NS, ['-c', addr, '-p', String(port), '-t', String(seconds)], seconds)).end ?? {}
  return {value: (e.sum_received?.bits_per_second ?? 0) / 1e9, cpu: cpuOf(e)}
}

/** TCP Gb/s received over `clients` iperf3 processes at once, one to each port, `streams` streams each. */
async function tcpParallel(addr: string, ports: number[], streams: number, seconds: number): Promise<Sample & {cpus: number[]}> {
  const ends = await Promise.all(
    ports.map(
      async (p) =>
        (await iperf(CLIENT_NS, ['-c', addr, '-p', String(p), '-P', String(streams), '-t', String(seconds)], seconds)).end ?? {},
    ),
  )
  const cpus = ends.map((e) => cpuOf(e)[0])
  return {
    value: ends.reduce((a, e) => a + (e.sum_received?.bits_per_second ?? 0), 0) / 1e9,
    cpu: [Math.max(...cpus), Math.max(...ends.map((e) => cpuOf(e)[1]))],
    cpus,
  }
}

interface TaskJson {
  node: string
  state: string
  netns?: string
}

async function runningOn(svc: string, n: number): Promise<TaskJson[]> {
  const deadline = Date.now() + 60_000
  while (Date.now() < deadline) {
    const t = (JSON.parse(await cli(['service', 'ps', svc, '--json'], 'n1')) as TaskJson[]).filter((x) => x.state === 'running')
    if (t.length >= n) return t
    await sleep(200)
  }
  throw new Error(`${svc}: not ${n} running tasks after 60 s`)
}

function answers(addr: string, port: number): boolean {
  try {
    execFileSync('nsenter', [`--net=${netnsPath(CLIENT_NS)}`, '--', 'curl', '-sf', '-m', '0.5', `http://${addr}:${port}/`], {
      stdio: 'ignore',
    })
    return true
  } catch {
    return false
  }
}

export type MeshPath = 'swarmnet' | 'kernel'
/**
 * The measurements, each on both paths: iperf3 small UDP (udp), trafgen small UDP counted at the
 * task (udpFrames), one TCP stream (tcp), one iperf3 with 4 streams (tcp4), and two iperf3
 * processes with 2 streams each at once (tcp2x2: two sending threads, one per CPU).
 */
export const MESH_TESTS = ['udp', 'udpFrames', 'tcp', 'tcp4', 'tcp2x2'] as const
export type MeshTest = (typeof MESH_TESTS)[number]

export interface MeshLabFigures {
  createToReachableMs: number[]
  /** Per test and path, one figure a run: pps (udp*) or Gb/s (tcp*); NaN for a failed run. */
  runs: Record<MeshTest, Record<MeshPath, number[]>>
  /** iperf3 client (sender) and server CPU % per run (the busiest client's for tcp2x2). */
  cpu: Record<Exclude<MeshTest, 'udpFrames'>, Record<MeshPath, [number, number][]>>
  /** UDP datagrams lost at the server / sent, over all iperf3 runs, by path. */
  udpLoss: Record<MeshPath, {sent: number; lost: number}>
  /** trafgen: frames/s it handed to the client's device per run, and over all runs frames sent and delivered to the task's socket. */
  frames: Record<MeshPath, {sentPps: number[]; sent: number; delivered: number; restarts: number}>
  /** trafgen processes (one per CPU) and source ports (flows). */
  sender: {cpus: number; flows: number}
  /** The 1-minute load average at each run's start, and at the end. */
  load: number[]
  order: MeshPath[][]
  notes: string[]
}

const DNAT_TABLE = 'snbench_mesh'
const KBR_IP = '10.99.0.254'
const KBR_MAC = '02:42:0a:63:00:fe'
/** Ports: iperf3 servers (the task's 5201 and 5203), the UDP sink's (5301); the kernel path's published ones are each + 1. */
const IPERF_PORT = 5201
const IPERF2_PORT = 5203
const SINK_PORT = 5301
const FLOWS: [number, number] = [20000, 20255]

/** The kernel's path on the receiving node: nft DNAT to the task over vxlan + bridge, masquerade. */
async function buildKernelIngress(ingress: KernelEnd, backend: KernelEnd): Promise<void> {
  const ipn = (ns: string, args: string[]) => run(['ip', '-n', ns, ...args], `ip ${args.join(' ')}`)
  await ipn(ingress.nodeNetns, ['link', 'set', 'dev', KBR, 'address', KBR_MAC])
  await ipn(ingress.nodeNetns, ['addr', 'add', `${KBR_IP}/24`, 'dev', KBR])
  await ipn(ingress.nodeNetns, ['neigh', 'replace', backend.ip, 'lladdr', backend.mac, 'dev', KBR, 'nud', 'permanent'])
  await run(
    ['bridge', '-n', backend.nodeNetns, 'fdb', 'replace', KBR_MAC, 'dev', KVX, 'dst', ingress.underlay, 'self', 'permanent'],
    'fdb of the ingress bridge',
  )
  await ipn(backend.netns, ['neigh', 'replace', KBR_IP, 'lladdr', KBR_MAC, 'dev', 'eth0', 'nud', 'permanent'])
  await ipn(backend.netns, ['route', 'add', 'default', 'via', KBR_IP])
  const dnat = (proto: string, port: number) => `iif "eth0" ${proto} dport ${port + 1} dnat to ${backend.ip}:${port};`
  const rules = `table ip ${DNAT_TABLE} {
  chain pre { type nat hook prerouting priority -100; ${dnat('tcp', IPERF_PORT)} ${dnat('udp', IPERF_PORT)} ${dnat('tcp', IPERF2_PORT)} ${dnat('udp', SINK_PORT)} }
  chain post { type nat hook postrouting priority 100; oif "${KBR}" masquerade; }
}`
  await execIn(ingress.nodeNetns, ['nft', '-f', '-'], 'nft DNAT rules', {input: rules})
}

/** Packets device `dev` in `ns` has sent. */
async function txPackets(ns: string, dev: string): Promise<number> {
  const [l] = JSON.parse(
    await run(['ip', '-n', ns, '-s', '-j', 'link', 'show', 'dev', dev], `reading ${dev}'s counters in ${ns}`),
  ) as {
    stats64: {tx: {packets: number}}
  }[]
  return l!.stats64.tx.packets
}

async function macOf(ns: string, dev: string): Promise<string> {
  const [l] = JSON.parse(await run(['ip', '-n', ns, '-j', 'link', 'show', 'dev', dev], `reading ${dev}'s MAC in ${ns}`)) as {
    address: string
  }[]
  return l!.address
}

/** Runs: paths alternating in each (which goes first swapped every run), then a diagnostic pass. */
export async function benchMeshLab(
  opts: {seconds?: number; runs?: number; senderCpus?: number; log?: (s: string) => void} = {},
): Promise<MeshLabFigures> {
  const seconds = opts.seconds ?? 5
  const runs = opts.runs ?? 5
  const senderCpus = opts.senderCpus ?? 2
  const log = opts.log ?? ((s: string) => console.error(`[bench mesh] ${s}`))
  if (listNetns('sn-lab-').length > 0 || readLabState()) throw new Error('a lab is up: not ours, not touching it')
  const both = <T>(f: () => T): Record<MeshPath, T> => ({swarmnet: f(), kernel: f()})
  const out: MeshLabFigures = {
    createToReachableMs: [],
    runs: {udp: both(() => []), udpFrames: both(() => []), tcp: both(() => []), tcp4: both(() => []), tcp2x2: both(() => [])},
    cpu: {udp: both(() => []), tcp: both(() => []), tcp4: both(() => []), tcp2x2: both(() => [])},
    udpLoss: both(() => ({sent: 0, lost: 0})),
    frames: both(() => ({sentPps: [], sent: 0, delivered: 0, restarts: 0})),
    sender: {cpus: senderCpus, flows: FLOWS[1] - FLOWS[0] + 1},
    load: [],
    order: [],
    notes: [],
  }
  let ends: KernelEnd[] = []
  const servers: ChildProcess[] = []
  const sinks: UdpSink[] = []
  const tmp = mkdtempSync(join(tmpdir(), 'sn-bench-mesh-'))
  log('lab up --nodes 3')
  await cli(['lab', 'up', '--nodes', '3'], undefined, 180_000)
  try {
    const state = readLabState()!
    const addr = Object.fromEntries(state.nodes.map((n) => [n.name, n.address]))
    for (let i = 0; i < 5; i++) {
      const port = 8080 + i
      const t0 = Date.now()
      await cli(['service', 'create', '--name', `reach${i}`, '--publish', `published=${port},target=80`], 'n1')
      const created = Date.now()
      const pending = new Set(Object.values(addr))
      while (pending.size > 0 && Date.now() - created < 30_000) {
        for (const a of [...pending]) if (answers(a, port)) pending.delete(a)
        if (pending.size > 0) await sleep(20)
      }
      if (pending.size > 0) throw new Error(`reach${i}: ${[...pending].join(', ')} never answered on ${port}`)
      out.createToReachableMs.push(Date.now() - created)
      log(`create -> reachable on 3 nodes: ${Date.now() - created} ms (the create itself took ${created - t0} ms)`)
      await cli(['service', 'rm', `reach${i}`], 'n1')
    }

    const pub = (p: number, proto = '') => ['-p', `${p}:${p}${proto}`]
    await cli(
      [
        'service',
        'create',
        '--name',
        'meshperf',
        ...pub(IPERF_PORT),
        ...pub(IPERF_PORT, '/udp'),
        ...pub(IPERF2_PORT),
        ...pub(SINK_PORT, '/udp'),
        '--',
        'iperf3',
        '-s',
      ],
      'n1',
    )
    const [task] = await runningOn('meshperf', 1)
    const backendNode = task!.node
    if (!task!.netns) throw new Error('meshperf: service ps gives no namespace for its task')
    const ingressNode = state.nodes.find((n) => n.name !== backendNode)!.name
    const node = (name: string) => state.nodes.find((x) => x.name === name)!
    log(`backend on ${backendNode}; the client talks to ${ingressNode} (${addr[ingressNode]})`)
    ends = kernelEnds([node(ingressNode), node(backendNode)])
    await buildKernelPath(ends)
    const [ki, kb] = ends as [KernelEnd, KernelEnd]
    await buildKernelIngress(ki, kb)
    const serve = (ns: string, port: number) => {
      const s = spawn('nsenter', [`--net=${netnsPath(ns)}`, '--', 'iperf3', '-s', '-p', String(port)], {stdio: 'ignore'})
      s.on('error', () => undefined)
      servers.push(s)
    }
    // The task runs the first iperf3 server itself; the second, on both paths, and the kernel
    // path's first are started in the task's namespace by the bench.
    serve(task!.netns, IPERF2_PORT)
    serve(kb.netns, IPERF_PORT)
    serve(kb.netns, IPERF2_PORT)
    const sink: Record<MeshPath, UdpSink> = {
      swarmnet: await startUdpSink(task!.netns, SINK_PORT),
      kernel: await startUdpSink(kb.netns, SINK_PORT),
    }
    sinks.push(sink.swarmnet, sink.kernel)
    await sleep(500)
    const ingressAddr = addr[ingressNode]!
    const port: Record<MeshPath, (p: number) => number> = {swarmnet: (p) => p, kernel: (p) => p + 1}
    // trafgen writes whole frames: from the client's MAC to the ingress node's.
    const clientMac = await macOf(CLIENT_NS, 'eth0')
    const ingressMac = await macOf(node(ingressNode).netns, 'eth0')
    const config: Record<MeshPath, string> = {swarmnet: join(tmp, 'swarmnet.cfg'), kernel: join(tmp, 'kernel.cfg')}
    for (const p of ['swarmnet', 'kernel'] as const)
      writeFileSync(
        config[p],
        trafgenConfig({
          srcMac: clientMac,
          dstMac: ingressMac,
          src: state.client.address,
          dst: ingressAddr,
          dport: port[p](SINK_PORT),
          sports: FLOWS,
          payload: 64,
        }),
      )
    /** The frames delivered to the task's socket per second of trafgen's sending; what went the mesh's / the kernel's way. */
    const frames = async (p: MeshPath, secs: number) => {
      const mesh0 = nodeCounters(ingressNode)
      const vx0 = await vxlanCounters(ki.nodeNetns)
      const tx0 = await txPackets(CLIENT_NS, 'eth0')
      const u0 = sink[p].counters()
      const t = await sendFrames(CLIENT_NS, 'eth0', config[p], secs, senderCpus)
      await sleep(200) // what is still in flight
      const u1 = sink[p].counters()
      const sent = (await txPackets(CLIENT_NS, 'eth0')) - tx0
      const mesh1 = nodeCounters(ingressNode)
      const vx1 = await vxlanCounters(ki.nodeNetns)
      const got = delivered(u1) - delivered(u0)
      return {
        pps: got / t.seconds,
        sentPps: sent / t.seconds,
        sent,
        got,
        restarts: t.restarts,
        meshRemote: (mesh1.mesh_remote ?? 0) - (mesh0.mesh_remote ?? 0),
        vxlanTx: vx1.txPackets - vx0.txPackets,
      }
    }
    // Every path works, and goes the way it should, before anything is measured.
    await tcpGbps(ingressAddr, port.swarmnet(IPERF_PORT), 1)
    await tcpGbps(ingressAddr, port.kernel(IPERF_PORT), 1)
    await tcpParallel(ingressAddr, [port.swarmnet(IPERF_PORT), port.swarmnet(IPERF2_PORT)], 1, 1)
    await tcpParallel(ingressAddr, [port.kernel(IPERF_PORT), port.kernel(IPERF2_PORT)], 1, 1)
    for (const p of ['swarmnet', 'kernel'] as const) {
      const f = await frames(p, 1)
      // Swarmnet's frames are forwarded by the ingress node's XDP (mesh_remote), not its stack
      // (the kernel path's vxlan device); the kernel path's the other way round.
      const [ours, theirs] = p === 'swarmnet' ? [f.meshRemote, f.vxlanTx] : [f.vxlanTx, f.meshRemote]
      out.notes.push(
        `trafgen check, ${p}: ${f.sent} frames sent (trafgen restarted ${f.restarts} times), ${f.got} delivered to the task's socket; on ${ingressNode} mesh_remote +${f.meshRemote}, ${KVX} tx +${f.vxlanTx}`,
      )
      if (f.got === 0 || ours < f.got || theirs > f.got / 100)
        throw new Error(`trafgen check, ${p}: the frames did not go the ${p} way (${out.notes[out.notes.length - 1]})`)
    }
    const measure = measurer(out.notes)
    for (let i = 0; i < runs; i++) {
      // The same client, the same settings for both; which goes first swaps every run.
      const order: MeshPath[] = i % 2 === 0 ? ['swarmnet', 'kernel'] : ['kernel', 'swarmnet']
      out.order.push(order)
      out.load.push(await loadAverage())
      for (const p of order)
        await measure(`udp ${p}`, out.runs.udp[p], async () => {
          const x = await udpPps(ingressAddr, port[p](IPERF_PORT), seconds)
          out.cpu.udp[p].push(x.cpu)
          out.udpLoss[p].sent += x.sent ?? 0
          out.udpLoss[p].lost += x.lost ?? 0
          return x.value
        })
      for (const p of order)
        await measure(`udp frames ${p}`, out.runs.udpFrames[p], async () => {
          const f = await frames(p, seconds)
          out.frames[p].sentPps.push(f.sentPps)
          out.frames[p].sent += f.sent
          out.frames[p].delivered += f.got
          out.frames[p].restarts += f.restarts
          return f.pps
        })
      for (const p of order)
        await measure(`tcp ${p}`, out.runs.tcp[p], async () => {
          const x = await tcpGbps(ingressAddr, port[p](IPERF_PORT), seconds)
          out.cpu.tcp[p].push(x.cpu)
          return x.value
        })
      for (const p of order)
        await measure(`tcp -P 4 ${p}`, out.runs.tcp4[p], async () => {
          const x = await tcpParallel(ingressAddr, [port[p](IPERF_PORT)], 4, seconds)
          out.cpu.tcp4[p].push(x.cpu)
          return x.value
        })
      for (const p of order)
        await measure(`tcp 2 x -P 2 ${p}`, out.runs.tcp2x2[p], async () => {
          const x = await tcpParallel(ingressAddr, [port[p](IPERF_PORT), port[p](IPERF2_PORT)], 2, seconds)
          out.cpu.tcp2x2[p].push(x.cpu)
          return x.value
        })
      const last = (t: MeshTest, p: MeshPath) => out.runs[t][p][out.runs[t][p].length - 1] ?? NaN
      const cpu = (t: Exclude<MeshTest, 'udpFrames'>, p: MeshPath) => out.cpu[t][p][out.cpu[t][p].length - 1]?.join('/') ?? '?'
      const pps = (x: number) => Math.round(x).toLocaleString('en-US')
      log(
        `run ${i + 1} (load ${out.load[i]}): ` +
          MESH_TESTS.map((t) => {
            const f = t.startsWith('udp') ? pps : (x: number) => x.toFixed(2)
            const c = (p: MeshPath) => (t === 'udpFrames' ? '' : ` (${cpu(t, p)}%)`)
            return `${t} ${f(last(t, 'swarmnet'))}${c('swarmnet')} vs ${f(last(t, 'kernel'))}${c('kernel')}`
          }).join('; '),
      )
    }
    out.load.push(await loadAverage())
    out.notes.push(...(await diagnose()))
    const v = nodeCounters(ingressNode)
    out.notes.push(
      `sn_stats on ${ingressNode} (ingress): mesh_new_flow ${v.mesh_new_flow}, mesh_remote ${v.mesh_remote}, mesh_reply ${v.mesh_reply}, mesh_fib_fail ${v.mesh_fib_fail}, mesh_drop ${v.mesh_drop}`,
    )

    /**
     * Not part of the figures: one more trafgen and one more tcp -P 4 per path with the kernel's
     * BPF run-time statistics on (they cost each program run a little), for where swarmnet's
     * time goes: each program's ns per run and runs per delivered frame / per received KB.
     */
    async function diagnose(): Promise<string[]> {
      const lines: string[] = []
      const stats = enableBpfStats()
      try {
        for (const p of ['swarmnet', 'kernel'] as const) {
          const before = {i: progRunTimes(ingressNode), b: progRunTimes(backendNode)}
          const f = await frames(p, seconds)
          const mid = {i: progRunTimes(ingressNode), b: progRunTimes(backendNode)}
          const tcp = await tcpParallel(ingressAddr, [port[p](IPERF_PORT)], 4, seconds)
          const after = {i: progRunTimes(ingressNode), b: progRunTimes(backendNode)}
          const fmt = (a: Map<number, ProgRunTimeT>, b: Map<number, ProgRunTimeT>, per: number, unit: string) =>
            [...runTimeDelta(a, b)]
              // The programs of the path, not the odd socket call of the bench's own tools meanwhile.
              .filter(([, d]) => d.runs / per >= 0.01)
              .map(([n, d]) => `${n} ${(d.ns / d.runs).toFixed(0)} ns x ${(d.runs / per).toFixed(2)}/${unit}`)
              .join(', ') || 'none ran'
          const kb = (tcp.value * 1e9 * seconds) / 8 / 1024
          lines.push(
            `bpf run time, ${p} path (stats on; not in the figures): trafgen ${Math.round(f.pps).toLocaleString('en-US')} pps delivered: ingress ${fmt(before.i, mid.i, f.got, 'frame')}; backend ${fmt(before.b, mid.b, f.got, 'frame')}`,
            `bpf run time, ${p} path: tcp -P 4 ${tcp.value.toFixed(2)} Gb/s (client ${tcp.cpu[0]}% CPU): ingress ${fmt(mid.i, after.i, kb, 'KB')}; backend ${fmt(mid.b, after.b, kb, 'KB')}`,
          )
        }
      } catch (e) {
        lines.push(`bpf run time: ${(e as Error).message}`)
      } finally {
        stats.close()
      }
      return lines
    }
  } finally {
    for (const s of sinks) s.close()
    for (const s of servers) if (s.exitCode === null) s.kill('SIGKILL')
    if (ends.length > 0) {
      await execIn(ends[0]!.nodeNetns, ['nft', 'delete', 'table', 'ip', DNAT_TABLE], 'nft cleanup').catch(() => undefined)
      const errs = await removeKernelPath(ends)
      if (errs.length > 0) log(`kernel path cleanup: ${errs.join('; ')}`)
    }
    await labDown(log)
    rmSync(tmp, {recursive: true, force: true})
  }
  return out
}
type ProgRunTimeT = ReturnType<typeof progRunTimes> extends Map<number, infer V> ? V : never

/** Which TCP figure is the headline (`meshTcpVsNft`): the one whose sender is not the limit. */
export const MESH_TCP_HEADLINE: MeshTest = 'tcp2x2'

export function formatMesh(progs: MeshProgFigure[], lab?: MeshLabFigures): string[] {
  const lines: string[] = []
  for (const p of progs)
    lines.push(
      `${p.name.padEnd(32)} ${p.nsPerPacket.toFixed(1).padStart(7)} ns/packet   (single runs, median of 5 x 3,000, -${p.timer.toFixed(0)} ns timer; 64-byte UDP)`,
    )
  if (!lab) return lines
  const m = (xs: number[]) => median(xs.filter((x) => !Number.isNaN(x)))
  const c = lab.createToReachableMs
  lines.push(`create -> reachable on all 3 nodes: median ${m(c)} ms (runs ${c.join(' / ')}; goal <= 1000 ms)`)
  lines.push(
    `${lab.order.length} runs, paths swapped every run; load average (1 min) at each run's start: ${lab.load.slice(0, -1).join(' / ')}; at the end: ${lab.load[lab.load.length - 1]}`,
  )
  const pps = (x: number) => Math.round(x).toLocaleString('en-US')
  const gbps = (x: number) => x.toFixed(2)
  const row = (name: string, unit: string, t: MeshTest, f: (x: number) => string, tail: string) => {
    const [s, k] = [lab.runs[t].swarmnet, lab.runs[t].kernel]
    return `${name.padEnd(40)} swarmnet ${fmtSpread(spread(s), f)} ${unit}, kernel DNAT+vxlan ${fmtSpread(spread(k), f)} ${unit}, ratio ${(m(s) / m(k)).toFixed(2)}  (runs ${s.map(f).join('/')} vs ${k.map(f).join('/')}${tail})`
  }
  const cpu = (t: Exclude<MeshTest, 'udpFrames'>) => {
    const one = (p: MeshPath) => {
      const xs = lab.cpu[t][p]
      return `${m(xs.map((x) => x[0]))}/${m(xs.map((x) => x[1]))}`
    }
    return `; iperf3 client/server CPU % median: swarmnet ${one('swarmnet')}, kernel ${one('kernel')}`
  }
  const f = lab.frames
  const sent = (p: MeshPath) =>
    `${pps(m(f[p].sentPps))} pps sent, ${f[p].sent ? ((100 * f[p].delivered) / f[p].sent).toFixed(1) : '?'}% delivered, trafgen restarted ${f[p].restarts} times`
  lines.push(
    row(
      `udp 64 B, trafgen (${lab.sender.cpus} CPUs, ${lab.sender.flows} flows) *`,
      'pps',
      'udpFrames',
      pps,
      `; delivered to the task's socket per second of sending; swarmnet ${sent('swarmnet')}, kernel ${sent('kernel')}`,
    ),
  )
  lines.push(row('udp 64 B, iperf3 -u (1 client)', 'pps', 'udp', pps, cpu('udp')))
  const loss = (p: MeshPath) => {
    const l = lab.udpLoss[p]
    return `${l.lost}/${l.sent} (${l.sent ? ((100 * l.lost) / l.sent).toFixed(1) : '?'}%)`
  }
  lines.push(`${''.padEnd(40)} iperf3 udp lost at the server: swarmnet ${loss('swarmnet')}, kernel ${loss('kernel')}`)
  const star = (t: MeshTest) => (t === MESH_TCP_HEADLINE ? ' *' : '')
  lines.push(row(`tcp, 1 stream (1 iperf3)${star('tcp')}`, 'Gb/s', 'tcp', gbps, cpu('tcp')))
  lines.push(row(`tcp, 4 streams (1 iperf3 -P 4)${star('tcp4')}`, 'Gb/s', 'tcp4', gbps, cpu('tcp4')))
  lines.push(row(`tcp, 2 iperf3 -P 2 at once${star('tcp2x2')}`, 'Gb/s', 'tcp2x2', gbps, `${cpu('tcp2x2')} (the busier client)`))
  lines.push(`* the figures of meshUdpVsNft and meshTcpVsNft`)
  lines.push(...lab.notes)
  return lines
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const arg = (name: string) => {
    const i = process.argv.indexOf(name)
    return i >= 0 ? Number(process.argv[i + 1]) : undefined
  }
  const progs = process.argv.includes('--lab-only') ? [] : benchMeshPrograms()
  const lab = process.argv.includes('--programs-only')
    ? undefined
    : await benchMeshLab({
        ...(arg('--seconds') ? {seconds: arg('--seconds')} : {}),
        ...(arg('--runs') ? {runs: arg('--runs')} : {}),
        ...(arg('--sender-cpus') ? {senderCpus: arg('--sender-cpus')} : {}),
      })
  for (const l of formatMesh(progs, lab)) console.log(l)
}
