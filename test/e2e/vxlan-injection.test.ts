// VXLAN injection from a task (issue 19, hole 1), in a real 2-node lab: a task on network `app`
// sends one ordinary UDP datagram holding a VXLAN frame (inner: an ICMP echo on network `other`)
// to another node's data-path port. The gateway bridge's masquerade would give it the node's own
// address as outer source, which the receiving node's XDP cannot tell from the node's data path;
// tc_gw drops it where it leaves the task. The same datagram sent from the node's own namespace
// is delivered (so the capture is shown to see delivery), and the task's datagrams to its own
// node's data-path and gossip ports are dropped and counted as well.
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {describe, test} from 'node:test'
import {eventually, inNs, json, ok} from './helpers.js'
import {withLab} from './lab.js'
import {allRunning} from './service-tasks.js'

interface Task {
  name: string
  node: string
  state: string
  netns: string
  addresses: {network: string; ip: string}[]
}
type Stats = Record<string, string>

const NODES = {n1: '172.30.0.11', n2: '172.30.0.12'} as const
const GW_BRIDGE = '172.18.0.1'
const TASK_ID = 0x7a51 // the ICMP id of the task's injected echoes
const CONTROL_ID = 0xc0de // the ICMP id of the node's own (control) datagrams

const tasksOf = (svc: string) => json<Task[]>('n1', ['service', 'ps', svc]).filter((t) => t.state !== 'shutdown')
const stats = (node: string): Stats =>
  json<{maps: {entries: {value: Stats}[]}[]}>(undefined, ['inspect', 'maps', '--host', node, '--map', 'sn_stats']).maps[0]!
    .entries[0]!.value

const macOf = (ip: string) =>
  '02:42:' +
  ip
    .split('.')
    .map((b) => Number(b).toString(16).padStart(2, '0'))
    .join(':')

function checksum(b: Buffer): number {
  let s = 0
  for (let i = 0; i < b.length; i += 2) s += (b[i]! << 8) | (b[i + 1] ?? 0)
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16)
  return ~s & 0xffff
}

/** A VXLAN header and an Ethernet frame holding an ICMP echo from `src` to `dst` on `vni`. */
function vxlanEcho(vni: number, src: string, dst: string, id: number): Buffer {
  const icmp = Buffer.alloc(16)
  icmp[0] = 8
  icmp.writeUInt16BE(id, 4)
  icmp.writeUInt16BE(1, 6)
  icmp.write('inject!!', 8)
  icmp.writeUInt16BE(checksum(icmp), 2)
  const ip = Buffer.alloc(20)
  ip[0] = 0x45
  ip.writeUInt16BE(20 + icmp.length, 2)
  ip[8] = 64
  ip[9] = 1
  Buffer.from(src.split('.').map(Number)).copy(ip, 12)
  Buffer.from(dst.split('.').map(Number)).copy(ip, 16)
  ip.writeUInt16BE(checksum(ip), 10)
  const eth = Buffer.alloc(14)
  Buffer.from(
    macOf(dst)
      .split(':')
      .map((h) => parseInt(h, 16)),
  ).copy(eth, 0)
  Buffer.from(
    macOf(src)
      .split(':')
      .map((h) => parseInt(h, 16)),
  ).copy(eth, 6)
  eth.writeUInt16BE(0x0800, 12)
  const vx = Buffer.alloc(8)
  vx.writeUInt32BE(0x08000000, 0)
  vx.writeUInt32BE(vni << 8, 4)
  return Buffer.concat([vx, eth, ip, icmp])
}

/** One UDP datagram (`count` times) from the namespace `netns` to addr:port; TCP connects once for tcp. */
function send(netns: string, addr: string, port: number, payload: Buffer, proto: 'udp' | 'tcp' = 'udp', count = 1): void {
  const js =
    proto === 'udp'
      ? `const s=require('dgram').createSocket('udp4');let n=${count};const go=()=>s.send(Buffer.from('${payload.toString('hex')}','hex'),${port},'${addr}',()=>{if(--n>0)setTimeout(go,50);else s.close()});go()`
      : `const c=require('net').connect(${port},'${addr}');c.on('error',()=>{});setTimeout(()=>process.exit(0),1500)`
  const r = inNs(netns, [process.execPath, '-e', js])
  assert.equal(r.code, 0, r.stderr)
}

describe('a task cannot inject VXLAN into another network, in a 2-node lab', {timeout: 600_000}, () => {
  withLab(['--nodes', '2'])

  test("a task's datagram to another node's 4789 reaches no task; the node's own does; its own node's ports are refused too", async () => {
    ok('n1', ['network', 'create', 'app'])
    ok('n1', ['network', 'create', 'other'])
    ok('n1', ['service', 'create', '--name', 'attacker', '--replicas', '2', '--network', 'app', '--', 'sleep', 'infinity'])
    ok('n1', ['service', 'create', '--name', 'victim', '--replicas', '2', '--network', 'other', '--', 'sleep', 'infinity'])
    const attackers = await allRunning('attacker', 2, tasksOf, 60_000)
    const victims = await allRunning('victim', 2, tasksOf, 60_000)
    const attacker = attackers.find((t) => t.node === 'n1')
    const victim = victims.find((t) => t.node === 'n2')
    const accomplice = victims.find((t) => t.node === 'n1')
    assert.ok(attacker && victim && accomplice, `tasks spread over both nodes: ${JSON.stringify([...attackers, ...victims])}`)
    const vni = json<{vni: number}>('n1', ['network', 'inspect', 'other']).vni
    const victimIp = victim.addresses[0]!.ip
    // The inner source is an endpoint of `other` that n1 owns: exactly what n2's XDP accepts from n1.
    const innerSrc = accomplice.addresses[0]!.ip
    const frameOf = (id: number) => vxlanEcho(vni, innerSrc, victimIp, id)

    // Everything ICMP that reaches the victim's interface, by ICMP id, as it comes.
    const cap = spawn(
      'nsenter',
      [
        `--net=/run/netns/${victim.netns}`,
        '--',
        'tshark',
        '-l',
        '-i',
        'eth0',
        '-n',
        '-a',
        'duration:60',
        '-f',
        'icmp[icmptype] == 8',
        '-T',
        'fields',
        '-e',
        'icmp.ident',
      ],
      {stdio: ['ignore', 'pipe', 'pipe']},
    )
    let seen = ''
    cap.stdout.on('data', (d: Buffer) => (seen += d.toString()))
    const count = (id: number) => seen.split('\n').filter((l) => l.trim() === String(id)).length
    try {
      // The control: the same datagram from n1's own namespace (outer source n1) is delivered.
      await eventually(
        'the control reaches the victim',
        () => {
          send('sn-lab-n1', NODES.n2, 4789, frameOf(CONTROL_ID))
          return count(CONTROL_ID) > 0
        },
        30_000,
      )
      const before = BigInt(stats('n1').gw_node_port ?? '0')
      // The task's: to n2's data-path port (masqueraded to n1's address on the way), ten times.
      send(attacker.netns, NODES.n2, 4789, frameOf(TASK_ID), 'udp', 10)
      // And to its own node's data-path port, on the underlay address and on the gateway bridge's, and its gossip port.
      send(attacker.netns, NODES.n1, 4789, frameOf(TASK_ID))
      send(attacker.netns, GW_BRIDGE, 4789, frameOf(TASK_ID))
      send(attacker.netns, NODES.n2, 7946, Buffer.from('gossip?'), 'tcp')
      send(attacker.netns, GW_BRIDGE, 7946, Buffer.from('gossip?'))
      // The capture still sees the control afterwards: what it did not see did not arrive.
      const controls = count(CONTROL_ID)
      await eventually(
        'the control reaches the victim again',
        () => {
          send('sn-lab-n1', NODES.n2, 4789, frameOf(CONTROL_ID))
          return count(CONTROL_ID) > controls
        },
        15_000,
      )
      assert.equal(count(TASK_ID), 0, `the task's echoes reached the victim:\n${seen}`)
      const dropped = BigInt(stats('n1').gw_node_port ?? '0') - before
      // 10 + 1 + 1 datagrams, the TCP SYN (and its retries), 1 datagram: all dropped where they left the task.
      assert.ok(dropped >= 14n, `gw_node_port counted ${dropped}`)
    } finally {
      cap.kill()
    }
  })
})
