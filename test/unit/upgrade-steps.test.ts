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

  it('docs/upgrade.md names the current layout and the oldest it upgrades from, and README links it', () => {
    const doc = fs.readFileSync(path.join(REPO, 'docs/upgrade.md'), 'utf8')
    assert.match(doc, new RegExp(`\\| ${LAYOUT_VERSION} \\(swarmnet `))
    assert.match(doc, new RegExp(`\\| from layout ${OLDEST_SEAMLESS} \\|`))
    assert.match(fs.readFileSync(path.join(REPO, 'README.md'), 'utf8'), /docs\/upgrade\.md/)
  })
})
