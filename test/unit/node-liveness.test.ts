// NodeLiveness: SWIM's word on a node's agent and the data-path probe's on its data path,
// made one answer (down or not, agent up or down) on a clock the test moves.

import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {NodeLiveness} from '../../src/membership/node-liveness.js'
import type {Liveness, Member} from '../../src/membership/state.js'
import {membershipConfig} from '../../src/membership/config.js'
import {membershipOverrides} from '../../src/cli/membership-flags.js'

function world() {
  let now = 100_000
  const members = new Map<string, Member>()
  const answered = new Map<string, number>()
  const live = new NodeLiveness(
    {member: (id) => members.get(id), dataPathAnsweredAt: (id) => answered.get(id) ?? 0, now: () => now},
    {agentGraceMs: 60_000, dataPathStaleMs: 1000},
  )
  const events: string[] = []
  live.onChange((id, down) => events.push(`${id} ${down ? 'down' : 'up'}`))
  return {
    live,
    events,
    set(id: string, state: Liveness) {
      members.set(id, {id, addr: '10.0.0.1', port: 7946, state, incarnation: 1, since: now, lastHeard: now})
      live.refresh(members.keys())
    },
    answer(id: string) {
      answered.set(id, now)
    },
    tick(ms: number) {
      now += ms
      live.refresh(members.keys())
    },
  }
}

describe('NodeLiveness', () => {
  it('a dead agent whose data path answers: up, agent down, until the grace runs out', () => {
    const w = world()
    w.set('n2', 'alive')
    w.answer('n2')
    w.set('n2', 'dead')
    assert.deepEqual(w.live.state('n2'), {down: false, agent: 'down'})
    for (let t = 0; t < 59_000; t += 500) {
      w.answer('n2')
      w.tick(500)
    }
    assert.equal(w.live.isDown('n2'), false)
    assert.deepEqual(w.events, [])
    w.answer('n2')
    w.tick(1500)
    assert.deepEqual(w.live.state('n2'), {down: true, agent: 'down'})
    assert.deepEqual(w.events, ['n2 down'])
    w.tick(4000)
    assert.ok(w.live.downFor('n2') >= 4000, 'downFor counts from the end of the grace')
  })

  it('a dead agent whose data path is silent: down as soon as both are said', () => {
    const w = world()
    w.answer('n3')
    w.set('n3', 'alive')
    w.tick(1200) // the data path fell silent first (a cut link)
    assert.equal(w.live.isDown('n3'), false, 'SWIM has not spoken yet')
    w.set('n3', 'dead')
    assert.deepEqual(w.live.state('n3'), {down: true, agent: 'down'})
    assert.deepEqual(w.events, ['n3 down'])
  })

  it('a data path never heard (an agent without the probe) changes nothing: SWIM decides', () => {
    const w = world()
    w.set('n4', 'dead')
    assert.equal(w.live.isDown('n4'), true)
    w.set('n4', 'alive')
    assert.equal(w.live.isDown('n4'), false)
    assert.deepEqual(w.events, ['n4 down', 'n4 up'])
  })

  it('an agent back before the grace: nothing ever changed; a node that left is down whatever answers', () => {
    const w = world()
    w.answer('n5')
    w.set('n5', 'dead')
    w.tick(500)
    w.set('n5', 'alive')
    assert.deepEqual(w.live.state('n5'), {down: false, agent: 'up'})
    w.set('n5', 'left')
    assert.equal(w.live.isDown('n5'), true)
    assert.deepEqual(w.events, ['n5 down'])
  })

  it('a silent data path under a live agent is not down (SWIM still hears it)', () => {
    const w = world()
    w.set('n6', 'alive')
    w.tick(10_000)
    assert.deepEqual(w.live.state('n6'), {down: false, agent: 'up'})
  })
})

describe('--agent-grace', () => {
  it('sets the grace (ms) at init or join; 60 s without it; a bad value is refused in one line', () => {
    assert.equal(membershipConfig(membershipOverrides({'agent-grace': 30_000})).agentGraceMs, 30_000)
    assert.equal(membershipConfig(membershipOverrides({})).agentGraceMs, 60_000)
    assert.throws(
      () => membershipConfig(membershipOverrides({'agent-grace': 0})),
      /^Error: membership agentGraceMs must be a whole number >= 1, not 0$/,
    )
  })
})
