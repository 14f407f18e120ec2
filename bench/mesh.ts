/**
 * The routing mesh, measured:
 *
 * - ns/packet of sn_xdp_underlay for a 64-byte UDP packet to a published port: local and
 *   remote backend, connection tracked or not, and a 64-byte segment of an established TCP flow
 *   to the remote backend (mesh-progs-child.ts, in a namespace of its own so the FIB lookup
 *   answers as on a node);
 * - in a 3-node lab, from the lab's client (sn-lab-client) to the address of a node that runs
 *   no task, with the one backend on another node: small-UDP packets/s (iperf3 -u -l 64 -b 0)
 *   and one TCP stream (iperf3), swarmnet's published port against the kernel's path built the
 *   Docker way without IPVS: nftables DNAT on the receiving node to the task's address on a
 *   kernel vxlan + bridge overlay (bench/kernel-path.ts), and masquerade as Swarm's ingress does.
 *   Both from the same client with the same iperf3 settings, which goes first swapped every run;
 *   beside them the iperf3 client's (sender's) and server's CPU %, UDP loss at the server and
 *   the load average: with the client at ~100% of a CPU the sender, not the path, is the limit;
 * - create-to-reachable: from `service create -p` returning to the port answering on all 3
 *   nodes' addresses (curl from the client every 20 ms), median of 5.
 *
 *   node --import tsx bench/mesh.ts [--programs-only] [--seconds 5] [--runs 5]
 */
import {execFileSync, spawn, type ChildProcess} from 'node:child_process'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {fileURLToPath, pathToFileURL} from 'node:url'
import {run} from '../src/sys/exec.js'
import {execIn, listNetns, netnsPath} from '../src/sys/netns.js'
import {readLabState} from '../src/lab/state.js'
import {compileBpf} from '../test/fixtures/bpf/build.js'
import {tsxInNetns} from '../test/bpf/netns-child.js'
import {buildKernelPath, kernelEnds, removeKernelPath, KBR, KVX, type KernelEnd} from './kernel-path.js'
import {cli, iperf, labDown, measurer, sleep, type IperfJson} from './lab-bench.js'
import {loadAverage} from './bpf-run-time.js'
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

interface TaskJson {
  node: string
  state: string
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
export interface MeshLabFigures {
  createToReachableMs: number[]
  udp: {swarmnet: number[]; kernel: number[]}
  tcp: {swarmnet: number[]; kernel: number[]}
  /** iperf3 client (sender) and server CPU % per run, by test and path. */
  cpu: Record<'udp' | 'tcp', Record<MeshPath, [number, number][]>>
  /** UDP datagrams lost at the server / sent, over all runs, by path. */
  udpLoss: Record<MeshPath, {sent: number; lost: number}>
  /** The 1-minute load average at each run's start, and at the end. */
  load: number[]
  order: MeshPath[][]
  notes: string[]
}

const DNAT_TABLE = 'snbench_mesh'
const KBR_IP = '10.99.0.254'
const KBR_MAC = '02:42:0a:63:00:fe'

/** The kernel's path on the receiving node: nft DNAT to the task over vxlan + bridge, masquerade. */
async function buildKernelIngress(ingress: KernelEnd, backend: KernelEnd, port: number): Promise<void> {
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
  const rules = `table ip ${DNAT_TABLE} {
  chain pre { type nat hook prerouting priority -100; iif "eth0" tcp dport ${port} dnat to ${backend.ip}:5201; iif "eth0" udp dport ${port} dnat to ${backend.ip}:5201; }
  chain post { type nat hook postrouting priority 100; oif "${KBR}" masquerade; }
}`
  await execIn(ingress.nodeNetns, ['nft', '-f', '-'], 'nft DNAT rules', {input: rules})
}

export async function benchMeshLab(
  opts: {seconds?: number; runs?: number; log?: (s: string) => void} = {},
): Promise<MeshLabFigures> {
  const seconds = opts.seconds ?? 5
  const runs = opts.runs ?? 5
  const log = opts.log ?? ((s: string) => console.error(`[bench mesh] ${s}`))
  if (listNetns('sn-lab-').length > 0 || readLabState()) throw new Error('a lab is up: not ours, not touching it')
  const out: MeshLabFigures = {
    createToReachableMs: [],
    udp: {swarmnet: [], kernel: []},
    tcp: {swarmnet: [], kernel: []},
    cpu: {udp: {swarmnet: [], kernel: []}, tcp: {swarmnet: [], kernel: []}},
    udpLoss: {swarmnet: {sent: 0, lost: 0}, kernel: {sent: 0, lost: 0}},
    load: [],
    order: [],
    notes: [],
  }
  let ends: KernelEnd[] = []
  let server: ChildProcess | undefined
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

    await cli(['service', 'create', '--name', 'meshperf', '-p', '5201:5201', '-p', '5201:5201/udp', '--', 'iperf3', '-s'], 'n1')
    const [task] = await runningOn('meshperf', 1)
    const backendNode = task!.node
    const ingressNode = state.nodes.find((n) => n.name !== backendNode)!.name
    const node = (name: string) => state.nodes.find((x) => x.name === name)!
    log(`backend on ${backendNode}; the client talks to ${ingressNode} (${addr[ingressNode]})`)
    ends = kernelEnds([node(ingressNode), node(backendNode)])
    await buildKernelPath(ends)
    const [ki, kb] = ends as [KernelEnd, KernelEnd]
    await buildKernelIngress(ki, kb, 5202)
    server = spawn('nsenter', [`--net=${netnsPath(kb.netns)}`, '--', 'iperf3', '-s'], {stdio: 'ignore'})
    server.on('error', () => undefined)
    await sleep(500)
    const ingressAddr = addr[ingressNode]!
    // Both work before anything is measured.
    await tcpGbps(ingressAddr, 5201, 1)
    await tcpGbps(ingressAddr, 5202, 1)
    const measure = measurer(out.notes)
    const port: Record<MeshPath, number> = {swarmnet: 5201, kernel: 5202}
    for (let i = 0; i < runs; i++) {
      // The same client, the same iperf3 settings for both; which goes first swaps every run.
      const order: MeshPath[] = i % 2 === 0 ? ['swarmnet', 'kernel'] : ['kernel', 'swarmnet']
      out.order.push(order)
      out.load.push(await loadAverage())
      for (const p of order)
        await measure(`udp ${p}`, out.udp[p], async () => {
          const x = await udpPps(ingressAddr, port[p], seconds)
          out.cpu.udp[p].push(x.cpu)
          out.udpLoss[p].sent += x.sent ?? 0
          out.udpLoss[p].lost += x.lost ?? 0
          return x.value
        })
      for (const p of order)
        await measure(`tcp ${p}`, out.tcp[p], async () => {
          const x = await tcpGbps(ingressAddr, port[p], seconds)
          out.cpu.tcp[p].push(x.cpu)
          return x.value
        })
      const cpu = (t: 'udp' | 'tcp', p: MeshPath) => out.cpu[t][p][out.cpu[t][p].length - 1]?.join('/') ?? '?'
      log(
        `run ${i + 1} (load ${out.load[i]}): udp swarmnet ${Math.round(out.udp.swarmnet[i]!)} pps (cpu c/s ${cpu('udp', 'swarmnet')}%), kernel ${Math.round(out.udp.kernel[i]!)} pps (${cpu('udp', 'kernel')}%); tcp swarmnet ${out.tcp.swarmnet[i]!.toFixed(2)} Gb/s (${cpu('tcp', 'swarmnet')}%), kernel ${out.tcp.kernel[i]!.toFixed(2)} Gb/s (${cpu('tcp', 'kernel')}%)`,
      )
    }
    out.load.push(await loadAverage())
    const stats = JSON.parse(await cli(['inspect', 'maps', '--map', 'sn_stats', '--json', '--host', ingressNode])) as {
      maps: {entries: {value: Record<string, string | number>}[]}[]
    }
    const v = stats.maps[0]?.entries[0]?.value ?? {}
    out.notes.push(
      `sn_stats on ${ingressNode} (ingress): mesh_new_flow ${v.mesh_new_flow}, mesh_remote ${v.mesh_remote}, mesh_reply ${v.mesh_reply}, mesh_fib_fail ${v.mesh_fib_fail}, mesh_drop ${v.mesh_drop}`,
    )
  } finally {
    if (server && server.exitCode === null) server.kill('SIGKILL')
    if (ends.length > 0) {
      await execIn(ends[0]!.nodeNetns, ['nft', 'delete', 'table', 'ip', DNAT_TABLE], 'nft cleanup').catch(() => undefined)
      const errs = await removeKernelPath(ends)
      if (errs.length > 0) log(`kernel path cleanup: ${errs.join('; ')}`)
    }
    await labDown(log)
  }
  return out
}

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
  const row = (name: string, unit: string, t: 'udp' | 'tcp', f: (x: number) => string) => {
    const [s, k] = [lab[t].swarmnet, lab[t].kernel]
    const cpu = (p: MeshPath) => {
      const xs = lab.cpu[t][p]
      return `${m(xs.map((x) => x[0]))}/${m(xs.map((x) => x[1]))}`
    }
    return `${name.padEnd(34)} swarmnet ${fmtSpread(spread(s), f)} ${unit}, kernel DNAT+vxlan ${fmtSpread(spread(k), f)} ${unit}, ratio ${(m(s) / m(k)).toFixed(2)}  (runs ${s.map(f).join('/')} vs ${k.map(f).join('/')}; iperf3 client/server CPU % median: swarmnet ${cpu('swarmnet')}, kernel ${cpu('kernel')})`
  }
  lines.push(row('client -> node:P, udp 64 B', 'pps', 'udp', (x) => Math.round(x).toLocaleString('en-US')))
  const loss = (p: MeshPath) => {
    const l = lab.udpLoss[p]
    return `${l.lost}/${l.sent} (${l.sent ? ((100 * l.lost) / l.sent).toFixed(1) : '?'}%)`
  }
  lines.push(`${''.padEnd(34)} udp lost at the server: swarmnet ${loss('swarmnet')}, kernel ${loss('kernel')}`)
  lines.push(row('client -> node:P, 1 tcp stream', 'Gb/s', 'tcp', (x) => x.toFixed(2)))
  lines.push(...lab.notes)
  return lines
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const arg = (name: string) => {
    const i = process.argv.indexOf(name)
    return i >= 0 ? Number(process.argv[i + 1]) : undefined
  }
  const progs = benchMeshPrograms()
  const lab = process.argv.includes('--programs-only')
    ? undefined
    : await benchMeshLab({
        ...(arg('--seconds') ? {seconds: arg('--seconds')} : {}),
        ...(arg('--runs') ? {runs: arg('--runs')} : {}),
      })
  for (const l of formatMesh(progs, lab)) console.log(l)
}
