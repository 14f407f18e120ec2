// --update-delay, --update-monitor, --update-failure-action and --update-max-failure-ratio
// (src/manager/rolling.ts updateProgress) as the manager places them, pass by pass, on a clock the
// test moves. The nodes' part is played by hand: a task of a crashing spec version fails at once
// (its node says failed, restarted once), any other reports running; a task marked shutdown is
// stopped (its status removed).
import assert from 'node:assert/strict'
import {test} from 'node:test'
import {Manager} from '../../src/manager/manager.js'
import type {UpdateRequest} from '../../src/manager/update-config.js'
import type {Service, Task, TaskStatus} from '../../src/model/types.js'
import {keyOf, prefixOf} from '../../src/store/keys.js'
import type {Store} from '../../src/store/store.js'
import {managerFixture, storeFiles} from './manager-fixture.js'

const tasks = (store: Store) => store.values<Task>(prefixOf('task'))
const running = (store: Store) => tasks(store).filter((t) => t.desiredState === 'running')
const versions = (store: Store) =>
  running(store)
    .map((t) => t.specVersion ?? 0)
    .sort()
const status = (store: Store, t: Task) => store.get<TaskStatus>(keyOf('taskstatus', t.id))

type Clock = {t: number}

function nodesAct(store: Store, clock: Clock, crash: ReadonlySet<number> = new Set()): void {
  for (const t of tasks(store)) {
    const key = keyOf('taskstatus', t.id)
    if (t.desiredState === 'running' && !store.get(key)) {
      const fails = crash.has(t.specVersion ?? 0)
      const st: TaskStatus = {
        taskId: t.id,
        nodeId: t.nodeId,
        state: fails ? 'failed' : 'running',
        restarts: fails ? 1 : 0,
        ...(fails ? {message: 'process exited; restarting'} : {}),
        updatedAt: clock.t,
      }
      store.put(key, st)
    }
    if (t.desiredState === 'shutdown' && store.get(key)) store.delete(key)
  }
}

function cluster(replicas: number) {
  const clock: Clock = {t: 1_000_000}
  const nodes = [
    ['a', '10.1.0.1'],
    ['b', '10.1.0.2'],
    ['c', '10.1.0.3'],
  ] as const
  const {dir, store, m} = managerFixture('sn-updfail-', nodes, undefined, {now: () => clock.t})
  m.createNetwork({name: 'net'})
  return {dir, store, m, clock, replicas}
}

/** Passes, each a second after the last, until done() or 40 passes; the passes it took. */
function run(c: ReturnType<typeof cluster>, crash: ReadonlySet<number>, done: () => boolean, m: Manager = c.m): number {
  let i = 0
  for (; i < 40 && !done(); i++) {
    nodesAct(c.store, c.clock, crash)
    c.clock.t += 1000
    m.placeAll()
  }
  return i
}

const web = (m: Manager): Service => m.read.findService('web')

test('pause (the default): the first failed new task stops the rollout; the next service update resumes it', () => {
  const c = cluster(3)
  const {store, m} = c
  m.createService({name: 'web', mode: 'replicated', replicas: 3, networks: ['net'], command: ['a']})
  nodesAct(store, c.clock)
  m.updateService('web', {command: ['b']})
  assert.equal(web(m).updateStatus?.state, 'updating')
  run(c, new Set([1]), () => web(m).updateStatus?.state !== 'updating')
  const st = web(m).updateStatus!
  assert.equal(st.state, 'paused')
  assert.match(st.message ?? '', /^update paused due to failure or early termination of task web\.\d \([0-9a-f]{24}\)$/)
  // Paused: no further slot is touched, however long it waits (stop-first, parallelism 1: one slot went).
  run(c, new Set([1]), () => false)
  assert.deepEqual(versions(store), [0, 0, 1])
  assert.equal(web(m).updateStatus?.state, 'paused')
  // The next update (a spec that works) goes on from there, and completes once every new task has
  // served its monitor period (5 s by default).
  m.updateService('web', {command: ['c']})
  assert.equal(web(m).updateStatus?.state, 'updating')
  run(c, new Set([1]), () => web(m).updateStatus?.state !== 'updating')
  assert.deepEqual(versions(store), [2, 2, 2])
  assert.equal(web(m).updateStatus?.state, 'completed')
  assert.equal(web(m).updateStatus?.message, 'update completed')
  // An update that changes no task on a paused service resumes it too (Docker: any update does).
  m.updateService('web', {command: ['d']})
  run(c, new Set([3]), () => web(m).updateStatus?.state !== 'updating')
  assert.equal(web(m).updateStatus?.state, 'paused')
  m.updateService('web', {updateParallelism: 3})
  assert.equal(web(m).updateStatus?.state, 'updating')
  assert.equal(web(m).updateStatus?.message, 'update resumed')
})

test('rollback: a failed new task rolls the service back to its previous spec, start-first keeps 3 serving', () => {
  const c = cluster(3)
  const {store, m} = c
  m.createService({
    name: 'web',
    mode: 'replicated',
    replicas: 3,
    networks: ['net'],
    command: ['a'],
    updateFailureAction: 'rollback',
    updateOrder: 'start-first',
  })
  nodesAct(store, c.clock)
  m.updateService('web', {command: ['crash']})
  const serving = () => running(store).filter((t) => status(store, t)?.state === 'running').length
  let least = 3
  run(c, new Set([1]), () => {
    least = Math.min(least, serving())
    return web(m).updateStatus?.state !== 'updating'
  })
  const st = web(m).updateStatus!
  assert.equal(st.state, 'rollback_started')
  assert.match(st.message ?? '', /^update rolled back due to failure or early termination of task web\.\d/)
  assert.deepEqual(web(m).command, ['a'], 'the previous spec is back')
  run(c, new Set([1]), () => {
    least = Math.min(least, serving())
    return web(m).updateStatus?.state !== 'rollback_started'
  })
  assert.equal(web(m).updateStatus?.state, 'rollback_completed')
  assert.equal(web(m).updateStatus?.message, 'rollback completed')
  assert.deepEqual(versions(store), [2, 2, 2])
  assert.equal(least, 3, 'start-first: every slot served throughout')
})

test('rollback, global: a failed new task on one node rolls the global service back; every node serves throughout', () => {
  const c = cluster(0)
  const {store, m} = c
  m.createService({name: 'web', mode: 'global', replicas: 0, networks: ['net'], command: ['a']})
  m.updateService('web', {updateFailureAction: 'rollback', updateOrder: 'start-first'})
  nodesAct(store, c.clock)
  m.updateService('web', {command: ['crash']})
  const nodesServing = () =>
    new Set(running(store).flatMap((t) => (status(store, t)?.state === 'running' ? [t.nodeId] : []))).size
  let least = 3
  run(c, new Set([1]), () => {
    least = Math.min(least, nodesServing())
    return web(m).updateStatus?.state !== 'updating'
  })
  assert.equal(web(m).updateStatus?.state, 'rollback_started')
  assert.deepEqual(web(m).command, ['a'], 'the previous spec is back')
  run(c, new Set([1]), () => {
    least = Math.min(least, nodesServing())
    return web(m).updateStatus?.state !== 'rollback_started'
  })
  assert.equal(web(m).updateStatus?.state, 'rollback_completed')
  assert.deepEqual(versions(store), [2, 2, 2])
  assert.equal(least, 3, 'start-first: every node served throughout')
})

test('a rollback that fails pauses (it is never rolled back); continue goes on despite failures', () => {
  const c = cluster(2)
  const {store, m} = c
  m.createService({name: 'web', mode: 'replicated', replicas: 2, networks: ['net'], command: ['a']})
  nodesAct(store, c.clock)
  m.updateService('web', {command: ['b'], updateFailureAction: 'rollback'})
  run(c, new Set([1, 2]), () => web(m).updateStatus?.state === 'rollback_paused')
  assert.equal(web(m).updateStatus?.state, 'rollback_paused')
  assert.match(web(m).updateStatus?.message ?? '', /^rollback paused due to failure/)

  const d = cluster(2)
  d.m.createService({name: 'web', mode: 'replicated', replicas: 2, networks: ['net'], command: ['a']})
  nodesAct(d.store, d.clock)
  d.m.updateService('web', {command: ['b'], updateFailureAction: 'continue'})
  run(d, new Set([1]), () => web(d.m).updateStatus?.state !== 'updating')
  assert.equal(web(d.m).updateStatus?.state, 'completed')
  assert.deepEqual(versions(d.store), [1, 1])
})

test('--update-max-failure-ratio: failures up to the ratio of the replicas are tolerated', () => {
  const c = cluster(3)
  const {store, m} = c
  m.createService({name: 'web', mode: 'replicated', replicas: 4, networks: ['net'], command: ['a']})
  nodesAct(store, c.clock)
  // 2 of 4 may fail (2 > 0.5 * 4 is false): the third pauses.
  m.updateService('web', {command: ['b'], updateMaxFailureRatio: '0.5'})
  run(c, new Set([1]), () => web(m).updateStatus?.state !== 'updating')
  assert.equal(web(m).updateStatus?.state, 'paused')
  assert.equal(web(m).updateStatus?.failed?.length, 3)
  assert.deepEqual(versions(store), [0, 1, 1, 1])
})

test('--update-monitor: a new task that fails after its monitor period is not a failure of the update', () => {
  const c = cluster(3)
  const {store, m} = c
  m.createService({name: 'web', mode: 'replicated', replicas: 1, networks: ['net'], command: ['a']})
  nodesAct(store, c.clock)
  m.updateService('web', {command: ['b'], updateMonitor: '30s'})
  run(c, new Set(), () => Object.keys(web(m).updateStatus?.served ?? {}).length === 1)
  const fresh = running(store).find((t) => t.specVersion === 1)!
  const served = web(m).updateStatus!.served![fresh.id]!
  // It fails 31 s after it first served: the update is not paused, and completes.
  c.clock.t = served + 31_000
  store.put(keyOf('taskstatus', fresh.id), {...status(store, fresh)!, state: 'failed', restarts: 1, updatedAt: c.clock.t})
  m.placeAll()
  assert.equal(web(m).updateStatus?.state, 'completed')
  // Within it (a second update, failing 10 s after serving): paused.
  m.updateService('web', {command: ['c']})
  run(c, new Set(), () => Object.keys(web(m).updateStatus?.served ?? {}).length === 1)
  const next = running(store).find((t) => t.specVersion === 2)!
  c.clock.t = web(m).updateStatus!.served![next.id]! + 10_000
  store.put(keyOf('taskstatus', next.id), {...status(store, next)!, state: 'failed', restarts: 1, updatedAt: c.clock.t})
  m.placeAll()
  assert.equal(web(m).updateStatus?.state, 'paused')
})

test('--update-delay: the next slot waits that long after the last one served; a new manager goes on', () => {
  const c = cluster(3)
  const {store, m} = c
  m.createService({name: 'web', mode: 'replicated', replicas: 3, networks: ['net'], command: ['a']})
  nodesAct(store, c.clock)
  m.updateService('web', {command: ['b'], updateDelay: '10s', updateOrder: 'start-first'})
  // Slot 1 is replaced; then 9 passes a second apart start nothing.
  run(c, new Set(), () => versions(store).join() === '0,0,1' && tasks(store).length === 3)
  const servedAt = Object.values(web(m).updateStatus!.served!)[0]!
  for (; c.clock.t < servedAt + 9000; c.clock.t += 1000) {
    nodesAct(store, c.clock)
    m.placeAll()
    assert.equal(tasks(store).filter((t) => t.specVersion === 1).length, 1, `at +${c.clock.t - servedAt} ms`)
  }
  // A restarted manager (a new one on the same store) goes on from the record alone.
  const again = new Manager(store, 'a', undefined, {now: () => c.clock.t})
  run(c, new Set(), () => web(again).updateStatus?.state === 'completed', again)
  assert.deepEqual(versions(store), [1, 1, 1])
  const st = web(again).updateStatus!
  assert.ok(st.completedAt! - st.startedAt >= 20_000, 'two delays of 10 s between three slots')
})

test('bad --update-* values are refused in one line and nothing is written', async () => {
  const c = cluster(3)
  const {dir, store, m} = c
  m.createService({name: 'web', mode: 'replicated', replicas: 1, networks: ['net'], command: ['a']})
  // The store group-commits off the event loop: what is written so far is on disk before the snapshot.
  await store.sync()
  const before = storeFiles(dir)
  const bad: [UpdateRequest, RegExp][] = [
    [{updateDelay: 'soon'}, /invalid --update-delay 'soon': a duration/],
    [{updateMonitor: '25h'}, /invalid --update-monitor '25h': at most 24h$/],
    [{updateFailureAction: 'explode'}, /invalid --update-failure-action 'explode': pause, continue or rollback$/],
    [{updateMaxFailureRatio: '1.5'}, /invalid --update-max-failure-ratio '1.5': a number from 0 to 1$/],
    [{updateMaxFailureRatio: '-0.1'}, /invalid --update-max-failure-ratio '-0.1'/],
    [{updateParallelism: 0}, /invalid --update-parallelism 0/],
  ]
  for (const [req, why] of bad) {
    assert.throws(() => m.updateService('web', {command: ['b'], ...req}), why)
    assert.throws(
      () => m.createService({name: 'web2', mode: 'replicated', replicas: 1, networks: ['net'], command: [], ...req}),
      why,
    )
  }
  await store.sync()
  assert.equal(storeFiles(dir), before)
  // Good ones are kept, and shown by defaults where not given.
  m.updateService('web', {updateDelay: '1m30s', updateFailureAction: 'rollback', updateMaxFailureRatio: '0.25'})
  assert.deepEqual(web(m).update, {
    parallelism: 1,
    order: 'stop-first',
    delayMs: 90_000,
    failureAction: 'rollback',
    maxFailureRatio: 0.25,
  })
  assert.equal(web(m).specVersion, undefined, 'settings alone replace no task')
})
