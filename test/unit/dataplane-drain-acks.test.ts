// A stopping task's signal waits for the nodes' word that their maps left it out (drain-acks.ts),
// over a real store: which nodes are asked (those holding the task's networks, or every node for
// the mesh's; not one down or whose agent is away), the clock for a node without a record, the
// most it waits, and what each node writes after its map sync.
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {after, describe, it} from 'node:test'
import {DrainAcks, DrainWait, drainedKey, type DrainOutcome} from '../../src/dataplane/drain-acks.js'
import {desiredMaps} from '../../src/dataplane/desired.js'
import type {Task, TaskStatus} from '../../src/model/types.js'
import {ClusterReader} from '../../src/store/cluster-reader.js'
import {keyOf} from '../../src/store/keys.js'
import {Store} from '../../src/store/store.js'
import {networkRecord, nodeRecord, serviceRecord} from './model-records.js'

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'swarmnet-drain-'))
after(() => fs.rmSync(root, {recursive: true, force: true}))
let n = 0

const id = (c: string) => c.repeat(24)
const W1 = id('1') // the task being stopped, on node a
const task = (
  tid: string,
  nodeId: string,
  networkId: string,
  ip: string,
  desiredState: Task['desiredState'] = 'running',
): Task => ({
  id: tid,
  serviceId: 'web',
  serviceName: 'web',
  slot: 1,
  nodeId,
  desiredState,
  attachments: [{networkId, ip, mac: '02:42:0a:00:01:01'}],
  createdAt: 0,
})
const status = (t: Task): TaskStatus => ({taskId: t.id, nodeId: t.nodeId, state: 'running', restarts: 0, updatedAt: 1})

/**
 * Nodes a (stops W1 on n1), b (a task on n1), c (only on n2), d (on n1, its agent away) and e (on
 * n1, down).
 */
function cluster(opts: {ingress?: boolean} = {}) {
  const store = new Store(path.join(root, `s${n++}`), 'a', {reapIntervalMs: 0}).open()
  for (const [i, nid] of ['a', 'b', 'c', 'd', 'e'].entries()) store.put(keyOf('node', nid), nodeRecord(nid, `172.30.0.${11 + i}`))
  store.put(keyOf('network', 'n1'), networkRecord('n1', '10.0.1.0/24', opts.ingress ? {ingress: true} : {}))
  store.put(keyOf('network', 'n2'), networkRecord('n2', '10.0.2.0/24', {vni: 4098}))
  const ports = opts.ingress ? {ports: [{protocol: 'tcp' as const, target: 80, published: 8080, mode: 'ingress' as const}]} : {}
  store.put(keyOf('service', 'web'), serviceRecord('web', ['n1'], ports))
  const tasks = [
    task(W1, 'a', 'n1', '10.0.1.5', 'shutdown'),
    task(id('2'), 'b', 'n1', '10.0.1.6'),
    task(id('3'), 'c', 'n2', '10.0.2.7'),
    task(id('4'), 'd', 'n1', '10.0.1.8'),
    task(id('5'), 'e', 'n1', '10.0.1.9'),
  ]
  for (const t of tasks) {
    store.put(keyOf('task', t.id), t)
    store.put(keyOf('taskstatus', t.id), status(t))
  }
  const reader = new ClusterReader(store, 'a')
  const wait = (o: {maxMs?: number; byClockMs?: number} = {}) =>
    new DrainWait({
      selfId: 'a',
      store,
      view: {
        nodes: () => reader.nodes(),
        networks: () => reader.networks(),
        tasks: () => reader.tasks(),
        services: () => reader.services(),
        statuses: () => reader.statuses(),
      },
      membership: {isDown: (x) => x === 'e', agentAway: (x) => x === 'd', changes: () => ({generation: 0, volatile: new Set()})},
      maxMs: o.maxMs ?? 5000,
      byClockMs: o.byClockMs ?? 5000,
    })
  return {store, wait}
}

const settled = async (p: Promise<DrainOutcome>, ms: number) =>
  Promise.race([p, new Promise<undefined>((r) => setTimeout(() => r(undefined), ms))])

describe('DrainWait', () => {
  it('waits for every node holding the task network, and ends as soon as the last says its maps left the task out', async () => {
    const {store, wait} = cluster()
    const w = wait()
    store.put(drainedKey('a'), {tasks: []})
    store.put(drainedKey('b'), {tasks: []})
    const p = w.wait(W1)
    assert.equal(await settled(p, 300), undefined, 'neither a nor b said so yet')
    store.put(drainedKey('a'), {tasks: [W1]})
    assert.equal(await settled(p, 300), undefined, 'b has not said so yet')
    const t0 = Date.now()
    store.put(drainedKey('b'), {tasks: [id('9'), W1]})
    const o = await settled(p, 1000)
    assert.ok(o, 'ended once b said so')
    assert.ok(Date.now() - t0 < 500, `ended ${Date.now() - t0} ms after b's record`)
    // c holds no network of the task; d's agent is away (its maps cannot change); e is down.
    assert.deepEqual([o.confirmed.sort(), o.byClock, o.unconfirmed], [['a', 'b'], [], []])
    w.stop()
    store.close()
  })

  it('a node without a record (an older agent) is waited for by the clock; one that never says so, at most maxMs', async () => {
    const {store, wait} = cluster()
    const w = wait({byClockMs: 400, maxMs: 5000})
    store.put(drainedKey('a'), {tasks: [W1]})
    const t0 = Date.now()
    const o = await w.wait(W1)
    assert.ok(Date.now() - t0 >= 380, `b without a record: waited ${Date.now() - t0} ms, not the clock's 400`)
    assert.deepEqual([o.confirmed, o.byClock, o.unconfirmed], [['a'], ['b'], []])
    w.stop()

    const w2 = wait({byClockMs: 100, maxMs: 500})
    store.put(drainedKey('b'), {tasks: []})
    const t1 = Date.now()
    const o2 = await w2.wait(W1)
    assert.ok(Date.now() - t1 >= 480, `ended after ${Date.now() - t1} ms, before maxMs`)
    assert.deepEqual([o2.confirmed, o2.byClock, o2.unconfirmed], [['a'], [], ['b']])
    w2.stop()
    store.close()
  })

  it('the mesh network is every node’s: a node with no task on it is asked too', async () => {
    const {store, wait} = cluster({ingress: true})
    const w = wait({maxMs: 400})
    for (const x of ['a', 'b']) store.put(drainedKey(x), {tasks: [W1]})
    store.put(drainedKey('c'), {tasks: []})
    const o = await w.wait(W1)
    assert.deepEqual([o.confirmed.sort(), o.unconfirmed], [['a', 'b'], ['c']])
    w.stop()
    store.close()
  })

  it('a task whose record is gone, or meant to run again, is in no wait: it ends at once', async () => {
    const {store, wait} = cluster()
    const w = wait()
    store.put(drainedKey('b'), {tasks: []})
    const gone = w.wait(id('0'))
    assert.deepEqual(await settled(gone, 300), {ms: (await gone).ms, confirmed: [], byClock: [], unconfirmed: []})
    const p = w.wait(W1)
    assert.equal(await settled(p, 200), undefined)
    store.put(keyOf('task', W1), task(W1, 'a', 'n1', '10.0.1.5', 'running'))
    assert.ok(await settled(p, 500), 'back to running: the wait ended')
    w.stop()
    store.close()
  })
})

describe('DrainAcks and the maps', () => {
  it("desiredMaps names the draining tasks of the node's networks, not those of others", () => {
    const {store} = cluster()
    const reader = new ClusterReader(store, 'a')
    const view = (selfId: string) => ({
      selfId,
      nodes: reader.nodes(),
      networks: reader.networks(),
      tasks: reader.tasks(),
      services: reader.services(),
      statuses: reader.statuses(),
      local: [],
    })
    assert.deepEqual(desiredMaps(view('b')).drained, [W1], 'b holds n1')
    assert.deepEqual(desiredMaps(view('a')).drained, [W1], 'its own node too')
    assert.deepEqual(desiredMaps(view('c')).drained, [], 'c holds only n2')
    store.close()
  })

  it('writes the record at the first sync, empty or not, and again only when the set changes', () => {
    const {store} = cluster()
    const acks = new DrainAcks({store, selfId: 'a'})
    const clock = () => store.entry(drainedKey('a'))?.version.clock
    acks.publish([])
    assert.deepEqual(store.get(drainedKey('a')), {tasks: []})
    const c0 = clock()
    acks.publish([])
    assert.equal(clock(), c0, 'unchanged: not written again')
    acks.publish([id('b'), id('a')])
    assert.deepEqual(store.get(drainedKey('a')), {tasks: [id('a'), id('b')]}, 'sorted')
    const c1 = clock()
    // A restarted agent whose record already says the same writes nothing.
    new DrainAcks({store, selfId: 'a'}).publish([id('a'), id('b')])
    assert.equal(clock(), c1)
    store.close()
  })
})
