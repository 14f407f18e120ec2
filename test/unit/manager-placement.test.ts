// Placement constraints, node availability and spread preferences (src/model/placement.ts,
// src/manager/plan.ts) through the manager on a real store, the nodes' part played by hand as in
// manager-rolling.test.ts: a task's node reports it running, and deletes its status once it has
// stopped a task marked shutdown.
import assert from 'node:assert/strict'
import {test} from 'node:test'
import {startManagerLoop} from '../../src/manager/loop.js'
import {isUserError} from '../../src/model/errors.js'
import {parseConstraint, parseLabel, parsePlacementPref} from '../../src/model/placement.js'
import {valueProblem} from '../../src/model/shape.js'
import type {Task, TaskStatus} from '../../src/model/types.js'
import {keyOf, prefixOf} from '../../src/store/keys.js'
import type {Store} from '../../src/store/store.js'
import {managerFixture, storeFiles} from './manager-fixture.js'

const tasks = (store: Store) => store.values<Task>(prefixOf('task'))
const running = (store: Store) => tasks(store).filter((t) => t.desiredState === 'running')
const perNode = (store: Store) => {
  const out: Record<string, number> = {}
  for (const t of running(store)) out[t.nodeId] = (out[t.nodeId] ?? 0) + 1
  return out
}

function nodesAct(store: Store): void {
  for (const t of tasks(store)) {
    const key = keyOf('taskstatus', t.id)
    if (t.desiredState === 'running' && !store.get(key))
      store.put(key, {taskId: t.id, nodeId: t.nodeId, state: 'running', restarts: 0, updatedAt: 1} satisfies TaskStatus)
    if (t.desiredState === 'shutdown' && store.get(key)) store.delete(key)
  }
}

const NODES = [
  ['a', '10.1.0.1'],
  ['b', '10.1.0.2'],
  ['c', '10.1.0.3'],
] as const

const svc = (name: string, replicas: number, more: {constraints?: string[]; placementPrefs?: string[]} = {}) => ({
  name,
  mode: 'replicated' as const,
  replicas,
  networks: ['net'],
  command: [],
  ...more,
})

/** A one-line user error whose text matches re. */
const oneLine = (re: RegExp) => (e: unknown) =>
  isUserError(e) && !(e as Error).message.includes('\n') && re.test((e as Error).message)

test('constraints parse as Swarm writes them; bad ones are one-line errors', () => {
  assert.deepEqual(parseConstraint('node.hostname==n3'), {field: 'node.hostname', op: '==', value: 'n3'})
  assert.deepEqual(parseConstraint('node.role != manager'), {field: 'node.role', op: '!=', value: 'manager'})
  assert.deepEqual(parseConstraint('node.labels.disk==ssd'), {field: 'node.labels', label: 'disk', op: '==', value: 'ssd'})
  assert.equal(parsePlacementPref('spread=node.labels.zone'), 'zone')
  assert.deepEqual(parseLabel('zone=a'), ['zone', 'a'])
  for (const [bad, why] of [
    ['node.hostname=n3', /expected FIELD==VALUE/],
    ['node.hostname==', /no value/],
    ['node.colour==red', /unknown field 'node.colour'/],
    ['node.role==boss', /manager or worker/],
    ['node.labels.==x', /bad label key|unknown field/],
    ['', /expected FIELD==VALUE/],
  ] as const)
    assert.throws(() => parseConstraint(bad), oneLine(why), bad)
  assert.throws(() => parsePlacementPref('spread=node.hostname'), oneLine(/spread=node\.labels\.KEY/))
  assert.throws(() => parsePlacementPref('binpack=node.labels.zone'), oneLine(/spread=node\.labels\.KEY/))
  assert.throws(() => parseLabel('bad key=x'), oneLine(/invalid label/))
})

test('node.hostname==, node.role== and node.labels.KEY== place only where all hold', () => {
  const {store, m} = managerFixture('sn-place-c-', NODES)
  m.createNetwork({name: 'net'})
  m.createService(svc('on-c', 3, {constraints: ['node.hostname==n-c']}))
  assert.deepEqual(perNode(store), {c: 3})
  m.createService(svc('mgr', 2, {constraints: ['node.role==manager']}))
  m.createService(svc('not-mgr', 2, {constraints: ['node.role!=manager']}))
  const of = (name: string) => running(store).filter((t) => t.serviceName === name)
  assert.deepEqual(
    of('mgr').map((t) => t.nodeId),
    ['a', 'a'],
  )
  assert.ok(of('not-mgr').every((t) => t.nodeId !== 'a'))
  // Labels: on b only once b has the label; both constraints must hold.
  m.updateNode('n-b', {labelAdd: ['disk=ssd', 'zone=x']})
  m.updateNode('n-c', {labelAdd: ['disk=ssd']})
  m.createService(svc('ssd-x', 3, {constraints: ['node.labels.disk==ssd', 'node.labels.zone==x']}))
  assert.deepEqual(
    of('ssd-x').map((t) => t.nodeId),
    ['b', 'b', 'b'],
  )
  // The label goes: its tasks move to where the constraints hold again (c gets zone=x).
  nodesAct(store)
  m.updateNode('n-b', {labelRm: ['zone']})
  m.updateNode('n-c', {labelAdd: ['zone=x']})
  m.placeAll()
  assert.deepEqual(
    of('ssd-x').map((t) => t.nodeId),
    ['c', 'c', 'c'],
  )
})

test('a service no node may take is created pending, and placed once a node fits', () => {
  const {store, m} = managerFixture('sn-place-p-', NODES)
  m.createNetwork({name: 'net'})
  m.createService(svc('nowhere', 2, {constraints: ['node.labels.gpu==yes']}))
  assert.equal(running(store).length, 0)
  const report = m.placeAll()
  assert.match(report.get('nowhere') ?? '', /2 tasks pending: no suitable node \(constraints node\.labels\.gpu==yes\)/)
  m.updateNode('n-c', {labelAdd: ['gpu=yes']})
  assert.equal(m.placeAll().size, 0)
  assert.deepEqual(perNode(store), {c: 2})
})

test('drain moves replicated tasks off gracefully (marked shutdown while their node stops them); active takes new ones again', () => {
  const {store, m} = managerFixture('sn-place-d-', NODES)
  m.createNetwork({name: 'net'})
  m.createService(svc('web', 6))
  nodesAct(store)
  assert.deepEqual(perNode(store), {a: 2, b: 2, c: 2})
  const onB = running(store).filter((t) => t.nodeId === 'b')
  m.updateNode('n-b', {availability: 'drain'})
  m.placeAll()
  // b's tasks are not deleted out from under it: marked shutdown, they leave the LB and DNS first.
  for (const t of onB) assert.equal(store.get<Task>(keyOf('task', t.id))?.desiredState, 'shutdown')
  assert.deepEqual(perNode(store), {a: 3, c: 3})
  nodesAct(store)
  m.placeAll()
  for (const t of onB) assert.equal(store.get(keyOf('task', t.id)), undefined)
  assert.equal(m.read.nodeSpec('b')?.availability, 'drain')
  // Active again: b takes the next new task (Swarm does not rebalance running ones).
  m.updateNode('n-b', {availability: 'active'})
  m.scaleService('web', 7)
  assert.deepEqual(perNode(store), {a: 3, b: 1, c: 3})
})

test('pause keeps a node its tasks and gives it no new one; global tasks too', () => {
  const {store, m} = managerFixture('sn-place-pa-', NODES)
  m.createNetwork({name: 'net'})
  m.createService(svc('web', 3))
  nodesAct(store)
  m.updateNode('c', {availability: 'pause'})
  m.scaleService('web', 6)
  assert.deepEqual(perNode(store), {a: 3, b: 2, c: 1})
  m.createService({...svc('probe', 0), mode: 'global'})
  assert.deepEqual(
    running(store)
      .filter((t) => t.serviceName === 'probe')
      .map((t) => t.nodeId)
      .sort(),
    ['a', 'b'],
  )
})

test('spread=node.labels.zone spreads over the label values, not over the nodes', () => {
  const {store, m} = managerFixture('sn-place-s-', NODES)
  m.createNetwork({name: 'net'})
  m.updateNode('n-a', {labelAdd: ['zone=1']})
  m.updateNode('n-b', {labelAdd: ['zone=1']})
  m.updateNode('n-c', {labelAdd: ['zone=2']})
  m.createService(svc('spread', 4, {placementPrefs: ['spread=node.labels.zone']}))
  // Two per zone: c (alone in zone 2) takes two; a and b share zone 1's two.
  assert.deepEqual(perNode(store), {a: 1, b: 1, c: 2})
  m.createService(svc('plain', 4))
  const plain: Record<string, number> = {}
  for (const t of running(store).filter((x) => x.serviceName === 'plain')) plain[t.nodeId] = (plain[t.nodeId] ?? 0) + 1
  assert.deepEqual(plain, {a: 2, b: 1, c: 1})
})

test('bad node updates and constraints are refused whole: one line, nothing written', async () => {
  const {dir, store, m} = managerFixture('sn-place-bad-', NODES)
  m.createNetwork({name: 'net'})
  // The store group-commits off the event loop: what is written so far is on disk before the snapshot.
  await store.sync()
  const files = storeFiles(dir)
  assert.throws(() => m.updateNode('n-b', {availability: 'off'}), oneLine(/invalid availability "off"/))
  assert.throws(() => m.updateNode('n-b', {labelRm: ['zone']}), oneLine(/node n-b has no label 'zone'/))
  assert.throws(() => m.updateNode('n-b', {}), oneLine(/nothing to change/))
  assert.throws(() => m.updateNode('n-z', {availability: 'drain'}), oneLine(/not found/))
  assert.throws(() => m.createService(svc('x', 1, {constraints: ['node.zone==1']})), oneLine(/unknown field/))
  assert.throws(() => m.createService(svc('x', 1, {placementPrefs: ['spread=zone']})), oneLine(/placement preference/))
  await store.sync()
  assert.equal(storeFiles(dir), files)
  assert.equal(store.get(keyOf('nodespec', 'b')), undefined)
})

test('a nodespec record has its own shape check', () => {
  assert.equal(valueProblem('nodespec/b', {id: 'b', availability: 'drain', labels: {zone: 'x'}}), undefined)
  assert.match(valueProblem('nodespec/b', {id: 'c', availability: 'drain', labels: {}}) ?? '', /'id' is not b/)
  assert.match(valueProblem('nodespec/b', {id: 'b', availability: 'gone', labels: {}}) ?? '', /availability/)
  assert.match(valueProblem('nodespec/b', {id: 'b', availability: 'active', labels: {zone: 1}}) ?? '', /label 'zone'/)
  assert.match(valueProblem('service/s', {constraints: ['node.x==1']}) ?? '', /./)
})

test("the manager's loop places again when a node's availability changes (nodespec/ starts a pass)", async () => {
  const {store, m} = managerFixture('sn-place-loop-', NODES)
  m.createNetwork({name: 'net'})
  m.createService(svc('web', 3))
  nodesAct(store)
  // The timer is out of the picture: only the store's change may start the pass.
  const loop = startManagerLoop(m, store, () => {}, {intervalMs: 3_600_000, debounceMs: 5})
  try {
    loop.pass()
    m.updateNode('n-b', {availability: 'drain'})
    const deadline = Date.now() + 5000
    while (perNode(store).b !== undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
    assert.deepEqual(perNode(store), {a: 2, c: 1})
  } finally {
    loop.stop()
  }
})
