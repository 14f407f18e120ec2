// Wire compatibility with Linux's own vxlan: a swarmnet node (the programs on
// its underlay and task device) and a node that runs a kernel vxlan device
// with the same VNI and port exchange real packets, both ways. Everything
// lives in namespaces this test makes (sn-k<pid>-*), deleted in `after`.

import assert from 'node:assert/strict'
import {execFileSync, spawnSync} from 'node:child_process'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {after, before, describe, it} from 'node:test'
import {tsxInNetns} from './netns-child.js'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const NS = {node: `sn-k${process.pid}-n`, task: `sn-k${process.pid}-t`, kernel: `sn-k${process.pid}-k`}

function ip(args: string[]): void {
  execFileSync('ip', args, {stdio: ['ignore', 'ignore', 'pipe']})
}

before(() => {
  for (const ns of Object.values(NS)) {
    ip(['netns', 'add', ns])
    execFileSync('ip', [
      'netns',
      'exec',
      ns,
      'sysctl',
      '-qw',
      'net.ipv6.conf.all.disable_ipv6=1',
      'net.ipv6.conf.default.disable_ipv6=1',
    ])
  }
  // The underlay: one veth between the two nodes.
  ip(['-n', NS.node, 'link', 'add', 'sn-ku0', 'type', 'veth', 'peer', 'name', 'sn-ku1', 'netns', NS.kernel])
  ip(['-n', NS.node, 'addr', 'add', '172.30.0.11/24', 'dev', 'sn-ku0'])
  ip(['-n', NS.kernel, 'addr', 'add', '172.30.0.12/24', 'dev', 'sn-ku1'])
  // As the lab's wire: checksums finished on transmit, as a NIC does (bpf/README.md).
  execFileSync('ip', ['netns', 'exec', NS.node, 'ethtool', '-K', 'sn-ku0', 'tx', 'off'], {stdio: 'ignore'})
  execFileSync('ip', ['netns', 'exec', NS.kernel, 'ethtool', '-K', 'sn-ku1', 'tx', 'off'], {stdio: 'ignore'})
  ip(['-n', NS.node, 'link', 'set', 'sn-ku0', 'up'])
  ip(['-n', NS.kernel, 'link', 'set', 'sn-ku1', 'up'])
  // The kernel's node: a plain Linux vxlan device, VNI 4097, port 4789, toward the swarmnet node.
  ip([
    '-n',
    NS.kernel,
    'link',
    'add',
    'vx0',
    'type',
    'vxlan',
    'id',
    '4097',
    'dstport',
    '4789',
    'local',
    '172.30.0.12',
    'remote',
    '172.30.0.11',
    'dev',
    'sn-ku1',
  ])
  ip(['-n', NS.kernel, 'link', 'set', 'vx0', 'address', '02:42:0a:00:01:09', 'mtu', '1450', 'up'])
  ip(['-n', NS.kernel, 'addr', 'add', '10.0.1.9/24', 'dev', 'vx0'])
  // swarmnet answers ARP locally and does not carry it; the kernel's side learns the task's MAC statically, as Docker programs it.
  ip(['-n', NS.kernel, 'neigh', 'add', '10.0.1.4', 'lladdr', '02:42:0a:00:01:04', 'dev', 'vx0'])
  // The swarmnet node's task device (the task's end moves into its namespace in the child).
  ip(['-n', NS.node, 'link', 'add', 'sn-kt0', 'type', 'veth', 'peer', 'name', 'sn-kt1'])
  ip(['-n', NS.node, 'link', 'set', 'sn-kt0', 'up'])
})

after(() => {
  for (const ns of Object.values(NS)) spawnSync('ip', ['netns', 'del', ns], {stdio: 'ignore'})
})

interface ChildOut {
  fromTask: string
  fromKernel: string
  counters: Record<string, number>
  vxlan: {rx: {packets: number}; tx: {packets: number}}
  pmtu: {ping: string; route: string; frag: number}
}

describe('wire compatibility with Linux vxlan', () => {
  let out: ChildOut
  before(() => {
    const r = spawnSync('ip', tsxInNetns(NS.node, path.join(HERE, 'kernel-vxlan-child.ts'), NS.task, NS.kernel), {
      encoding: 'utf8',
    })
    assert.equal(r.status, 0, r.stderr)
    out = JSON.parse(r.stdout) as ChildOut
  })

  it('a task behind swarmnet and a kernel vxlan device ping each other, both ways, through the programs', () => {
    assert.match(out.fromTask, / 3 received, 0% packet loss/)
    assert.match(out.fromKernel, / 3 received, 0% packet loss/)
    // Six requests and six replies crossed: each one way through tc encap, the other through XDP decap.
    assert.equal(out.counters.tc_encap, 6, JSON.stringify(out.counters))
    assert.equal(out.counters.xdp_decap, 6, JSON.stringify(out.counters))
    assert.equal(out.counters.xdp_bad_source, 0)
    assert.equal(out.counters.xdp_malformed, 0)
    assert.equal(out.vxlan.rx.packets, 6, 'the kernel vxlan device decapsulated what swarmnet sent')
    assert.equal(out.vxlan.tx.packets, 6, 'and swarmnet took what it sent')
  })

  it("a DF datagram over the network MTU gets ICMP fragmentation needed, which the task's kernel takes", () => {
    assert.ok(out.pmtu.frag >= 1, `tc_frag_needed ${out.pmtu.frag}`)
    assert.match(out.pmtu.ping, /mtu ?= ?1450/i, out.pmtu.ping)
    assert.match(out.pmtu.route, /mtu 1450/, `the task's route cache: ${out.pmtu.route}`)
  })
})
