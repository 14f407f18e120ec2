// Child of tc_task_gso.test.ts, run inside the "node" namespace (attach acts
// on the calling process's namespace). Loads sn_tc_task without pins, attaches
// it to the task's host-side veth, has the task send, prints the counters.
// argv: <host-side dev> <underlay dev> <task netns>
import {execFileSync} from 'node:child_process'
import path from 'node:path'
import {
  BpfObject,
  attachTc,
  ifindexOf,
  readCounters,
  snConfig,
  snDevice,
  snEndpoint,
  snEndpointKey,
  snNetwork,
  u32,
} from '../../src/bpf/index.js'
import {DIST} from './harness.js'

const [dev, underlay, taskNs] = process.argv.slice(2) as [string, string, string]
const obj = BpfObject.open(path.join(DIST, 'tc_task.o')) // no pinRoot: nothing pinned
try {
  obj.load()
  obj.map('sn_config').update(
    u32.encode(0),
    snConfig.encode({
      node_ip: '172.30.0.11',
      vxlan_port: 4789,
      flags: 1,
      underlay_ifindex: ifindexOf(underlay),
      ct_udp_idle: 0,
      mesh_udp_idle: 0,
    }),
  )
  obj.map('sn_networks').update(u32.encode(4097), snNetwork.encode({subnet: '10.0.1.0', prefix_len: 24, flags: 0, mtu: 1450}))
  obj.map('sn_devices').update(u32.encode(ifindexOf(dev)), snDevice.encode({vni: 4097, ip: '10.0.1.4', flags: 0}))
  obj
    .map('sn_endpoints')
    .update(
      snEndpointKey.encode({vni: 4097, ip: '10.0.1.9'}),
      snEndpoint.encode({node_ip: '172.30.0.12', ifindex: 0, mac: '02:42:0a:00:01:09', flags: 0}),
    )
  attachTc(dev, obj.program('sn_tc_task').fd, 'ingress')
  // One UDP GSO send (UDP_SEGMENT = 103: 4 datagrams of 1200 bytes in one skb), then one plain datagram.
  execFileSync('ip', [
    'netns',
    'exec',
    taskNs,
    'python3',
    '-c',
    [
      'import socket',
      's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
      's.setsockopt(socket.SOL_UDP, 103, 1200)',
      "s.sendto(b'x' * 4800, ('10.0.1.9', 9999))",
      "s.sendto(b'y' * 1000, ('10.0.1.9', 9999))",
    ].join('\n'),
  ])
  const stats = readCounters(obj.map('sn_stats'))
  process.stdout.write(JSON.stringify(stats, (_k, v: unknown) => (typeof v === 'bigint' ? Number(v) : v)))
} finally {
  obj.close()
}
