// Placement's node set (placementNodes, src/manager/plan.ts) is kept while nothing it is made of
// changes: node records (StateIndex.nodeGeneration) and the membership view's verdicts
// (MembershipView.changes, counted by ViewChanges as the agent counts them). The view here is the
// agent's (src/agent/agent.ts): the real NodeLiveness over SWIM member states, data-path answers
// and a clock given by the test; SWIM's state changes call what Membership.onChange calls, the
// roster adds and removes members silently, as Membership.setRoster does. After random sequences
// of node record changes, verdicts, probe answers and time passing (with or without liveness's
// periodic refresh), the kept set equals a fresh scan; and a node drained, declared down, past
// its agent grace, or marked down in its record gets no task of the very next create.
import assert from 'node:assert/strict'
import {test} from 'node:test'
import fc from 'fast-check'
import {placementNodes, scanNodes} from '../../src/manager/plan.js'
import {NodeLiveness} from '../../src/membership/node-liveness.js'
import type {Liveness, Member} from '../../src/membership/state.js'
import {ViewChanges} from '../../src/membership/view-changes.js'
import type {MembershipView} from '../../src/membership/view.js'
import type {NodeRecord} from '../../src/model/types.js'
import {keyOf} from '../../src/store/keys.js'
import {indexOf, StateIndex} from '../../src/store/state-index.js'
import {managerFixture, putNode} from './manager-fixture.js'
import {nodeRecord} from './model-records.js'

const RESCHEDULE_MS = 500

/** The agent's view over a fake SWIM and prober, with the test's clock. */
function agentView() {
  let now = 1_000
  const members = new Map<string, Member>()
  const answered = new Map<string, number>()
  const liveness = new NodeLiveness(
    {member: (id) => members.get(id), dataPathAnsweredAt: (id) => answered.get(id) ?? 0, now: () => now},
    {agentGraceMs: 1_000, dataPathStaleMs: 300},
  )
  const changes = new ViewChanges(() => members.values())
  liveness.onChange(() => changes.changed())
  const view: MembershipView = {
    isDown: (id) => liveness.downFor(id) >= RESCHEDULE_MS,
    downNow: (id) => liveness.isDown(id),
    agentAway: (id) => {
      const s = members.get(id)?.state
      return s === 'suspect' || s === 'dead'
    },
    changes: () => changes.now(),
  }
  return {
    view,
    liveness,
    /** The roster: a member added (alive) or removed, without a change event. */
    roster(id: string, present: boolean) {
      if (!present) members.delete(id)
      else if (!members.has(id))
        members.set(id, {id, addr: id, port: 1, state: 'alive', incarnation: 0, since: now, lastHeard: 0})
    },
    /** A SWIM verdict: Membership.setState, its listeners (the agent's: count, then refresh liveness). */
    swim(id: string, state: Liveness) {
      const m = members.get(id)
      if (!m || m.state === state) return
      m.state = state
      m.since = now
      changes.changed()
      liveness.refresh(members.keys())
    },
    probe(id: string) {
      answered.set(id, now)
    },
    advance(ms: number, refresh: boolean) {
      now += ms
      if (refresh) liveness.refresh(members.keys())
    },
  }
}

const IDS = ['a', 'b', 'c', 'd']
type Op =
  | {op: 'record'; id: string; state: NodeRecord['state'] | null}
  | {op: 'swim'; id: string; state: Liveness}
  | {op: 'probe'; id: string}
  | {op: 'time'; ms: number; refresh: boolean}

const id = fc.constantFrom(...IDS)
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({op: fc.constant('record' as const), id, state: fc.option(fc.constantFrom('ready', 'down', 'left'))}),
  {
    weight: 2,
    arbitrary: fc.record({op: fc.constant('swim' as const), id, state: fc.constantFrom('alive', 'suspect', 'dead', 'left')}),
  },
  fc.record({op: fc.constant('probe' as const), id}),
  {weight: 2, arbitrary: fc.record({op: fc.constant('time' as const), ms: fc.nat(1_200), refresh: fc.boolean()})},
)

test('the kept node set equals a fresh scan after any sequence of node records, verdicts and time', () => {
  fc.assert(
    fc.property(fc.array(opArb, {minLength: 1, maxLength: 60}), (ops) => {
      const ix = new StateIndex()
      const a = agentView()
      const records = new Map<string, NodeRecord>()
      const put = (id: string, state: NodeRecord['state'] | null) => {
        const old = records.get(id)
        const next = state ? nodeRecord(id, `10.0.0.${IDS.indexOf(id) + 1}`, {state}) : undefined
        ix.apply(keyOf('node', id), next, old)
        if (next) records.set(id, next)
        else records.delete(id)
        a.roster(id, next !== undefined)
      }
      // Every node a ready member to begin with: verdicts and time then matter from the first step.
      for (const id of IDS) put(id, 'ready')
      const check = (step: string) => {
        const kept = placementNodes(ix, a.view)
        assert.deepEqual(kept, scanNodes(ix, a.view), step)
        // Asked again with nothing changed: the same answer, kept.
        assert.equal(placementNodes(ix, a.view), kept, `${step}: kept`)
      }
      check('start')
      for (const [i, o] of ops.entries()) {
        if (o.op === 'record') put(o.id, o.state)
        else if (o.op === 'swim') a.swim(o.id, o.state)
        else if (o.op === 'probe') a.probe(o.id)
        else a.advance(o.ms, o.refresh)
        check(`after step ${i} ${JSON.stringify(o)}`)
      }
    }),
    {numRuns: 500},
  )
})

test('a view that cannot say what changed is scanned every time', () => {
  const ix = new StateIndex()
  ix.apply(keyOf('node', 'b'), nodeRecord('b', '10.0.0.2'), undefined)
  const down = new Set<string>()
  const view: MembershipView = {isDown: (id) => down.has(id)}
  assert.deepEqual([...placementNodes(ix, view).liveIds], ['b'])
  down.add('b')
  assert.deepEqual([...placementNodes(ix, view).liveIds], [])
})

test('a node drained, declared down, past its agent grace or down in its record gets no task of the next create', () => {
  const a = agentView()
  const nodes = [
    ['a', '172.30.0.11'],
    ['b', '172.30.0.12'],
    ['c', '172.30.0.13'],
    ['d', '172.30.0.14'],
    ['e', '172.30.0.15'],
  ] as const
  const {store, m} = managerFixture('sn-placement-nodes-', nodes, a.view)
  for (const [n] of nodes) a.roster(n, true)
  m.createNetwork({name: 'net'})
  let made = 0
  const create = () => {
    const name = `s${made++}`
    m.createService({name, mode: 'replicated', replicas: 8, networks: ['net'], command: []})
    return new Set(m.read.tasks().flatMap((t) => (t.serviceName === name ? [t.nodeId] : [])))
  }
  assert.deepEqual([...create()].sort(), ['a', 'b', 'c', 'd', 'e'])
  // The set is kept between creates: asked again, the same object.
  const ix = indexOf(store)
  assert.equal(placementNodes(ix, a.view), placementNodes(ix, a.view))

  m.updateNode('n-b', {availability: 'drain'})
  assert.ok(!create().has('b'), 'drained')

  // Declared down: SWIM says it left; down for the reschedule delay, with no event at that moment.
  a.swim('c', 'left')
  assert.ok(create().has('c'), 'down for less than the reschedule delay: its tasks are not replaced yet')
  a.advance(RESCHEDULE_MS, false)
  assert.ok(!create().has('c'), 'down for the reschedule delay')

  // Its agent dead while its data path answers: up for the grace period, then down, by time alone.
  a.probe('d')
  a.swim('d', 'dead')
  assert.ok(!create().has('d'), 'its agent away: no new task')
  a.swim('d', 'alive')
  assert.ok(create().has('d'), 'its agent back')
  a.swim('d', 'dead')
  a.advance(250, false)
  a.probe('d')
  a.advance(250, false)
  a.probe('d')
  a.advance(500, false)
  a.probe('d')
  // Past the grace: liveness's periodic refresh says so (an event); then down for the reschedule delay, by time alone.
  a.advance(0, true)
  assert.ok(!a.view.isDown('d'))
  a.advance(RESCHEDULE_MS, false)
  a.probe('d')
  assert.ok(a.view.isDown('d'), 'past the grace, for the reschedule delay')
  assert.ok(!create().has('d'), 'down by time alone')
  a.swim('d', 'alive')
  assert.ok(create().has('d'), 'back')

  // Down in its own record (written by the node or a manager).
  putNode(store, 'e', '172.30.0.15', 'down')
  assert.ok(!create().has('e'), 'its record down')
  putNode(store, 'e', '172.30.0.15', 'ready')
  assert.ok(create().has('e'), 'its record ready again')
})
