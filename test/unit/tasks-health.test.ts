// Docker's health-check rules as src/tasks/health.ts folds them, and its flags as stored.
import assert from 'node:assert/strict'
import {test} from 'node:test'
import {healthSpec, nextHealth} from '../../src/tasks/health.js'
import {parseDuration} from '../../src/model/duration.js'

const spec = healthSpec({healthCmd: 'true', healthInterval: '1s', healthRetries: 3, healthStartPeriod: '10s'})!

test('flags: defaults as Docker, durations with units only, conflicts refused', () => {
  assert.deepEqual(healthSpec({healthCmd: 'curl -f localhost'}), {
    cmd: 'curl -f localhost',
    intervalMs: 30_000,
    timeoutMs: 30_000,
    retries: 3,
    startPeriodMs: 0,
  })
  assert.equal(healthSpec({}), undefined)
  assert.equal(healthSpec({noHealthcheck: true}), undefined)
  assert.throws(() => healthSpec({healthCmd: 'x', noHealthcheck: true}), /conflicts/)
  assert.throws(() => healthSpec({healthTimeout: '1s'}), /need --health-cmd/)
  assert.equal(parseDuration('1m30s', 'x'), 90_000)
  assert.equal(parseDuration('500ms', 'x'), 500)
  assert.throws(() => parseDuration('10', '--stop-grace-period'), /invalid --stop-grace-period '10'/)
})

test('starting until the first success; failures in the start period do not count; unhealthy after retries in a row', () => {
  let h = {health: 'starting' as const, failures: 0} as Parameters<typeof nextHealth>[0]
  h = nextHealth(h, false, spec, true)
  assert.deepEqual(h, {health: 'starting', failures: 0})
  h = nextHealth(h, true, spec, true)
  assert.deepEqual(h, {health: 'healthy', failures: 0})
  h = nextHealth(h, false, spec, false)
  h = nextHealth(h, false, spec, false)
  assert.equal(h.health, 'healthy', 'two failures of three: still healthy')
  h = nextHealth(h, false, spec, false)
  assert.equal(h.health, 'unhealthy')
  h = nextHealth(h, true, spec, false)
  assert.deepEqual(h, {health: 'healthy', failures: 0}, 'one success: healthy again')
})
