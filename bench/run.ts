// `npm run bench`: what the data plane costs, measured in one run on this
// machine: ns per packet of each program (the kernel times BPF_PROG_TEST_RUN
// itself), then cross-node throughput in the lab for swarmnet and for the
// kernel's own vxlan+bridge path built the Docker way, with the ratio; and a million fuzzed
// packets through every program (fuzz.ts) and a million socket operations (fuzz-sock.ts), held
// to their oracles.
// Numbers, not assertions: nothing here fails on a slow machine.
//
//   npm run bench -- [--only overlay,vip,mesh,dns,tasks,scale] [--runs N] [--seconds S] [--json]
//
// --only runs those sections alone (the other in-process ones are skipped); --json ends the output
// with one JSON object of the ratios (bench/summary.ts), every key present, null when not run.
import {benchPrograms} from './progs.js'
import {benchSwim, formatSwim} from './swim-sim.js'
import {benchFanout, formatFanout} from './fanout-sim.js'
import {benchThroughput, formatTable} from './throughput.js'
import {benchCliStart} from './cli-start.js'
import {benchLb} from './lb.js'
import {benchEtcd} from './etcd.js'
import {benchStore, formatStore} from './store.js'
import {benchGossipSeal, formatGossipSeal} from './gossip-seal.js'
import {benchGossipPushPull, formatGossipPushPull} from './gossip-pushpull.js'
import {benchScale} from './scale.js'
import {benchMeshLab, benchMeshPrograms, formatMesh, MESH_TCP_HEADLINE} from './mesh.js'
import {benchDns, formatDns} from './dns.js'
import {benchVipLab, formatVipLab} from './vip-lab.js'
import {benchLabScale, formatLabScale} from './lab-scale.js'
import {benchRatios, parseBenchArgs, type BenchRuns} from './summary.js'
import {formatFuzz, fuzz} from './fuzz.js'
import {formatSock, fuzzSock} from './fuzz-sock.js'

// The targets are for the programs themselves; the executed redirect is reported beside them.
const targets: Record<string, number> = {'xdp decap (program)': 40, 'tc encap (program)': 60}

let args
try {
  args = parseBenchArgs(process.argv.slice(2))
} catch (e) {
  console.error(e instanceof Error ? e.message : String(e))
  process.exit(2)
}
const {only, runs, seconds} = args
const lab = !args.programsOnly
const collected: BenchRuns = {}

console.log('# swarmnet bench\n')
console.log(`machine: ${(await import('node:os')).cpus().length} CPUs, kernel ${(await import('node:os')).release()}`)
console.log(
  `lab sections: ${lab ? [...only].filter((s) => s !== 'scale').join(', ') || 'none' : 'none'}; ${runs} runs of each path, alternating; medians (min-max)\n`,
)
if (!args.partial) {
  const cli = benchCliStart()
  console.log('## CLI start\n')
  console.log(`swarmnet --help, with the packed manifest   ${cli.manifestMs.toFixed(0).padStart(5)} ms   (target <= 300 ms)`)
  console.log(`swarmnet --help, without it (a clone)       ${cli.noManifestMs.toFixed(0).padStart(5)} ms\n`)
  console.log('## programs (BPF_PROG_TEST_RUN, 64-byte packets)\n')
  for (const r of await benchPrograms()) {
    const t = Object.entries(targets).find(([k]) => r.name === k)
    const timer = r.overheadNs !== undefined ? `, ${r.overheadNs.toFixed(0)} ns of timer subtracted` : ''
    console.log(`${r.name.padEnd(34)} ${r.nsPerPacket.toFixed(1).padStart(7)} ns/packet${t ? `   (target <= ${t[1]} ns)` : ''}`)
    console.log(`${''.padEnd(36)}${r.method}${timer}: ${r.measures}`)
  }
  console.log('\n## load balancer (VIPs)\n')
  for (const line of benchLb().lines) console.log(line)
  console.log('\n## desired state: embedded vs etcd (3 local members)\n')
  for (const line of await benchEtcd()) console.log(line)
}
if (!args.partial || only.has('scale')) {
  console.log(
    '\n## control plane at scale: 10,000 services, 1,000 nodes (manager code in-process; on etcd, 3 manager processes)\n',
  )
  const scale = await benchScale()
  for (const line of scale.lines) console.log(line)
  console.log(JSON.stringify(scale.json))
}
if (!args.partial) {
  console.log('\n## store: acknowledged writes with durability (log + group commit, this disk)\n')
  console.log(formatStore(await benchStore()))
  console.log('\n## gossip: authenticating one message (the real transport, no sockets)\n')
  console.log(formatGossipSeal(benchGossipSeal()))
  console.log('\n## gossip: one anti-entropy round between two nodes of 10,000 entries (by summaries, by whole digests)\n')
  console.log(formatGossipPushPull(await benchGossipPushPull({runs: 3})))
  console.log('\n## membership at 1,000 nodes (simulated network)\n')
  console.log(formatSwim(benchSwim()))
  console.log('\n## store updates at 1,000 nodes (simulated network)\n')
  console.log(formatFanout(benchFanout()))
  // Correctness, not speed: a mismatch is printed with its packet, and the bench goes on.
  console.log(
    '\n## fuzzing: 1,000,000 packets through every packet program, 1,000,000 socket connect/sendto operations (fuzz.ts, fuzz-sock.ts)\n',
  )
  for (const line of formatFuzz(fuzz({count: 1_000_000}))) console.log(line)
  for (const line of formatSock(fuzzSock({count: 1_000_000}))) console.log(line)
}
if (lab && only.has('dns')) {
  console.log(
    '\n## dns: an A question for a service name from a task (dnsperf, at most 64 questions outstanding: q/s and latency; kxdpgun, AF_XDP: q/s)\n',
  )
  const d = await benchDns({runs})
  console.log(formatDns(d))
  // The ratios are kxdpgun's (AF_XDP, a client that costs less than the servers: dnsperf's thread
  // was the limit), the responder's taken against dnsmasq on the same long name; without kxdpgun,
  // one dnsperf thread's on one socket (the other settings' ratios are in the text above).
  const one = d.byClient.find((x) => x.client.threads === 1 && x.client.sockets === 1)!.rows
  const k = d.kxdpgun
  collected.dns = k
    ? {
        fast: k.fast.map((r) => r.qps),
        responder: k.responder.map((r) => r.qps),
        dnsmasq: k.dnsmasq.map((r) => r.qps),
        dnsmasqForResponder: k.dnsmasqLong.map((r) => r.qps),
        client: 'kxdpgun',
      }
    : {
        fast: one.fast.map((r) => r.qps),
        responder: one.responder.map((r) => r.qps),
        dnsmasq: one.dnsmasq.map((r) => r.qps),
        client: 'dnsperf, 1 thread',
      }
  console.log(`dnsFastVsDnsmasq and dnsResponderVsDnsmasq in --json: from ${collected.dns.client}`)
}
if (lab && only.has('overlay')) {
  console.log('\n## overlay: cross-node task to task in the lab (against the bare underlay and the kernel vxlan)\n')
  const t = await benchThroughput({seconds, runs})
  console.log(formatTable(t))
  for (const r of t) for (const n of r.notes) console.log(`${r.test}: ${n}`)
  const by = (name: string) => t.find((r) => r.test === name)!
  collected.overlay = {
    udp: {swarmnet: by('udp-64B').swarmnet.runs, bare: by('udp-64B').bare.runs},
    tcp: {swarmnet: by('tcp-1-stream').swarmnet.runs, bare: by('tcp-1-stream').bare.runs},
  }
}
if (lab && only.has('vip')) {
  console.log('\n## vip: cross-node task -> VIP in the lab (against the direct address and nft DNAT)\n')
  const v = await benchVipLab({seconds, runs})
  for (const line of formatVipLab(v)) console.log(line)
  collected.vip = {udp: {vip: v.udp.vip, direct: v.udp.direct}, tcp: {vip: v.tcp.vip, direct: v.tcp.direct}}
}
if (!args.partial || only.has('mesh')) {
  console.log('\n## mesh: routing mesh (published ports)\n')
  const meshProgs = args.partial ? [] : benchMeshPrograms()
  const meshLab = lab ? await benchMeshLab({seconds, runs}) : undefined
  for (const line of formatMesh(meshProgs, meshLab)) console.log(line)
  // The figures whose sender is not the limit (marked * in the text): trafgen's frames for small
  // UDP, two iperf3 processes for TCP; iperf3's single-client figures are printed beside them.
  if (meshLab) collected.mesh = {udp: meshLab.runs.udpFrames, tcp: meshLab.runs[MESH_TCP_HEADLINE]}
}
if (lab && only.has('tasks')) {
  console.log('\n## tasks: 1,000 tasks in a 3-node lab (created, listed, removed through the CLI)\n')
  for (const line of formatLabScale(await benchLabScale())) console.log(line)
}
if (args.json) {
  console.log('\nratios: median over median of the same run; null: the section was not run or gave no number')
  console.log(JSON.stringify(benchRatios(collected)))
}
