// sn_tc_task on a real GSO skb, which BPF_PROG_TEST_RUN cannot make: a task
// in its own namespace sends with UDP_SEGMENT (as QUIC stacks do) through a
// veth whose host side runs the program. Everything lives in namespaces this
// test creates (sn-g<pid>-*), deleted in `after`.

import assert from 'node:assert/strict'
import {execFileSync, spawnSync} from 'node:child_process'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {after, before, describe, it} from 'node:test'
import {tsxInNetns} from './netns-child.js'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const NS = {node: `sn-g${process.pid}-n`, task: `sn-g${process.pid}-t`, peer: `sn-g${process.pid}-p`}
const hasPython = spawnSync('python3', ['-c', 'pass']).status === 0

function ip(args: string[]): void {
  execFileSync('ip', args, {stdio: ['ignore', 'ignore', 'pipe']})
}

before(() => {
  if (!hasPython) return
  for (const ns of Object.values(NS)) ip(['netns', 'add', ns])
  ip(['-n', NS.node, 'link', 'add', 'sn-gt0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', NS.task])
  ip(['-n', NS.node, 'link', 'add', 'sn-gu0', 'type', 'veth', 'peer', 'name', 'sn-gu1', 'netns', NS.peer])
  ip(['-n', NS.node, 'addr', 'add', '172.30.0.11/24', 'dev', 'sn-gu0'])
  ip(['-n', NS.peer, 'addr', 'add', '172.30.0.12/24', 'dev', 'sn-gu1'])
  ip(['-n', NS.peer, 'link', 'set', 'sn-gu1', 'up'])
  ip(['-n', NS.node, 'link', 'set', 'sn-gu0', 'up'])
  ip(['-n', NS.node, 'link', 'set', 'sn-gt0', 'up'])
  ip(['-n', NS.node, 'neigh', 'add', '172.30.0.12', 'lladdr', '02:00:ac:1e:00:0c', 'dev', 'sn-gu0'])
  ip(['-n', NS.task, 'link', 'set', 'lo', 'up'])
  ip(['-n', NS.task, 'link', 'set', 'eth0', 'mtu', '1450', 'up'])
  ip(['-n', NS.task, 'addr', 'add', '10.0.1.4/24', 'dev', 'eth0'])
  ip(['-n', NS.task, 'neigh', 'add', '10.0.1.9', 'lladdr', '02:42:0a:00:01:09', 'dev', 'eth0'])
})

after(() => {
  for (const ns of Object.values(NS)) spawnSync('ip', ['netns', 'del', ns], {stdio: 'ignore'})
})

describe('sn_tc_task with GSO', () => {
  // python3 sends with UDP_SEGMENT, which Node cannot; scripts/setup.sh installs it.
  before(() => assert.ok(hasPython, 'python3 is needed to send with UDP_SEGMENT: run scripts/setup.sh'))
  it('encapsulates a UDP GSO packet instead of dropping it (BPF_F_ADJ_ROOM_FIXED_GSO)', () => {
    const out = execFileSync('ip', tsxInNetns(NS.node, path.join(HERE, 'gso-child.ts'), 'sn-gt0', 'sn-gu0', NS.task), {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    const stats = JSON.parse(out) as Record<string, number>
    assert.equal(stats.tc_encap_fail, 0, 'no packet may fail encapsulation')
    assert.equal(stats.tc_encap, 2, 'the GSO skb and the plain datagram are both encapsulated')
  })
})
