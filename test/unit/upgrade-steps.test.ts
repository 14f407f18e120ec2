// The upgrade path is kept whole: every layout version from the oldest an upgrade keeps every flow
// from has a recorded step that leads to the next (a new SN_LAYOUT_VERSION without one fails here),
// each step's converters name maps that exist, and docs/upgrade.md states the versions the code has.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {describe, it} from 'node:test'
import {LAYOUT_STEPS, LAYOUT_VERSION, OLDEST_SEAMLESS, conversionPath} from '../../src/bpf/upgrade.js'
import {MAP_OWNERSHIP} from '../../src/bpf/ownership.js'
import {snMeshCt} from '../../src/bpf/codecs.js'

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const MAPS = Object.keys(MAP_OWNERSHIP)

describe('upgrade path', () => {
  it('every layout from OLDEST_SEAMLESS on has a recorded step to the next, converting or copying every map', () => {
    assert.ok(OLDEST_SEAMLESS <= LAYOUT_VERSION)
    for (let v = OLDEST_SEAMLESS + 1; v <= LAYOUT_VERSION; v++) {
      assert.ok(LAYOUT_STEPS[v]?.recorded, `layout ${v} has no recorded step in LAYOUT_STEPS (src/bpf/upgrade.ts)`)
      for (const [name, c] of Object.entries(LAYOUT_STEPS[v]!.changed))
        assert.notEqual(c, null, `step ${v} cannot convert ${name}: the oldest seamless layout is after it`)
    }
    for (let from = OLDEST_SEAMLESS; from < LAYOUT_VERSION; from++)
      for (const m of MAPS) assert.ok(conversionPath(m, from, LAYOUT_VERSION), `${m} from layout ${from}`)
  })

  it('every step names maps that exist', () => {
    for (const [v, step] of Object.entries(LAYOUT_STEPS))
      for (const name of Object.keys(step.changed)) assert.ok(MAPS.includes(name), `step ${v}: ${name}`)
  })

  it('a step left out, or one that cannot convert, is no way over; a downgrade is none either', () => {
    assert.deepEqual(conversionPath('sn_endpoints', 4, 5)?.length, 0, 'unchanged in 5: copied as it is')
    assert.equal(conversionPath('sn_mesh_ct', 4, 5), undefined, 'reply entries keyed differently in 5')
    assert.equal(conversionPath('sn_ct', 3, 5)?.length, 2, 'through both steps')
    assert.equal(conversionPath('sn_endpoints', 3, 5), undefined, 'step 4 is not recorded')
    assert.equal(conversionPath('sn_endpoints', 5, 4), undefined)
  })

  it('5 -> 6: a mesh flow entry keeps every field, gains seen = now (ms, 32 bits) and no FIN; sn_config gains mesh_udp_idle 0', () => {
    // Layout 5's sn_mesh_ct: addr, node, port, flags u16, vni, table, peer_mac, own_mac (32 bytes).
    const v5 = Buffer.alloc(32)
    Buffer.from([10, 0, 0, 5, 172, 30, 0, 12, 0, 80]).copy(v5, 0)
    v5.writeUInt32LE(4096, 12)
    v5.writeUInt32LE(7, 16)
    Buffer.from([2, 0, 0, 0, 0, 0x64, 2, 0, 0, 0, 0, 0x0b]).copy(v5, 20)
    const key = Buffer.alloc(16, 1)
    for (const map of ['sn_mesh_ct', 'sn_mesh_syn']) {
      const [k, v] = LAYOUT_STEPS[6]!.changed[map]!(key, v5, 100, 0xfffffff0)!
      assert.deepEqual(k, key)
      assert.deepEqual(snMeshCt.decode(v), {
        addr: '10.0.0.5',
        node: '172.30.0.12',
        port: 80,
        vni: 4096,
        table: 7,
        seen: 0xfffffff0,
        flags: 0n,
        peer_mac: '02:00:00:00:00:64',
        own_mac: '02:00:00:00:00:0b',
      })
    }
    const c5 = Buffer.alloc(16, 0xab)
    const [, c6] = LAYOUT_STEPS[6]!.changed.sn_config!(Buffer.alloc(4), c5, 0, 0)!
    assert.deepEqual(c6, Buffer.concat([c5, Buffer.alloc(4)]))
  })

  it('docs/upgrade.md names the current layout and the oldest it upgrades from, and README links it', () => {
    const doc = fs.readFileSync(path.join(REPO, 'docs/upgrade.md'), 'utf8')
    assert.match(doc, new RegExp(`\\| ${LAYOUT_VERSION} \\(swarmnet `))
    assert.match(doc, new RegExp(`\\| from layout ${OLDEST_SEAMLESS} \\|`))
    assert.match(fs.readFileSync(path.join(REPO, 'README.md'), 'utf8'), /docs\/upgrade\.md/)
  })
})
