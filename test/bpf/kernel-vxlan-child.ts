// Child of kernel-vxlan.test.ts, run with `ip netns exec` in the swarmnet
// node's namespace (attach acts on the calling process's namespace; the pins go
// to the private bpffs of its mount namespace). Loads the programs with shared
// maps, fills them, attaches them as the agent does, moves the task's end into
// the task namespace, then pings both ways and prints the counters.
// argv: <task netns> <kernel netns>
import {execFileSync, spawnSync} from 'node:child_process'
import {type BpfObject, attachTc, attachXdp, ensureBpffs, ifindexOf} from '../../src/bpf/index.js'
import {BpfObject as Obj} from '../../src/bpf/object.js'
import {DIST, Loaded} from './harness.js'
import path from 'node:path'

const [taskNs, kernelNs] = process.argv.slice(2) as [string, string]
const sh = (args: string[]) => execFileSync(args[0]!, args.slice(1), {encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe']})

ensureBpffs()
const pinRoot = '/sys/fs/bpf/interop'
const xdp = new Loaded(pinRoot, 'xdp_underlay.o', 'sn_xdp_underlay')
const tc = new Loaded(pinRoot, 'tc_task.o', 'sn_tc_task', {keepPins: true})
const peer: BpfObject = Obj.open(path.join(DIST, 'xdp_task_peer.o'))
try {
  peer.load()
  const hostIfindex = ifindexOf('sn-kt0')
  xdp.setConfig({nodeIp: '172.30.0.11', vxlanPort: 4789, underlayIfindex: ifindexOf('sn-ku0')})
  xdp.addNetwork(4097, '10.0.1.0', 24)
  xdp.addEndpoint({vni: 4097, ip: '10.0.1.4', nodeIp: '172.30.0.11', ifindex: hostIfindex, mac: '02:42:0a:00:01:04', local: true})
  xdp.addEndpoint({vni: 4097, ip: '10.0.1.9', nodeIp: '172.30.0.12', ifindex: 0, mac: '02:42:0a:00:01:09', local: false})
  xdp.addDevice(hostIfindex, 4097, '10.0.1.4')
  attachXdp('sn-ku0', xdp.prog.fd, {mode: 'native'})
  attachTc('sn-kt0', tc.prog.fd, 'ingress')
  attachXdp('sn-kt1', peer.program('sn_xdp_task_peer').fd, {mode: 'native'})
  sh(['ip', 'link', 'set', 'sn-kt1', 'netns', taskNs])
  sh(['ip', '-n', taskNs, 'link', 'set', 'sn-kt1', 'name', 'eth0'])
  sh(['ip', '-n', taskNs, 'link', 'set', 'eth0', 'address', '02:42:0a:00:01:04', 'mtu', '1450', 'up'])
  sh(['ip', '-n', taskNs, 'addr', 'add', '10.0.1.4/24', 'dev', 'eth0'])

  const ping = (ns: string, to: string) => sh(['ip', 'netns', 'exec', ns, 'ping', '-c', '3', '-i', '0.2', '-W', '2', to])
  const fromTask = ping(taskNs, '10.0.1.9')
  const fromKernel = ping(kernelNs, '10.0.1.4')
  const counters = Object.fromEntries(Object.entries(xdp.stats()).map(([k, v]) => [k, Number(v)]))

  // The network MTU, end to end: a task whose interface claims 1500 (this test's task may change
  // it; a sandboxed one may not) sends a DF datagram of 1500 bytes. The program answers with
  // ICMP fragmentation needed, and the task's own kernel takes it and lowers its path MTU.
  sh(['ip', '-n', taskNs, 'link', 'set', 'eth0', 'mtu', '1500'])
  const big = spawnSync(
    'ip',
    ['netns', 'exec', taskNs, 'ping', '-M', 'do', '-s', '1472', '-c', '2', '-i', '0.3', '-W', '1', '10.0.1.9'],
    {encoding: 'utf8'},
  )
  const route = sh(['ip', '-n', taskNs, 'route', 'get', '10.0.1.9'])
  const frag = Number(xdp.stats().tc_frag_needed)
  const vx = JSON.parse(sh(['ip', '-n', kernelNs, '-s', '-j', 'link', 'show', 'vx0'])) as {
    stats64: {rx: {packets: number}; tx: {packets: number}}
  }[]
  process.stdout.write(
    JSON.stringify({fromTask, fromKernel, counters, vxlan: vx[0]?.stats64, pmtu: {ping: big.stdout + big.stderr, route, frag}}),
  )
} finally {
  peer.close()
  tc.obj.close()
  xdp.close()
}
