// Two managers rotating the cluster key at the same moment (issue 20): gossip on loopback, a
// real etcd (one member started by the test) holding the rotation lock. One rotation starts,
// the other is refused in one line; every node ends holding one key, the same bytes, and once
// that rotation is done the lock is free for the other manager.
import assert from 'node:assert/strict'
import {after, before, test} from 'node:test'
import type {Etcd3} from 'etcd3'
import {certifyNode} from '../../src/gossip/identity.js'
import {KeyRotation} from '../../src/gossip/rotation.js'
import {etcdClient} from '../../src/manager/etcd-client.js'
import {EtcdRotationLock, startRotation} from '../../src/manager/etcd-rotation-lock.js'
import type {NodeRecord} from '../../src/model/types.js'
import {startTestEtcd, type TestEtcd} from './etcd-fixture.js'
import {GossipLab, waitFor, type LabNode} from './gossip-lab.js'

let etcd: TestEtcd
const lab = new GossipLab()
const clients: Etcd3[] = []
const timers: NodeJS.Timeout[] = []

before(async () => {
  etcd = await startTestEtcd()
})
after(async () => {
  for (const t of timers) clearInterval(t)
  await lab.close()
  for (const c of clients) c.close()
  await etcd?.stop()
})

/** A manager's rotation as the agent runs it: every other node is live, ticked every 50 ms. */
function rotationOf(m: LabNode, all: LabNode[]): KeyRotation {
  const rot = new KeyRotation({
    ring: m.gossip.keyring,
    selfId: m.id,
    privateKey: m.nodeKey.privateKey,
    peers: () => all.filter((n) => n !== m).map((n) => ({id: n.id})),
    send: (id, d) => m.gossip.sendKeys(id, d),
    persist: () => undefined,
    graceMs: 300,
    resendMs: 100,
    retireWaitMs: 2_000,
  })
  m.gossip.rotation = rot
  timers.push(setInterval(() => rot.tick(), 50))
  return rot
}

function lockOf(m: LabNode): EtcdRotationLock {
  const client = etcdClient({endpoints: [etcd.endpoint], prefix: '/swarmnet/c1/'})
  clients.push(client)
  return new EtcdRotationLock(client.namespace('/swarmnet/c1/'), m.id)
}

/** Every node holds exactly one key, the same id and the same bytes. */
function oneKey(nodes: LabNode[]): boolean {
  const [first] = nodes
  const id = first!.gossip.keyring.primary
  const bytes = first!.gossip.keyring.primaryKey()
  return nodes.every((n) => {
    const r = n.gossip.keyring
    return r.ids().length === 1 && r.primary === id && r.primaryKey().equals(bytes)
  })
}

test('two managers rotating at once: one rotation runs, the other is refused, every node ends with one key', async () => {
  const m1 = await lab.manager('m1')
  const a = await lab.worker('a', m1)
  const b = await lab.worker('b', m1)
  const m2 = await lab.worker('m2', m1)
  // m1 promotes m2: its record, certified as a manager, so the nodes believe m2's directives.
  const rec = m1.store.get<NodeRecord>('node/m2')!
  m1.store.put('node/m2', {...rec, role: 'manager', cert: certifyNode(lab.identity, 'm2', m2.nodeKey.publicKey, 'manager')})
  const all = [m1, a, b, m2]
  await waitFor(
    'every node knows every node, m2 as a manager',
    () =>
      all.every(
        (n) =>
          ['m1', 'a', 'b', 'm2'].every((id) => n.store.get(`node/${id}`)) &&
          n.store.get<NodeRecord>('node/m2')?.role === 'manager',
      ),
    10_000,
  )
  const rot1 = rotationOf(m1, all)
  const rot2 = rotationOf(m2, all)
  const lock1 = lockOf(m1)
  const lock2 = lockOf(m2)

  // Both asked in the same turn.
  const results = await Promise.allSettled([startRotation(rot1, lock1), startRotation(rot2, lock2)])
  assert.deepEqual(results.map((r) => r.status).sort(), ['fulfilled', 'rejected'])
  const err = (results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason as Error
  assert.match(err.message, /^a key rotation is already under way, started by manager m[12]: try again once it is done$/)
  const [winner, loser] = results[0]!.status === 'fulfilled' ? [rot1, rot2] : [rot2, rot1]
  assert.equal(loser.busy, false, 'the refused manager changed nothing')

  await waitFor('the rotation is done', () => !winner.busy, 15_000)
  await waitFor('every node holds one key, the same', () => oneKey(all), 5_000)
  assert.equal(m1.gossip.keyring.primary, 1)

  // Done: the lock is free, and the other manager rotates in its turn.
  const second = await startRotation(loser, loser === rot1 ? lock1 : lock2)
  assert.equal(second.newId, 2)
  await waitFor('the second rotation is done', () => !loser.busy, 15_000)
  await waitFor('every node holds one key again, the same', () => oneKey(all) && m1.gossip.keyring.primary === 2, 5_000)
})
