// Placement gives no new task to a node whose agent is not heard now (MembershipView.agentAway:
// suspected or declared dead while its data path answers), and keeps the tasks it has.

import assert from 'node:assert/strict'
import {rmSync} from 'node:fs'
import {after, test} from 'node:test'
import {managerFixture} from './manager-fixture.js'

const away = new Set<string>(['b'])
const {dir, m} = managerFixture(
  'sn-agent-away-',
  [
    ['a', '172.30.0.11'],
    ['b', '172.30.0.12'],
    ['c', '172.30.0.13'],
  ],
  {isDown: () => false, agentAway: (id) => away.has(id)},
)
after(() => rmSync(dir, {recursive: true, force: true}))

const nodesOf = (name: string) =>
  m.read
    .tasks()
    .filter((t) => t.serviceName === name && t.desiredState === 'running')
    .map((t) => t.nodeId)
    .sort()

test('a node whose agent is away gets no new task, replicated or global; back, it does; its own tasks stay', () => {
  m.createNetwork({name: 'net'})
  m.createService({name: 'before', mode: 'global', replicas: 0, networks: ['net'], command: []})
  away.clear()
  m.placeAll()
  assert.deepEqual(nodesOf('before'), ['a', 'b', 'c'])
  away.add('b')
  m.createService({name: 'web', mode: 'replicated', replicas: 3, networks: ['net'], command: []})
  m.createService({name: 'ga', mode: 'global', replicas: 0, networks: ['net'], command: []})
  assert.deepEqual(nodesOf('web'), ['a', 'a', 'c'].sort())
  assert.deepEqual(nodesOf('ga'), ['a', 'c'])
  m.placeAll()
  assert.deepEqual(nodesOf('before'), ['a', 'b', 'c'], 'the tasks it has are kept')
  away.clear()
  m.placeAll()
  assert.deepEqual(nodesOf('ga'), ['a', 'b', 'c'], 'back: its global task is placed')
  assert.deepEqual(nodesOf('web'), ['a', 'a', 'c'].sort(), 'replicated tasks stay where they run')
})
