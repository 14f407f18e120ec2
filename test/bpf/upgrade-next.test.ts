// An agent upgrade to a build whose sn_ct and sn_mesh_ct layouts differ (bpf/*.c built with
// SN_LAYOUT_TEST_NEXT: layout 7, both values with a field in front), over today's data plane
// with flows established through its attached programs: every flow's next packet through the
// programs attached after the upgrade is still a tracked flow (no VIP flow picks a backend again,
// no mesh segment is dropped as untracked), and everything else forwards as before. The same
// upgrade with no converter for the two maps drops them: what the test tells apart. Runs in a
// namespace this test makes (sn-n<pid>), deleted in `after`.

import assert from 'node:assert/strict'
import {execFileSync, spawnSync} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {after, before, describe, it} from 'node:test'
import {compileBpf, makeTmp, REPO} from '../fixtures/bpf/build.js'
import {tsxInNetns} from './netns-child.js'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const NS = `sn-n${process.pid}`
const NODE = `next-${process.pid}`
const FLOWS = 300
const XDP_PASS = 2
const XDP_REDIRECT = 4
const TC_ACT_REDIRECT = 7
const tmp = makeTmp('sn-upgrade-next')

function ip(args: string[]): void {
  execFileSync('ip', ['-n', NS, ...args], {stdio: ['ignore', 'ignore', 'pipe']})
}

before(() => {
  for (const src of fs.readdirSync(path.join(REPO, 'bpf')).filter((f) => f.endsWith('.c')))
    compileBpf(path.join(REPO, 'bpf', src), path.join(tmp, src.replace(/\.c$/, '.o')), {defines: ['SN_LAYOUT_TEST_NEXT']})
  execFileSync('ip', ['netns', 'add', NS])
  ip(['link', 'add', 'sn-nu0', 'type', 'veth', 'peer', 'name', 'sn-nu1'])
  ip(['link', 'add', 'sn-nt0', 'type', 'veth', 'peer', 'name', 'sn-nt1'])
  ip(['addr', 'add', '172.30.0.11/24', 'dev', 'sn-nu0'])
  for (const dev of ['lo', 'sn-nu0', 'sn-nu1', 'sn-nt0', 'sn-nt1']) ip(['link', 'set', dev, 'up'])
  // Known answers for the programs' FIB lookups: the peer node and the mesh client.
  ip(['neigh', 'replace', '172.30.0.12', 'lladdr', '02:00:00:00:00:0c', 'dev', 'sn-nu0', 'nud', 'permanent'])
  ip(['neigh', 'replace', '172.30.0.100', 'lladdr', '02:00:00:00:00:64', 'dev', 'sn-nu0', 'nud', 'permanent'])
})

after(() => {
  spawnSync('ip', ['netns', 'del', NS], {stdio: 'ignore'})
  fs.rmSync(tmp, {recursive: true, force: true})
})

interface Traffic {
  vip: Record<string, number>
  mesh: Record<string, number>
  counters: Record<string, number>
  progs: number[]
}
interface Out {
  syn: Traffic
  established: Traffic
  upgrades: {from: number; migrated: string[]; dropped: string[]; refilled: string[]}[]
  oldPins: number[]
  ctValueSize: number
  meshCtValueSize: number
  after: Traffic
}

function upgrade(converters: 'yes' | 'no'): Out {
  // `ip netns exec` gives the child a mount namespace of its own, so its pins are in a private bpffs.
  const r = spawnSync(
    'ip',
    tsxInNetns(NS, path.join(HERE, 'upgrade-next-child.ts'), NODE, 'sn-nu0', 'sn-nt0', tmp, String(FLOWS), converters),
    {
      encoding: 'utf8',
    },
  )
  assert.equal(r.status, 0, r.stderr)
  return JSON.parse(r.stdout) as Out
}

describe('layout upgrade to a build with sn_ct and sn_mesh_ct changed', () => {
  it('carries every tracked flow over: each one`s next packet through the new programs is a tracking hit', () => {
    const out = upgrade('yes')
    // Before: the flows were made by today's programs.
    assert.deepEqual(out.syn.vip, {[TC_ACT_REDIRECT]: FLOWS})
    assert.equal(out.syn.counters.lb_new_flow, FLOWS)
    assert.deepEqual(out.established.mesh, {[XDP_REDIRECT]: FLOWS})
    assert.equal(out.established.counters.lb_new_flow, undefined)
    // The upgrade: every map carried over (none refilled, none dropped), the old pins gone.
    assert.equal(out.upgrades.length, 1)
    const [u] = out.upgrades
    assert.equal(u!.from, 6)
    assert.deepEqual(u!.dropped, [])
    assert.deepEqual(u!.refilled, [])
    for (const m of [
      'sn_ct',
      'sn_mesh_ct',
      'sn_mesh_syn',
      'sn_config',
      'sn_endpoints',
      'sn_services',
      'sn_mesh_ports',
      'sn_stats',
    ])
      assert.ok(u!.migrated.includes(m), `${m} carried over: ${u!.migrated.join(' ')}`)
    assert.deepEqual(out.oldPins, [])
    assert.equal(out.ctValueSize, 40, 'the new sn_ct has the new layout')
    assert.equal(out.meshCtValueSize, 56, 'the new sn_mesh_ct has the new layout')
    // The programs attached are new ones, on the underlay and on the task's device alike.
    assert.notEqual(out.after.progs[0], out.established.progs[0])
    assert.notEqual(out.after.progs[1], out.established.progs[1])
    // After: no flow dropped, none picked a backend again.
    assert.deepEqual(out.after.vip, {[TC_ACT_REDIRECT]: FLOWS})
    assert.deepEqual(out.after.mesh, {[XDP_REDIRECT]: FLOWS})
    assert.equal(out.after.counters.lb_new_flow, undefined, JSON.stringify(out.after.counters))
    assert.equal(out.after.counters.mesh_not_syn, undefined, JSON.stringify(out.after.counters))
  })

  it('with no converter for them, the same upgrade drops the tracked flows (what the test above tells apart)', () => {
    const out = upgrade('no')
    assert.deepEqual([...out.upgrades[0]!.dropped].sort(), ['sn_ct', 'sn_mesh_ct', 'sn_mesh_syn'])
    // A segment of no known flow that is not a SYN goes to the kernel (which resets it): not forwarded.
    assert.deepEqual(out.after.mesh, {[XDP_PASS]: FLOWS})
    assert.equal(out.after.counters.mesh_not_syn, FLOWS)
    assert.equal(out.after.counters.lb_new_flow, FLOWS)
  })
})
