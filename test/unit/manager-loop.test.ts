// The manager's placement loop on a real store: it runs on store changes, says
// each placement problem once (not on every pass), and says when it is gone.
import assert from 'node:assert/strict'
import {test} from 'node:test'
import {startManagerLoop} from '../../src/manager/loop.js'
import {Manager} from '../../src/manager/manager.js'
import type {NodeRecord, Service, TaskStatus} from '../../src/model/types.js'
import {keyOf} from '../../src/store/keys.js'
import {clusterStore} from './manager-fixture.js'
import {nodeRecord} from './model-records.js'

test('placement problems are logged once when they appear and once when they are gone', async () => {
  const {store} = clusterStore('sn-manager-loop-')
  const node = (id: string): NodeRecord => nodeRecord(id, '172.30.0.11', {role: 'manager'})
  store.put(keyOf('node', 'a'), node('a'))
  const m = new Manager(store, 'a')
  const net = m.createNetwork({name: 'p', subnet: '10.9.0.0/30'}) // one task address
  const logs: string[] = []
  const loop = startManagerLoop(m, store, (l) => logs.push(l), {intervalMs: 60_000, debounceMs: 5})
  try {
    // As a peer or an older manager could write it: a global service, then a second node joins.
    // dnsrr: no VIP, so the /30's one address is the task's.
    const g: Service = {
      id: 'g1',
      name: 'g',
      mode: {global: true},
      networks: [net.id],
      command: [],
      endpointMode: 'dnsrr',
      createdAt: 1,
      updatedAt: 1,
    }
    store.put(keyOf('service', g.id), g)
    await new Promise((r) => setTimeout(r, 100))
    assert.equal(m.read.tasks().length, 1, 'the store change alone triggered placement')
    store.put(keyOf('node', 'b'), node('b'))
    await new Promise((r) => setTimeout(r, 100))
    for (let i = 0; i < 5; i++) loop.pass()
    assert.deepEqual(logs, ['placement: service g needs 1 new task address, but network p (10.9.0.0/30) has 0 free addresses'])
    assert.equal(loop.problems.size, 1)
    store.put(keyOf('node', 'b'), {...node('b'), state: 'left'})
    await new Promise((r) => setTimeout(r, 100))
    assert.deepEqual(logs.slice(1), ['placement: service g is fully placed again'])
    assert.equal(loop.problems.size, 0)
  } finally {
    loop.stop()
    store.close()
  }
})

test("a rolling update's monitor period ends on the timer's pass, with no store change", async () => {
  const {store} = clusterStore('sn-manager-loop-')
  store.put(keyOf('node', 'a'), nodeRecord('a', '172.30.0.11', {role: 'manager'}))
  const clock = {t: 1_000_000}
  const m = new Manager(store, 'a', undefined, {now: () => clock.t})
  m.createNetwork({name: 'p'})
  const loop = startManagerLoop(m, store, () => {}, {intervalMs: 60_000, debounceMs: 5})
  const settle = () => new Promise((r) => setTimeout(r, 50))
  // The node's part: what is meant to run runs; what is shut down is stopped.
  const nodeActs = () => {
    for (const t of m.read.tasks()) {
      const key = keyOf('taskstatus', t.id)
      if (t.desiredState === 'running' && !store.get(key))
        store.put(key, {taskId: t.id, nodeId: t.nodeId, state: 'running', restarts: 0, updatedAt: clock.t} satisfies TaskStatus)
      if (t.desiredState === 'shutdown' && store.get(key)) store.delete(key)
    }
  }
  try {
    m.createService({name: 'web', mode: 'replicated', replicas: 1, networks: ['p'], command: ['a']})
    nodeActs()
    m.updateService('web', {command: ['b'], updateMonitor: '5s'})
    for (let i = 0; i < 5; i++) {
      nodeActs()
      loop.passChanged()
      await settle()
    }
    assert.equal(m.read.findService('web').updateStatus?.state, 'updating', 'its new task serves, watched for 5 s')
    clock.t += 6000
    loop.passChanged()
    assert.equal(m.read.findService('web').updateStatus?.state, 'completed')
  } finally {
    loop.stop()
    store.close()
  }
})
