// `npm run bench`: what the data plane costs, measured in one run on this
// machine: ns per packet of each program (the kernel times BPF_PROG_TEST_RUN
// itself), then cross-node throughput in the lab for swarmnet and for the
// kernel's own vxlan+bridge path built the Docker way, with the ratio.
// Numbers, not assertions: nothing here fails on a slow machine.
import {benchPrograms} from './progs.js'
import {benchSwim, formatSwim} from './swim-sim.js'
import {benchFanout, formatFanout} from './fanout-sim.js'
import {benchThroughput, formatTable} from './throughput.js'
import {benchCliStart} from './cli-start.js'
import {benchLb} from './lb.js'
import {benchEtcd} from './etcd.js'
import {benchStore, formatStore} from './store.js'
import {benchScale} from './scale.js'
import {benchMeshLab, benchMeshPrograms, formatMesh} from './mesh.js'
import {benchDns, formatDns} from './dns.js'
import {benchVipLab, formatVipLab} from './vip-lab.js'

// The targets are for the programs themselves; the executed redirect is reported beside them.
const targets: Record<string, number> = {'xdp decap (program)': 40, 'tc encap (program)': 60}

console.log('# swarmnet bench\n')
console.log(`machine: ${(await import('node:os')).cpus().length} CPUs, kernel ${(await import('node:os')).release()}\n`)
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
console.log('\n## control plane at scale: 10,000 services, 1,000 nodes (manager code in-process)\n')
{
  const scale = await benchScale()
  for (const line of scale.lines) console.log(line)
  console.log(JSON.stringify(scale.json))
}
console.log('\n## store: acknowledged writes with durability (log + group commit, this disk)\n')
console.log(formatStore(await benchStore()))
console.log('\n## membership at 1,000 nodes (simulated network)\n')
console.log(formatSwim(benchSwim()))
console.log('\n## store updates at 1,000 nodes (simulated network)\n')
console.log(formatFanout(benchFanout()))
const meshProgs = benchMeshPrograms()
if (!process.argv.includes('--programs-only')) {
  console.log('\n## DNS: an A question for a service name from a task (dnsperf from a task, at most 64 questions outstanding)\n')
  console.log(formatDns(await benchDns()))
  console.log('\n## cross-node throughput in the lab\n')
  console.log(formatTable(await benchThroughput({seconds: 5})))
  console.log('\n## cross-node task -> VIP in the lab (against the direct address and nft DNAT)\n')
  for (const line of formatVipLab(await benchVipLab({seconds: 5, runs: 3}))) console.log(line)
}
console.log('\n## routing mesh (published ports)\n')
const meshLab = process.argv.includes('--programs-only') ? undefined : await benchMeshLab({seconds: 5, runs: 3})
for (const line of formatMesh(meshProgs, meshLab)) console.log(line)
