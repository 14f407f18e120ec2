// The failure detector's timers are set at init or join: bad values are one
// line and nothing is made; good ones are kept in the node's config, which the
// agent hands to its Membership.
import assert from 'node:assert/strict'
import {existsSync} from 'node:fs'
import {test} from 'node:test'
import {membershipOverrides} from '../../src/cli/membership-flags.js'
import {membershipConfig} from '../../src/membership/config.js'
import {cli} from './helpers.js'

test('init and join refuse bad failure-detection timers in one line, before anything is made', () => {
  for (const cmd of [
    ['init', '--node', 'sn-flagtest', '--probe-interval', '100', '--probe-timeout', '200'],
    ['join', '--node', 'sn-flagtest', '--token', 'x', '--probe-interval', '0', '127.0.0.1:7946'],
  ]) {
    const r = cli(undefined, cmd)
    assert.notEqual(r.code, 0)
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr)
    assert.match(
      r.stderr,
      /^swarmnet: membership (probeTimeoutMs \(200\) must be below probeIntervalMs \(100\)|probeIntervalMs must be a whole number >= 1, not 0)/,
    )
    assert.equal(existsSync('/var/lib/swarmnet/sn-flagtest'), false, 'nothing made')
  }
})

test('the flags map onto the timers; the rest keep their defaults', () => {
  const c = membershipConfig(
    membershipOverrides({'probe-interval': 500, 'probe-timeout': 200, 'suspicion-mult': 5, 'reschedule-delay': 9000}),
  )
  assert.deepEqual(
    [c.probeIntervalMs, c.probeTimeoutMs, c.suspicionMult, c.rescheduleDelayMs, c.pingAttempts],
    [500, 200, 5, 9000, 4],
  )
  assert.deepEqual(membershipOverrides({}), {})
})
