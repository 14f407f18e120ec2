// Layout 3 -> today's (sn_ct values gained the close timer in 4, the UDP idle time in 5): tracked VIP
// flows and the counters are carried over by the upgrade, so a connection keeps its backend across an
// agent upgrade.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import {after, describe, it} from 'node:test'
import {BpfObject, nodePinDir, snCt, snCtKey, u32} from '../../src/bpf/index.js'
import {LAYOUT_VERSION, layoutPinDir, retireOldLayouts} from '../../src/bpf/upgrade.js'
import {compileBpf, fixture, makeTmp} from '../fixtures/bpf/build.js'
import {Loaded} from './harness.js'

const NODE = `lbmig${process.pid}`
const tmp = makeTmp('sn-lb-upgrade')

after(() => {
  fs.rmSync(nodePinDir(NODE), {recursive: true, force: true})
  fs.rmSync(tmp, {recursive: true, force: true})
})

describe('layout upgrade 3 -> today', () => {
  it('carries tracked flows (backend, table, flags) and counters over, then removes the old pins', () => {
    for (const v of [3, LAYOUT_VERSION]) fs.mkdirSync(layoutPinDir(NODE, v), {recursive: true})
    const old = BpfObject.open(compileBpf(fixture('ct-v3.c'), path.join(tmp, 'ct-v3.o')), {pinRoot: layoutPinDir(NODE, 3)})
    let current: Loaded | undefined
    try {
      old.load()
      const key = snCtKey.encode({vni: 4097, src: '10.0.1.4', dst: '10.0.1.100', sport: 40000, dport: 80, proto: 6, dir: 0})
      const v3 = Buffer.alloc(16)
      Buffer.from([10, 0, 1, 9]).copy(v3, 0)
      v3.writeUInt32LE(7, 4)
      v3.writeUInt32LE(2, 8)
      old.map('sn_ct').update(key, v3)
      const stats = Buffer.alloc(old.map('sn_stats').valueBufSize)
      stats.writeBigUInt64LE(5n, 0)
      old.map('sn_stats').update(u32.encode(15), stats) // lb_new_flow in layout 3
      old.close()

      current = new Loaded(layoutPinDir(NODE), 'tc_task.o', 'sn_tc_task', {keepPins: true})
      const reports = retireOldLayouts(NODE, {sn_stats: current.map('sn_stats'), sn_ct: current.map('sn_ct')})
      assert.deepEqual(
        reports.map((r) => ({...r, migrated: [...r.migrated].sort()})),
        [{from: 3, migrated: ['sn_ct', 'sn_stats'], dropped: [], refilled: []}],
      )
      assert.equal(fs.existsSync(layoutPinDir(NODE, 3)), false, 'the old pins are gone')
      const got = current.map('sn_ct').lookup(key)
      assert.ok(got, 'the tracked flow is there')
      const {seen, ...flow} = snCt.decode(got)
      assert.deepEqual(flow, {addr: '10.0.1.9', table: 7, flags: 2})
      assert.ok(seen > 0, 'as just seen (a UDP flow lives its idle lifetime from the upgrade on)')
      assert.equal(current.stats().lb_new_flow, 5n)
    } finally {
      current?.close()
    }
  })
})
