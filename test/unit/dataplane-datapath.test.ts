// The agent's Datapath on real devices in a test namespace: the device entry
// of a task is written by the hook that attaches it (before its process
// starts), attachments removed by hand come back on the next repair, a
// restart updates the pinned links in place, leave removes them.
import assert from 'node:assert/strict'
import {execFileSync, spawnSync} from 'node:child_process'
import fs from 'node:fs'
import {after, before, it} from 'node:test'
import {ensureBpffs} from '../../src/bpf/index.js'
import {REPO, fixture} from '../fixtures/bpf/build.js'

const ns = `sn-t-dp${process.pid}`
const node = `t-dp${process.pid}`
const ip = (...a: string[]) => execFileSync('ip', ['-n', ns, ...a])

before(() => {
  ensureBpffs()
  execFileSync('ip', ['netns', 'add', ns])
  ip('link', 'add', 'sn-du', 'type', 'veth', 'peer', 'name', 'sn-dv')
  ip('link', 'add', 'sn-dt', 'type', 'veth', 'peer', 'name', 'sn-dp')
  for (const d of ['sn-du', 'sn-dv', 'sn-dt', 'sn-dp']) ip('link', 'set', d, 'up')
})

after(() => {
  spawnSync('ip', ['netns', 'del', ns])
  fs.rmSync(`/sys/fs/bpf/swarmnet/${node}`, {recursive: true, force: true})
})

it('Datapath: device entry with the attachment, a full map does not stop the next, drift repaired, links updated on restart and removed on leave', () => {
  const r = spawnSync(
    'nsenter',
    [`--net=/run/netns/${ns}`, process.execPath, '--import', 'tsx', fixture('datapath-child.ts'), node, 'sn-du', 'sn-dt'],
    {cwd: REPO, encoding: 'utf8'},
  )
  assert.equal(r.status, 0, `child failed:\n${r.stderr}`)
  const o = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}')
  assert.ok(o.xdpLink > 0 && o.xdpProg > 0, JSON.stringify(o))

  // The hook the task reconciler calls before starting the task writes its sn_devices entry.
  assert.deepEqual(o.device, {vni: 4097, ip: '10.0.1.2', flags: 0})
  assert.equal(o.tcAttached, true)

  // A full sn_endpoints: reported and counted, and sn_devices (written after it) still written.
  assert.deepEqual(o.fullSync.errors, ['sn_endpoints:1'])
  assert.deepEqual(o.fullSync.laterMapWritten, {vni: 4097, ip: '10.0.1.9', flags: 0})
  assert.deepEqual(o.fullSync.status.syncErrors, {sn_endpoints: 1})
  assert.match(o.fullSync.status.lastSyncError, /^sn_endpoints: map sn_endpoints is full \(65536 entries\)$/)

  assert.deepEqual(o.repairNothing, [])
  assert.deepEqual(o.afterDetach, {xdp: null, tc: false})
  assert.deepEqual(o.repairSoon, [], 'not looked for again within DRIFT_CHECK_MS')
  assert.equal(o.deviceAfterSoon, false, 'a map entry taken out by hand: not read back within DRIFT_CHECK_MS')
  assert.deepEqual(o.repairDetached, ['XDP on sn-du was gone: attached again', 'tc on sn-dt was gone: attached again'])
  assert.deepEqual(o.deviceAfterRepair, {vni: 4097, ip: '10.0.1.2', flags: 0}, "the drift check's maps: written again")
  assert.equal(o.deviceAfterClock, true, 'the drift check comes by itself once its period went by')
  assert.ok(o.afterRepair.xdp > 0)
  assert.equal(o.afterRepair.tc, true)
  assert.equal(o.afterRm, false)
  assert.deepEqual(o.repairRm, ['tc on sn-dt was gone: attached again'])
  assert.equal(o.afterRmRepair, true)

  assert.equal(o.reopen.after, o.reopen.before, 'the same XDP link, updated')
  // The node-local mesh's cgroup links (one per hook) are the node's too, and so are the connect()
  // load balancer's (on the node's task cgroup) and its two socket iterators.
  assert.deepEqual(o.reopen.links, [
    'sock-connect4',
    'sock-getpeername4',
    'sock-recvmsg4',
    'sock-sendmsg4',
    'socklb-connect4',
    'socklb-end-tcp',
    'socklb-end-udp',
    'socklb-getpeername4',
    'socklb-recvmsg4',
    'socklb-sendmsg4',
    'tcx-sn-dt',
    'xdp-underlay',
  ])
  assert.deepEqual(o.repairGone, [])
  assert.equal(o.tcPinAfterGone, false)
  assert.equal(o.repairs, 3, 'counted in the status the agent reports')
  assert.equal(o.underlayVia, 'link')

  assert.deepEqual(o.afterTeardown, {xdp: null, pins: false})
})
