// The manager when a node is declared down (src/membership/): replicated tasks
// move to live nodes, global ones wait, the replaced tasks keep their addresses
// until the node is back and has stopped them, and `node rm` only takes a node
// that is down.
import assert from 'node:assert/strict'
import {beforeEach, test} from 'node:test'
import type {Manager} from '../../src/manager/manager.js'
import type {TaskStatus} from '../../src/model/types.js'
import {keyOf} from '../../src/store/keys.js'
import type {Store} from '../../src/store/store.js'
import {managerFixture} from './manager-fixture.js'

let m: Manager
let store: Store
const down = new Set<string>()

beforeEach(() => {
  down.clear()
  ;({store, m} = managerFixture(
    'sn-healing-',
    [
      ['a', '172.30.0.11'],
      ['b', '172.30.0.12'],
      ['c', '172.30.0.13'],
    ],
    {isDown: (id) => down.has(id)},
  ))
  m.createNetwork({name: 'net'})
})

const tasksOf = (name: string) => m.read.tasks().filter((t) => t.serviceName === name)
const running = (name: string) => tasksOf(name).filter((t) => t.desiredState === 'running')
const ips = (name: string) => tasksOf(name).map((t) => t.attachments[0]!.ip)
const status = (taskId: string, nodeId: string, state: TaskStatus['state']) =>
  store.put(keyOf('taskstatus', taskId), {taskId, nodeId, state, restarts: 0, updatedAt: 1} satisfies TaskStatus)

test('replicated tasks of a down node move to live nodes; the old ones keep their addresses until the node stopped them', () => {
  m.createService({name: 'web', mode: 'replicated', replicas: 3, networks: ['net'], command: []})
  const onC = running('web').find((t) => t.nodeId === 'c')!
  status(onC.id, 'c', 'running')
  down.add('c')
  m.placeAll()
  const now = running('web')
  assert.equal(now.length, 3, 'three replicas, still')
  assert.ok(
    now.every((t) => t.nodeId !== 'c'),
    'none on the down node',
  )
  const old = m.read.tasks().find((t) => t.id === onC.id)
  assert.equal(old?.desiredState, 'shutdown', 'the replaced task is told to stop, not forgotten')
  assert.equal(new Set(ips('web')).size, 4, 'no address used twice: the new task did not take the old one')
  assert.ok(!now.some((t) => t.attachments[0]!.ip === onC.attachments[0]!.ip))
  m.placeAll()
  assert.equal(tasksOf('web').length, 4, 'a second pass changes nothing')

  // The node is back but has not stopped it yet: the record and its address stay.
  down.delete('c')
  m.placeAll()
  assert.ok(m.read.tasks().some((t) => t.id === onC.id))
  assert.equal(running('web').length, 3, 'the node that came back gets no extra task')
  // It stopped it (its status is gone): now the record goes and the address is free.
  store.delete(keyOf('taskstatus', onC.id))
  m.placeAll()
  assert.equal(
    m.read.tasks().some((t) => t.id === onC.id),
    false,
  )
  assert.equal(tasksOf('web').length, 3)
})

test('global tasks are not moved: the down node keeps its task, no other node gets a second one', () => {
  m.createService({name: 'agent', mode: 'global', replicas: 0, networks: ['net'], command: []})
  const before = running('agent')
    .map((t) => t.id)
    .sort()
  assert.equal(before.length, 3)
  down.add('b')
  m.placeAll()
  assert.deepEqual(
    running('agent')
      .map((t) => t.id)
      .sort(),
    before,
  )
})

test('node rm: refused while the node is up, in one line; a down node leaves and its tasks go elsewhere', () => {
  m.createService({name: 'web', mode: 'replicated', replicas: 3, networks: ['net'], command: []})
  m.createService({name: 'agent', mode: 'global', replicas: 0, networks: ['net'], command: []})
  assert.throws(() => m.removeNode('n-c'), /node n-c is up: only a node that is down can be removed/)
  assert.throws(() => m.removeNode('n-a'), /is this manager/)
  assert.throws(() => m.removeNode('nope'), /node nope not found/)
  down.add('c')
  assert.equal(m.removeNode('n-c').state, 'left')
  m.placeAll()
  assert.ok(
    tasksOf('web').every((t) => t.nodeId !== 'c'),
    'its replaced tasks are removed',
  )
  assert.ok(
    tasksOf('agent').every((t) => t.nodeId !== 'c'),
    'and its global task',
  )
  assert.equal(running('web').length, 3)
  assert.throws(() => m.removeNode('n-c'), /already left/)
})

test('node rm reads the state node ls shows (down now), not the reschedule delay placement waits for', () => {
  const shown = new Set<string>()
  const {m: m2} = managerFixture(
    'sn-healing-rm-',
    [
      ['a', '172.30.0.11'],
      ['b', '172.30.0.12'],
    ],
    // b is down (node ls says so) but not yet for the reschedule delay.
    {isDown: () => false, downNow: (id) => shown.has(id)},
  )
  assert.throws(() => m2.removeNode('n-b'), /node n-b is up/)
  shown.add('b')
  assert.equal(m2.removeNode('n-b').state, 'left')
})
