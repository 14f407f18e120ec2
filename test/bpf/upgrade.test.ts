// An upgrade from the layout before versioning (the objects of main at 02f50d1,
// kept in test/fixtures/bpf/layout-v1/) to the current one, on a node whose
// old maps are pinned, filled and in use: the new Datapath opens without
// anyone removing pins, carries the counters over, retires the old pins, and
// the reconciler's refill makes the new programs forward again. Everything
// lives in a namespace this test makes (sn-u<pid>), deleted in `after`.

import assert from 'node:assert/strict'
import {execFileSync, spawnSync} from 'node:child_process'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {after, before, describe, it} from 'node:test'
import {tsxInNetns} from './netns-child.js'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const NS = `sn-u${process.pid}`
const NODE = `upg-${process.pid}`

function ip(args: string[]): void {
  execFileSync('ip', args, {stdio: ['ignore', 'ignore', 'pipe']})
}

before(() => {
  ip(['netns', 'add', NS])
  // No IPv6 autoconfiguration chatter through the programs: the counters below are exact.
  execFileSync('ip', [
    'netns',
    'exec',
    NS,
    'sysctl',
    '-qw',
    'net.ipv6.conf.all.disable_ipv6=1',
    'net.ipv6.conf.default.disable_ipv6=1',
  ])
  ip(['-n', NS, 'link', 'add', 'sn-uu0', 'type', 'veth', 'peer', 'name', 'sn-uu1'])
  ip(['-n', NS, 'link', 'add', 'sn-ut0', 'type', 'veth', 'peer', 'name', 'sn-ut1'])
  for (const dev of ['sn-uu0', 'sn-uu1', 'sn-ut0', 'sn-ut1']) ip(['-n', NS, 'link', 'set', dev, 'up'])
})

after(() => {
  spawnSync('ip', ['netns', 'del', NS], {stdio: 'ignore'})
})

describe('layout upgrade', () => {
  it('from the layout of main before versioning: no manual step, counters carried over, forwarding refilled', () => {
    // `ip netns exec` gives the child a mount namespace of its own, so its pins are in a private bpffs.
    const r = spawnSync('ip', tsxInNetns(NS, path.join(HERE, 'upgrade-child.ts'), NODE, 'sn-uu0', 'sn-ut0'), {encoding: 'utf8'})
    assert.equal(r.status, 0, r.stderr)
    const out = JSON.parse(r.stdout) as {
      before: {version: number; maps: string[]}[]
      upgrades: {from: number; migrated: string[]; dropped: string[]; refilled: string[]}[]
      after: number[]
      loosePins: string[]
      newPins: string[]
      sync: {written: number}
      encap: {redirect: boolean; delta: Record<string, number>; outerDst: boolean}
      counters: Record<string, number>
    }
    assert.deepEqual(out.before, [{version: 1, maps: ['sn_config', 'sn_devices', 'sn_endpoints', 'sn_networks', 'sn_stats']}])
    assert.deepEqual(
      out.upgrades.map((u) => ({...u, refilled: [...u.refilled].sort()})),
      [{from: 1, migrated: ['sn_stats'], dropped: [], refilled: ['sn_config', 'sn_devices', 'sn_endpoints', 'sn_networks']}],
    )
    assert.deepEqual(out.after, [], 'no pins of layout 1 are left')
    assert.deepEqual(out.loosePins, [])
    assert.deepEqual(out.newPins, [
      'sn_backends',
      'sn_config',
      'sn_ct',
      'sn_devices',
      'sn_dns_names',
      'sn_dns_ptrs',
      'sn_dns_scopes',
      'sn_endpoints',
      'sn_gateways',
      'sn_maglev',
      'sn_mesh_addrs',
      'sn_mesh_config',
      'sn_mesh_ct',
      'sn_mesh_nodes',
      'sn_mesh_ports',
      'sn_mesh_stats',
      'sn_mesh_syn',
      'sn_networks',
      'sn_probe_keys',
      'sn_services',
      'sn_sock_config',
      'sn_sock_lb_rev',
      'sn_sock_lb_tasks',
      'sn_sock_rev',
      'sn_sock_targets',
      'sn_stats',
    ])
    assert.equal(out.sync.written, 3, 'the reconciler refills networks and both endpoints (attachTask wrote the device entry)')
    assert.ok(out.encap.redirect && out.encap.outerDst, JSON.stringify(out.encap))
    assert.deepEqual(out.encap.delta, {tc_encap: 1})
    // Layout 1's xdp_decap (5) carried over; its tc_pass (7) has no successor and is not invented into another counter.
    assert.equal(out.counters.xdp_decap, 5)
    assert.equal(out.counters.tc_encap, 1)
    assert.equal(
      Object.values(out.counters).reduce((a, b) => a + b, 0),
      6,
    )
  })
})
