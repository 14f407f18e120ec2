// Rolling updates as the manager places them (src/manager/rolling.ts), one pass at a time, with
// the nodes' part played by hand: a task's node reports it running, and deletes its status once
// it has stopped a task marked shutdown (src/tasks/stop.ts).
import assert from 'node:assert/strict'
import {test} from 'node:test'
import type {Task, TaskStatus} from '../../src/model/types.js'
import {keyOf, prefixOf} from '../../src/store/keys.js'
import type {Store} from '../../src/store/store.js'
import {managerFixture} from './manager-fixture.js'

const tasks = (store: Store) => store.values<Task>(prefixOf('task'))
const running = (store: Store) => tasks(store).filter((t) => t.desiredState === 'running')

/** The nodes: every task meant to run reports running; every task marked shutdown is stopped (status gone). */
function nodesAct(store: Store, opts: {stop: boolean} = {stop: true}): void {
  for (const t of tasks(store)) {
    const key = keyOf('taskstatus', t.id)
    if (t.desiredState === 'running' && !store.get(key))
      store.put(key, {taskId: t.id, nodeId: t.nodeId, state: 'running', restarts: 0, updatedAt: 1} satisfies TaskStatus)
    if (t.desiredState === 'shutdown' && opts.stop && store.get(key)) store.delete(key)
  }
}

/** Every slot runs a task of version v, and nothing else is meant to run. */
const done = (store: Store, v: number) => {
  const r = running(store)
  return r.length > 0 && r.every((t) => t.specVersion === v) && tasks(store).every((t) => t.desiredState === 'running')
}

const serving = (store: Store) => running(store).filter((t) => store.get(keyOf('taskstatus', t.id)))

test('start-first, parallelism 1: a new task per slot serves before the old one stops; 3 serve throughout', () => {
  const {store, m} = managerFixture('sn-roll-', [
    ['a', '10.1.0.1'],
    ['b', '10.1.0.2'],
    ['c', '10.1.0.3'],
  ])
  m.createNetwork({name: 'net'})
  m.createService({name: 'web', mode: 'replicated', replicas: 3, networks: ['net'], command: []})
  nodesAct(store)
  const vip = m.read.findService('web').vips
  const before = new Set(running(store).map((t) => t.id))
  m.updateService('web', {command: ['sleep', 'infinity'], updateOrder: 'start-first', updateParallelism: 1})
  let passes = 0
  for (; passes < 20; passes++) {
    const now = running(store)
    assert.ok(serving(store).length >= 3, `pass ${passes}: ${serving(store).length} serving`)
    const fresh = now.filter((t) => t.specVersion === 1)
    const oldLeft = now.filter((t) => before.has(t.id))
    assert.ok(now.length <= 4, `pass ${passes}: at most one slot in flight (${now.length} tasks meant to run)`)
    if (oldLeft.length === 0 && fresh.length === 3) break
    nodesAct(store, {stop: passes % 2 === 1}) // a node is sometimes slower to stop than to start
    m.placeAll()
  }
  assert.ok(passes < 20, 'the update finished')
  assert.deepEqual(
    running(store)
      .map((t) => t.slot)
      .sort(),
    [1, 2, 3],
  )
  assert.deepEqual(m.read.findService('web').vips, vip, 'the VIP stays')
  assert.deepEqual(m.read.findService('web').command, ['sleep', 'infinity'])
})

test('stop-first: the old task stops first and its slot waits for it; rollback goes back to the previous command', () => {
  const {store, m} = managerFixture('sn-roll-', [
    ['a', '10.1.0.1'],
    ['b', '10.1.0.2'],
  ])
  m.createNetwork({name: 'net'})
  m.createService({name: 'web', mode: 'replicated', replicas: 2, networks: ['net'], command: ['a']})
  nodesAct(store)
  m.updateService('web', {command: ['b'], updateOrder: 'stop-first'})
  // The first pass: one old task marked shutdown, no new task yet (its slot is blocked until it is gone).
  assert.equal(tasks(store).filter((t) => t.desiredState === 'shutdown').length, 1)
  assert.equal(running(store).length, 1)
  m.placeAll()
  assert.equal(running(store).length, 1, 'still blocked: its node has not stopped it')
  nodesAct(store)
  m.placeAll()
  assert.equal(running(store).filter((t) => t.specVersion === 1).length, 1, 'now the new task')
  for (let i = 0; i < 10 && !done(store, 1); i++) {
    nodesAct(store)
    m.placeAll()
  }
  assert.deepEqual(
    running(store).map((t) => t.specVersion),
    [1, 1],
  )
  m.rollbackService('web')
  assert.deepEqual(m.read.findService('web').command, ['a'])
  for (let i = 0; i < 10 && !done(store, 2); i++) {
    nodesAct(store)
    m.placeAll()
  }
  assert.deepEqual(
    running(store).map((t) => t.specVersion),
    [2, 2],
  )
  assert.throws(() => m.updateService('web', {updateOrder: 'sideways'}), /invalid --update-order 'sideways'/)
  assert.throws(() => m.rollbackService('nosuch'), /not found/)
})

test('--force replaces the tasks of an unchanged spec; replicas alone replaces none', () => {
  const {store, m} = managerFixture('sn-roll-', [['a', '10.1.0.1']])
  m.createNetwork({name: 'net'})
  m.createService({name: 'web', mode: 'replicated', replicas: 1, networks: ['net'], command: []})
  nodesAct(store)
  const first = running(store)[0]!.id
  m.updateService('web', {replicas: 2})
  assert.ok(running(store).some((t) => t.id === first))
  assert.equal(m.read.findService('web').specVersion, undefined)
  m.updateService('web', {force: true, updateOrder: 'start-first'})
  assert.equal(m.read.findService('web').specVersion, 1)
  for (let i = 0; i < 10 && !done(store, 1); i++) {
    nodesAct(store)
    m.placeAll()
  }
  assert.ok(!running(store).some((t) => t.id === first))
})

test('a global service rolls node by node: stop-first, start-first, then a rollback, each completed', () => {
  const clock = {t: 1_000_000}
  const {store, m} = managerFixture(
    'sn-roll-',
    [
      ['a', '10.1.0.1'],
      ['b', '10.1.0.2'],
      ['c', '10.1.0.3'],
    ],
    undefined,
    {now: () => clock.t},
  )
  m.createNetwork({name: 'net'})
  m.createService({name: 'agent', mode: 'global', replicas: 0, networks: ['net'], command: ['a']})
  nodesAct(store)
  const nodeIds = ['a', 'b', 'c']
  const byNode = () =>
    running(store)
      .map((t) => `${t.nodeId}:${t.specVersion ?? 0}`)
      .sort()
  assert.deepEqual(byNode(), ['a:0', 'b:0', 'c:0'])
  /** Passes (the nodes act, a second goes by) until the update's state is no longer in progress; checks each pass. */
  const roll = (v: number, check: (pass: number) => void) => {
    let pass = 0
    for (; pass < 40; pass++) {
      const st = m.read.findService('agent').updateStatus?.state
      if (st !== 'updating' && st !== 'rollback_started') break
      check(pass)
      nodesAct(store)
      clock.t += 1000
      m.placeAll()
    }
    assert.ok(pass < 40, `the update of version ${v} finished`)
    // Every node runs one task, of the new version, and nothing else is left.
    assert.deepEqual(
      byNode(),
      nodeIds.map((n) => `${n}:${v}`),
    )
    assert.equal(tasks(store).length, 3)
  }

  // Stop-first, parallelism 1: one node at a time has no task of the service meant to run, never two.
  m.updateService('agent', {command: ['b'], updateOrder: 'stop-first'})
  assert.equal(m.read.findService('agent').updateStatus?.state, 'updating')
  roll(1, (pass) => {
    const r = running(store)
    assert.ok(r.length >= 2 && r.length <= 3, `pass ${pass}: ${r.length} meant to run`)
    assert.ok(new Set(r.map((t) => t.nodeId)).size === r.length, `pass ${pass}: at most one task per node meant to run`)
  })
  assert.equal(m.read.findService('agent').updateStatus?.state, 'completed')
  assert.deepEqual(m.read.findService('agent').command, ['b'])

  // Start-first: a node's new task serves before its old one stops: every node serves throughout.
  m.updateService('agent', {command: ['c'], updateOrder: 'start-first'})
  roll(2, (pass) => {
    const nodesServing = new Set(serving(store).map((t) => t.nodeId))
    assert.equal(nodesServing.size, 3, `pass ${pass}: every node serves`)
    assert.ok(running(store).length <= 4, `pass ${pass}: at most one node in flight`)
  })
  assert.equal(m.read.findService('agent').updateStatus?.state, 'completed')

  // Rollback: back to ['b'], rolled the same way.
  m.rollbackService('agent')
  assert.deepEqual(m.read.findService('agent').command, ['b'])
  roll(3, () => {})
  assert.equal(m.read.findService('agent').updateStatus?.state, 'rollback_completed')
})
