// Child of xdp_task.test.ts, run by nsenter in one "node" namespace (netlink and BPF links name
// devices by the caller's namespace). Makes the node's data path as the agent would: maps pinned
// under <pinRoot>/maps, xdp_underlay on the underlay device, for each task a veth (xdp_task_peer and
// GRO on the task side, as the agent's preparePeer) with tc_task on the host side's TCX ingress
// and, unless told not to, xdp_task in native XDP on the host side too; remote tasks as remote
// endpoints. Exits once done: the attachments stay (netlink XDP on the devices, TCX links pinned
// under <pinRoot>/links); the parent removes the namespaces and the pins.
//
// argv: <pinRoot> <spec as JSON: NodeSpec>
// Prints one JSON line: {ok: true}.
import {execFileSync} from 'node:child_process'
import {mkdirSync} from 'node:fs'
import {join} from 'node:path'
import {attachXdp} from '../../src/bpf/attach.js'
import {BpfObject, SN_EP_FLAGS, snEndpoint, snEndpointKey} from '../../src/bpf/index.js'
import {attachTcxLink} from '../../src/bpf/links.js'
import {libc} from '../../src/sys/libc.js'
import {DIST, Loaded} from './harness.js'

export interface NodeSpec {
  nodeIp: string
  underlay: string
  vni: number
  mtu: number
  xdpTask: boolean
  tasks: {ns: string; host: string; ip: string; mac: string}[]
  remotes: {ip: string; mac: string; nodeIp: string}[]
  /** A VIP endpoint with no service behind it: tc_task's to refuse. */
  vip?: {ip: string; mac: string}
}

const [pinRoot, specJson] = process.argv.slice(2) as [string, string]
const spec = JSON.parse(specJson) as NodeSpec
const ip = (args: string[]) => execFileSync('ip', args, {stdio: ['ignore', 'ignore', 'inherit']})
const ifindex = (dev: string) => libc().if_nametoindex(dev)
const maps = join(pinRoot, 'maps')

const underlay = new Loaded(maps, 'xdp_underlay.o', 'sn_xdp_underlay')
const tc = new Loaded(maps, 'tc_task.o', 'sn_tc_task', {keepPins: true})
const xt = new Loaded(maps, 'xdp_task.o', 'sn_xdp_task', {keepPins: true})
underlay.setConfig({nodeIp: spec.nodeIp, vxlanPort: 4789, underlayIfindex: ifindex(spec.underlay)})
underlay.addNetwork(spec.vni, '10.77.0.0', 24, spec.mtu)
attachXdp(spec.underlay, underlay.prog.fd, {mode: 'native'})
mkdirSync(join(pinRoot, 'links'), {recursive: true})

for (const t of spec.tasks) {
  ip([
    'link',
    'add',
    t.host,
    'mtu',
    String(spec.mtu),
    'type',
    'veth',
    'peer',
    'name',
    `${t.host}-p`,
    'mtu',
    String(spec.mtu),
    'address',
    t.mac,
  ])
  const peer = BpfObject.open(join(DIST, 'xdp_task_peer.o'))
  peer.load()
  attachXdp(`${t.host}-p`, peer.program('sn_xdp_task_peer').fd, {mode: 'native'})
  peer.close()
  execFileSync('ethtool', ['-K', `${t.host}-p`, 'gro', 'on'], {stdio: 'ignore'})
  ip(['link', 'set', 'dev', `${t.host}-p`, 'netns', t.ns, 'name', 'eth0'])
  ip(['link', 'set', 'dev', t.host, 'up'])
  ip(['-n', t.ns, 'addr', 'add', `${t.ip}/24`, 'dev', 'eth0'])
  ip(['-n', t.ns, 'link', 'set', 'dev', 'eth0', 'up'])
  ip(['-n', t.ns, 'link', 'set', 'dev', 'lo', 'up'])
  tc.addEndpoint({vni: spec.vni, ip: t.ip, nodeIp: spec.nodeIp, ifindex: ifindex(t.host), mac: t.mac, local: true})
  tc.addDevice(ifindex(t.host), spec.vni, t.ip)
  attachTcxLink(t.host, tc.prog.fd, 'ingress', {pinPath: join(pinRoot, 'links', t.host)})
  if (spec.xdpTask) attachXdp(t.host, xt.prog.fd, {mode: 'native'})
}
for (const r of spec.remotes) tc.addEndpoint({vni: spec.vni, ip: r.ip, nodeIp: r.nodeIp, ifindex: 0, mac: r.mac, local: false})
if (spec.vip)
  tc.map('sn_endpoints').update(
    snEndpointKey.encode({vni: spec.vni, ip: spec.vip.ip}),
    snEndpoint.encode({node_ip: '0.0.0.0', ifindex: 0, mac: spec.vip.mac, flags: SN_EP_FLAGS.VIP}),
  )
console.log(JSON.stringify({ok: true}))
