// Deletions of desired state are final by clock, not by the wall clock: a node that was away
// for longer than the tombstones are kept comes back holding a service deleted meanwhile, and
// its push-pulls offer it to nodes that reaped the tombstone. They must not take it back (a
// deleted service returning, perhaps on addresses reused since), and the node must drop it too.
// The TTL is 100 ms here.
import assert from 'node:assert/strict'
import {after, test} from 'node:test'
import {GossipLab, sleep, waitFor} from './gossip-lab.js'

const lab = new GossipLab()
after(() => lab.close())

test('a service deleted while a node was away, its tombstone reaped, does not come back when the node does', async () => {
  const m = await lab.manager('m', {store: lab.openStore('m', {tombstoneTtlMs: 100})})
  let w1 = await lab.worker('w1', m, {store: {tombstoneTtlMs: 100}})
  m.store.put('service/s1', {id: 's1', name: 'web'})
  await waitFor('w1 has the service', () => w1.store.get('service/s1') !== undefined, 5000)
  const s1 = {...m.store.entry('service/s1')!}
  const s1clock = s1.version.clock
  const {addr, port} = w1
  await lab.stop(w1)

  m.store.delete('service/s1')
  await sleep(150)
  assert.equal(m.store.reap(), 1, 'the tombstone is reaped')
  assert.equal(m.store.entry('service/s1'), undefined)
  // Offered again (as w1's push-pull would, when m asks first), the deleted version is refused.
  assert.deepEqual(m.store.merge([s1]), [])
  assert.match(m.store.lastRefusal ?? '', /service\/s1: deleted before its tombstone was reaped/)

  // The deletion's rumour must be out of m's queue before w1 returns: sent to w1 then, it would
  // drop the service by merging the tombstone, not by the floor this test is about (seen under load).
  await waitFor('m no longer spreads the deletion', () => m.gossip.fanout.size === 0, 10_000)
  // w1 comes back with its store (the service in it) and push-pulls with m.
  const pushPulls = m.gossip.stats.pushPulls
  w1 = await lab.start('w1', addr, port, {store: lab.openStore('w1', {tombstoneTtlMs: 100})})
  await waitFor(
    'two push-pulls between them',
    () => m.gossip.stats.pushPulls + w1.gossip.stats.pushPulls >= pushPulls + 2,
    10_000,
  )
  assert.equal(m.store.get('service/s1'), undefined, 'the deleted service did not come back')
  // And w1 learns from m's digest and floor that it was deleted: it drops it too (its tasks would stop).
  await waitFor('w1 dropped the deleted service', () => w1.store.get('service/s1') === undefined, 10_000)
  assert.ok(w1.gossip.stats.forgotten >= 1)
  assert.ok(w1.store.deletionFloor >= s1clock, 'w1 refuses it from now on too')
  assert.ok(w1.store.get('network/ingress'), 'what m holds, w1 keeps')
  // Dropped for good: not back from w1's own log after a restart.
  await lab.stop(w1)
  const reopened = lab.openStore('w1', {tombstoneTtlMs: 100})
  assert.equal(reopened.get('service/s1'), undefined)
  assert.ok(reopened.deletionFloor >= s1clock)
  w1 = await lab.start('w1', addr, port, {store: reopened})

  // What a manager writes after the deletion is above the floor, the same key included.
  m.store.put('service/s2', {id: 's2', name: 'api'})
  m.store.put('service/s1', {id: 's1', name: 'web again'})
  await waitFor(
    'w1 has both',
    () => w1.store.get<{name: string}>('service/s1')?.name === 'web again' && w1.store.get('service/s2') !== undefined,
    5000,
  )

  // The floor outlives a restart of the store.
  const floor = m.store.deletionFloor
  assert.ok(floor >= s1clock)
  await lab.stop(m)
  const again = lab.openStore('m', {tombstoneTtlMs: 100})
  assert.equal(again.deletionFloor, floor)
  again.close()
})

// The same with the desired state numbered as the embedded manager numbers it (Version.erev): the
// floor that tells a node back from away what was deleted is then a revision floor, carried in
// the push-pull (efloor) next to the clock floor.
const numbered = new GossipLab()
after(() => numbered.close())

test('numbered desired state deleted while a node was away: refused and forgotten by revision', async () => {
  const m = await numbered.manager('m', {store: numbered.openStore('m', {tombstoneTtlMs: 100})})
  m.store.numberDesired = true
  let w1 = await numbered.worker('w1', m, {store: {tombstoneTtlMs: 100}})
  m.store.put('service/s1', {id: 's1', name: 'web'})
  await waitFor('w1 has the service', () => w1.store.get('service/s1') !== undefined, 5000)
  const s1 = {...m.store.entry('service/s1')!}
  assert.ok(s1.version.erev !== undefined, 'numbered by the manager')
  const {addr, port} = w1
  await numbered.stop(w1)

  m.store.delete('service/s1')
  const deletedAt = m.store.entry('service/s1')!.version.erev!
  await sleep(150)
  assert.equal(m.store.reap(), 1)
  assert.equal(m.store.revisionFloor, deletedAt)
  assert.deepEqual(m.store.merge([s1]), [])
  assert.match(m.store.lastRefusal ?? '', /service\/s1: deleted before its tombstone was reaped \(revision/)

  await waitFor('m no longer spreads the deletion', () => m.gossip.fanout.size === 0, 10_000)
  w1 = await numbered.start('w1', addr, port, {store: numbered.openStore('w1', {tombstoneTtlMs: 100})})
  await waitFor('w1 dropped the deleted service', () => w1.store.get('service/s1') === undefined, 10_000)
  assert.equal(m.store.get('service/s1'), undefined, 'the deleted service did not come back')
  assert.ok(w1.gossip.stats.forgotten >= 1)
  assert.equal(w1.store.revisionFloor, s1.version.erev, 'w1 refuses it from now on too')
  m.store.put('service/s1', {id: 's1', name: 'web again'})
  await waitFor('w1 has it again', () => w1.store.get<{name: string}>('service/s1')?.name === 'web again', 5000)
})
