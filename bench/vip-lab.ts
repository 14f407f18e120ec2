/**
 * Cross-node task -> VIP, measured in a 3-node lab (issue 8):
 *
 * - swarmnet, to the VIP: a client task (service snvip-client, --mode global, one per node)
 *   sends to the VIP of service snvip-iperf (1 replica, iperf3 -s) from a node that does not run
 *   the server, so every packet is DNATed by sn_tc_task and crosses the underlay;
 * - swarmnet, direct: the same client task to the server task's own address;
 * - the kernel's path: the Docker-style kernel vxlan + bridge overlay between the same two nodes
 *   (bench/kernel-path.ts), with nftables DNAT in the client's namespace (nat output hook:
 *   the VIP 10.99.0.100 -> the server's 10.99.0.2, conntrack reverses the replies).
 *
 * For each: small UDP (iperf3 -u -l 64 -b 0, packets/s received at the server) and one TCP
 * stream (iperf3, Gb/s received). The three paths alternate within each run so drift on a
 * shared machine hits all alike; the figure is the median of the runs.
 *
 *   node --import tsx bench/vip-lab.ts [--seconds 5] [--runs 3]
 *
 * It brings up its own lab (refusing if one is up: the lab's names are fixed) and always takes
 * it, the kernel path and the nft table down again, also when a step fails.
 */
import {spawn, type ChildProcess} from 'node:child_process'
import {pathToFileURL} from 'node:url'
import {execIn, listNetns, netnsPath} from '../src/sys/netns.js'
import {readLabState} from '../src/lab/state.js'
import {buildKernelPath, kernelEnds, removeKernelPath, type KernelEnd} from './kernel-path.js'
import {cli, labDown, measurer, sleep, snStats, type Stats} from './lab-bench.js'
import {tcpStream, udpSmall} from './throughput.js'
import {taskCgroup} from '../src/tasks/runner.js'

const NETWORK = 'snvip'
const SERVER = 'snvip-iperf'
const CLIENT = 'snvip-client'
const KVIP = '10.99.0.100'
const NFT_TABLE = 'snbench_vip'

export type VipPath = 'vip' | 'direct' | 'kernel'
export interface VipLabFigures {
  seconds: number
  runs: number
  udp: Record<VipPath, number[]>
  tcp: Record<VipPath, number[]>
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

const lbDelta = (a: Stats, b: Stats) =>
  Object.keys(b)
    .filter((k) => (k.startsWith('lb_') || k.startsWith('sock_lb_')) && (b[k] ?? 0) !== (a[k] ?? 0))
    .map((k) => `${k}+${(b[k] ?? 0) - (a[k] ?? 0)}`)
    .join(' ') || 'no lb_ counter changed'

export async function benchVipLab(
  opts: {seconds?: number; runs?: number; log?: (s: string) => void} = {},
): Promise<VipLabFigures> {
  const seconds = opts.seconds ?? 5
  const runs = opts.runs ?? 3
  const log = opts.log ?? ((s: string) => console.error(`[bench vip] ${s}`))
  if (listNetns('sn-lab-').length > 0 || readLabState()) throw new Error('a lab is up: not ours, not touching it')
  const out: VipLabFigures = {
    seconds,
    runs,
    udp: {vip: [], direct: [], kernel: []},
    tcp: {vip: [], direct: [], kernel: []},
    notes: [],
  }
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
    const paths: [VipPath, string, string, string | undefined][] = [
      ['vip', cns, vip, ccg],
      ['direct', cns, sip, ccg],
      ['kernel', kc.netns, KVIP, undefined],
    ]
    // Each path works before anything is measured (and warms up ARP, CT and caches).
    for (const [name, ns, dst, cg] of paths) {
      await tcpStream(ns, dst, 1, cg).catch((e) => {
        throw new Error(`${name} path does not work: ${(e as Error).message}`)
      })
    }
    const before = await snStats(client.node)
    const measure = measurer(out.notes)
    for (let i = 0; i < runs; i++) {
      for (const [name, ns, dst, cg] of paths)
        await measure(`udp ${name}`, out.udp[name], async () => (await udpSmall(ns, dst, seconds, cg)).pps)
      for (const [name, ns, dst, cg] of paths)
        await measure(`tcp ${name}`, out.tcp[name], async () => (await tcpStream(ns, dst, seconds, cg)).gbps)
      log(
        `run ${i + 1}: udp ${paths.map(([n]) => `${n} ${Math.round(out.udp[n][i]!)}`).join(', ')} pps; tcp ${paths.map(([n]) => `${n} ${out.tcp[n][i]!.toFixed(2)}`).join(', ')} Gb/s`,
      )
    }
    const after = await snStats(client.node)
    out.notes.push(`sn_stats on ${client.node} (client) over the runs: ${lbDelta(before, after)}`)
    // The nat hook sees a connection's first packet only: the counter is the connections DNATed.
    const nft = await execIn(kc.netns, ['nft', 'list', 'table', 'ip', NFT_TABLE], 'nft counters')
    out.notes.push(
      `kernel path: the nft DNAT rule matched ${/counter packets (\d+)/.exec(nft)?.[1] ?? '?'} connections (first packets)`,
    )
  } finally {
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

const median = (xs: number[]) => {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b)
  if (s.length === 0) return NaN
  const m = s.length >> 1
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

export function formatVipLab(f: VipLabFigures): string[] {
  const lines = [
    `client task -> service with 1 remote backend, 3-node lab; iperf3, ${f.runs} runs of ${f.seconds} s per path, paths alternating; median`,
  ]
  const row = (name: string, unit: string, r: Record<VipPath, number[]>, fmt: (x: number) => string) => {
    const [v, d, k] = [median(r.vip), median(r.direct), median(r.kernel)]
    return [
      `${name.padEnd(28)} VIP ${fmt(v)} ${unit}, direct ${fmt(d)} ${unit}, kernel vxlan + nft DNAT ${fmt(k)} ${unit}`,
      `${''.padEnd(28)} VIP/direct ${(v / d).toFixed(2)} (goal >= 0.95), VIP/kernel ${(v / k).toFixed(2)} (goal >= 2)  (runs VIP ${r.vip.map(fmt).join('/')}, direct ${r.direct.map(fmt).join('/')}, kernel ${r.kernel.map(fmt).join('/')})`,
    ]
  }
  lines.push(...row('udp 64 B (-l 64 -b 0)', 'pps', f.udp, (x) => Math.round(x).toLocaleString('en-US')))
  lines.push(...row('1 tcp stream', 'Gb/s', f.tcp, (x) => x.toFixed(2)))
  lines.push(...f.notes)
  return lines
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
