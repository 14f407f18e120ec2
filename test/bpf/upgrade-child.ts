// Child of upgrade.test.ts, run with `ip netns exec` in a namespace of its own
// (so its bpffs is a private instance that goes away with it). Plays a node
// upgraded from the layout before versioning (the objects of 02f50d1, in
// test/fixtures/bpf/layout-v1/): the old objects loaded with their maps pinned
// and filled, their programs attached; then the current Datapath opens the
// same node. Prints what it saw as JSON.
// argv: <node> <underlay dev> <task host dev>
import fs from 'node:fs'
import path from 'node:path'
import {
  BpfObject,
  attachTc,
  attachXdp,
  ensureBpffs,
  ifindexOf,
  nodePinDir,
  oldLayouts,
  layoutPinDir,
  snDevice,
  snEndpoint,
  snEndpointKey,
  u32,
} from '../../src/bpf/index.js'
import {Datapath} from '../../src/dataplane/datapath.js'
import {Loaded, REPO, TC_ACT_REDIRECT, skbCtx} from './harness.js'
import * as P from './packets.js'

const [node, underlay, hostDev] = process.argv.slice(2) as [string, string, string]
const V1 = path.join(REPO, 'test/fixtures/bpf/layout-v1')
const NODE_IP = '172.30.0.11'
const PEER_IP = '172.30.0.12'
const VNI = 4097
const TASK = {ip: '10.0.1.4', mac: '02:42:0a:00:01:04'}
const REMOTE = {ip: '10.0.1.9', mac: '02:42:0a:00:01:09'}

const out: Record<string, unknown> = {}
const hostIfindex = ifindexOf(hostDev)

ensureBpffs()

// 1. The node as main left it: maps pinned straight in <node>/, filled, programs attached.
const old = ['xdp_underlay', 'tc_task'].map((n) => BpfObject.open(path.join(V1, `${n}.o`), {pinRoot: nodePinDir(node)}))
for (const o of old) o.load()
const [oldXdp, oldTc] = old as [BpfObject, BpfObject]
// Layout 1's sn_config: node_ip, vxlan_port (be), flags, underlay_ifindex, mtu: 16 bytes.
const cfg1 = Buffer.alloc(16)
P.ipv4(NODE_IP).copy(cfg1, 0)
cfg1.writeUInt16BE(4789, 4)
cfg1.writeUInt16LE(1, 6)
cfg1.writeUInt32LE(ifindexOf(underlay), 8)
cfg1.writeUInt32LE(1500, 12)
oldXdp.map('sn_config').update(u32.encode(0), cfg1)
oldXdp.map('sn_networks').update(u32.encode(VNI), Buffer.from([10, 0, 1, 0, 24, 0, 0, 0]))
oldXdp
  .map('sn_endpoints')
  .update(
    snEndpointKey.encode({vni: VNI, ip: REMOTE.ip}),
    snEndpoint.encode({node_ip: PEER_IP, ifindex: 0, mac: REMOTE.mac, flags: 0}),
  )
// Layout 1's sn_device: vni and ip, 8 bytes (no flags).
oldTc.map('sn_devices').update(u32.encode(hostIfindex), snDevice.encode({vni: VNI, ip: TASK.ip, flags: 0}).subarray(0, 8))
// Layout 1's counters: one per-CPU struct of 11 u64s; xdp_decap (field 1) = 5, tc_pass (field 9) = 7 on CPU 0.
const stats = oldXdp.map('sn_stats')
const cpu0 = Buffer.alloc(88)
cpu0.writeBigUInt64LE(5n, 8)
cpu0.writeBigUInt64LE(7n, 72)
stats.updatePerCpu(u32.encode(0), [cpu0])
attachXdp(underlay, oldXdp.program('sn_xdp_underlay').fd, {mode: 'native'})
attachTc(hostDev, oldTc.program('sn_tc_task').fd, 'ingress')
for (const o of old) o.close()
out.before = oldLayouts(node).map((l) => ({version: l.version, maps: Object.keys(l.pins).sort()}))

// 2. The new agent starts: nothing done by hand in between.
const dp = Datapath.open({node, underlay, xdpMode: 'native'})
try {
  out.upgrades = dp.upgrades
  out.after = oldLayouts(node).map((l) => l.version)
  out.loosePins = fs
    .readdirSync(nodePinDir(node))
    .filter((n) => n.startsWith('sn_'))
    .sort()
  out.newPins = fs.readdirSync(layoutPinDir(node)).sort()

  // 3. What the reconciler does on every start: config and the store-derived maps.
  dp.setConfig({nodeIp: NODE_IP, vxlanPort: 4789, underlayIfindex: ifindexOf(underlay)})
  await dp.attachTask(hostDev, {vni: VNI, ip: TASK.ip})
  const written = dp.sync({
    networks: new Map([[VNI, {subnet: '10.0.1.0', prefixLen: 24, ingress: false, mtu: 1450}]]),
    endpoints: new Map([
      [`${VNI}/${TASK.ip}`, {vni: VNI, ip: TASK.ip, nodeIp: NODE_IP, ifindex: hostIfindex, mac: TASK.mac, local: true}],
      [`${VNI}/${REMOTE.ip}`, {vni: VNI, ip: REMOTE.ip, nodeIp: PEER_IP, ifindex: 0, mac: REMOTE.mac, local: false}],
    ]),
    devices: new Map([[hostIfindex, {vni: VNI, ip: TASK.ip}]]),
  })
  out.sync = written

  // 4. Forwarding through the new programs and the new maps: the task's frame to the remote task is encapsulated.
  const tc = new Loaded(layoutPinDir(node), 'tc_task.o', 'sn_tc_task', {keepPins: true})
  try {
    const frame = P.udpFrame({srcMac: TASK.mac, dstMac: REMOTE.mac, src: TASK.ip, dst: REMOTE.ip}, 98)
    const r = tc.runCounted(frame, {ctx: skbCtx(hostIfindex)})
    out.encap = {
      retval: r.res.retval,
      redirect: r.res.retval === TC_ACT_REDIRECT,
      delta: r.delta,
      outerDst: P.ipv4(PEER_IP).equals(r.res.data.subarray(30, 34)),
    }
    out.counters = Object.fromEntries(Object.entries(tc.stats()).map(([k, v]) => [k, Number(v)]))
  } finally {
    tc.obj.close() // not tc.close(): that would remove the node's pins, which teardown does below
  }
} finally {
  dp.close()
  Datapath.teardown(node, underlay, 'native')
}
process.stdout.write(JSON.stringify(out))
