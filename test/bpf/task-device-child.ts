// Child of bench/task-device.ts and tc_task_local.test.ts, run by nsenter in the variant's "node" namespace (BPF links and
// netlink name devices by the caller's namespace). Makes two task devices into the task
// namespaces <A> and <B>, fills tc_task's maps as the agent would for two local tasks on one
// network, attaches tc_task where the variant says, and exits: the links are pinned under
// <pinRoot> and stay; the parent removes the namespaces and the pins.
//
// argv: <variant> <pinRoot> <A> <B> <tc_task object> [vip]
//   veth, veth-redirect, veth-q2: a veth per task (2 queues each end for veth-q2), as the agent makes
//     it: xdp_task_peer and GRO on the task side, tc_task on the host side's TCX ingress.
//   netkit: a netkit pair per task (L2), tc_task as the peer's own program (BPF_NETKIT_PEER).
//   vip: also a VIP, 10.77.0.100, whose one backend is B (B flagged a backend, so its replies get the VIP back).
// Prints one JSON line: {ok: true} or {unsupported: "<why>"}.
import {execFileSync} from 'node:child_process'
import {mkdirSync} from 'node:fs'
import {join} from 'node:path'
import {attachXdp} from '../../src/bpf/attach.js'
import {BpfObject, SN_DEV_FLAGS, SN_EP_FLAGS, snEndpoint, snEndpointKey} from '../../src/bpf/index.js'
import {libbpf} from '../../src/bpf/libbpf.js'
import {libc} from '../../src/sys/libc.js'
import {attachTcxLink} from '../../src/bpf/links.js'
import {createNetkit} from '../../src/sys/link-pair.js'
import {DIST, Loaded} from './harness.js'

const [variant, pinRoot, nsA, nsB, obj, vip] = process.argv.slice(2) as [string, string, string, string, string, string?]
const VNI = 100
const MTU = 1450
const BPF_NETKIT_PEER = 55 // enum bpf_attach_type (include/uapi/linux/bpf.h)
const tasks = [
  {ns: nsA, host: 'snk-a', ip: '10.77.0.2', mac: '02:42:0a:4d:00:02'},
  {ns: nsB, host: 'snk-b', ip: '10.77.0.3', mac: '02:42:0a:4d:00:03'},
]
const ip = (args: string[]) => execFileSync('ip', args, {stdio: ['ignore', 'ignore', 'inherit']})
const ifindex = (dev: string) => libc().if_nametoindex(dev)

const tc = new Loaded(join(pinRoot, 'maps'), obj, 'sn_tc_task')
tc.setConfig({nodeIp: '192.0.2.1', vxlanPort: 4789, underlayIfindex: 1})
tc.addNetwork(VNI, '10.77.0.0', 24, MTU)

for (const t of tasks) {
  if (variant === 'netkit') {
    try {
      createNetkit(t.host, 'eth0', {peerNs: t.ns, mtu: MTU, peerMac: t.mac})
    } catch (e) {
      console.log(JSON.stringify({unsupported: (e as Error).message}))
      process.exit(0)
    }
  } else {
    const q = variant === 'veth-q2' ? ['numtxqueues', '2', 'numrxqueues', '2'] : []
    ip([
      'link',
      'add',
      t.host,
      'mtu',
      String(MTU),
      ...q,
      'type',
      'veth',
      'peer',
      'name',
      `${t.host}-p`,
      'mtu',
      String(MTU),
      'address',
      t.mac,
      ...q,
    ])
    // As the agent's preparePeer: NAPI (and GRO) on the task side, set before the move.
    const peer = BpfObject.open(join(DIST, 'xdp_task_peer.o'))
    peer.load()
    attachXdp(`${t.host}-p`, peer.program('sn_xdp_task_peer').fd, {mode: 'native'})
    peer.close()
    execFileSync('ethtool', ['-K', `${t.host}-p`, 'gro', 'on'], {stdio: 'ignore'})
    ip(['link', 'set', 'dev', `${t.host}-p`, 'netns', t.ns, 'name', 'eth0'])
  }
  ip(['link', 'set', 'dev', t.host, 'up'])
  ip(['-n', t.ns, 'addr', 'add', `${t.ip}/24`, 'dev', 'eth0'])
  ip(['-n', t.ns, 'link', 'set', 'dev', 'eth0', 'up'])
  ip(['-n', t.ns, 'link', 'set', 'dev', 'lo', 'up'])
}
for (const t of tasks) {
  tc.addEndpoint({vni: VNI, ip: t.ip, nodeIp: '192.0.2.1', ifindex: ifindex(t.host), mac: t.mac, local: true})
  tc.addDevice(ifindex(t.host), VNI, t.ip)
}
if (vip === 'vip') {
  const b = tasks[1]!
  const endpoint = (ip: string, ifx: number, mac: string, flags: number) =>
    tc
      .map('sn_endpoints')
      .update(snEndpointKey.encode({vni: VNI, ip}), snEndpoint.encode({node_ip: '192.0.2.1', ifindex: ifx, mac, flags}))
  endpoint(b.ip, ifindex(b.host), b.mac, SN_EP_FLAGS.LOCAL | SN_EP_FLAGS.BACKEND)
  tc.addDevice(ifindex(b.host), VNI, b.ip, SN_DEV_FLAGS.BACKEND)
  endpoint('10.77.0.100', 0, '02:42:0a:4d:00:64', SN_EP_FLAGS.VIP)
  tc.addService(VNI, '10.77.0.100', 1, [{key: 'b', ip: b.ip, nodeIp: '192.0.2.1'}])
}
mkdirSync(join(pinRoot, 'links'), {recursive: true})
for (const t of tasks) {
  const pinPath = join(pinRoot, 'links', t.host)
  if (variant === 'netkit') {
    const fd = libbpf().bpf_link_create(tc.prog.fd, ifindex(t.host), BPF_NETKIT_PEER, null)
    if (fd < 0) throw new Error(`netkit peer link on ${t.host}: errno ${-fd}`)
    if (libbpf().bpf_obj_pin(fd, pinPath) < 0) throw new Error(`pinning ${pinPath}`)
    libc().close(fd)
  } else {
    attachTcxLink(t.host, tc.prog.fd, 'ingress', {pinPath})
  }
}
console.log(JSON.stringify({ok: true}))
