// Push-pull by summaries (src/store/summary.ts, src/gossip/gossip.ts): two nodes whose stores
// agree exchange the summaries and nothing more; where they differ, digests and entries of the
// differing buckets only; what a manager's floor and digest say was deleted is forgotten as
// with whole digests; and a node of the version before summaries (whole digests only, no
// `sum: 1`) still exchanges everything both ways with one of this version.
import assert from 'node:assert/strict'
import {after, test} from 'node:test'
import type {Entry} from '../../src/store/entry.js'
import {SUMMARY_BYTES} from '../../src/store/summary.js'
import {GossipLab, signedEntry, sleep, waitFor, type LabNode} from './gossip-lab.js'

const lab = new GossipLab()
after(() => lab.close())

/** Entries no node spreads: merged straight into one store, as if the epidemic had missed the others. */
function unspread(n: LabNode, writer: LabNode, keys: string[]): Entry[] {
  const out = keys.map((key, i) =>
    signedEntry(lab, writer.id, {key, value: {i}, version: {clock: writer.store.clock + 1 + i, node: writer.id}}),
  )
  assert.equal(n.store.merge(out).length, out.length)
  return out
}

const peer = (n: LabNode) => ({id: n.id, addr: n.addr, port: n.port})
const FILLER = 5_000
// Rounds only when the test asks, so each exchange's bytes are its own.
const quiet = {pushPullIntervalMs: 3_600_000}

test('stores that agree exchange their summaries only; a few differing keys cost a few buckets', async () => {
  const m = await lab.manager('m', {gossip: quiet})
  for (let i = 0; i < FILLER; i++) m.store.put(`x/${i}`, i)
  await m.store.sync()
  // The join answer carries the whole store; its start's push-pull is by whole digest (m not heard from yet).
  const w = await lab.worker('w', m, {gossip: quiet})
  await waitFor('w has the filler', () => w.store.get(`x/${FILLER - 1}`) !== undefined, 10_000)
  await waitFor(
    'each has heard the other',
    () => m.gossip.transport.readsSummaries('w') && w.gossip.transport.readsSummaries('m'),
    10_000,
  )
  await sleep(200)

  const sent0 = w.gossip.stats.bytesSent + m.gossip.stats.bytesSent
  assert.ok(await w.gossip.pushPull(peer(m)))
  const equalBytes = w.gossip.stats.bytesSent + m.gossip.stats.bytesSent - sent0
  assert.equal(w.gossip.stats.pushPullsEqual, 1, 'the exchange ended at the summaries')
  // Two summaries (base64) and the connection's opening: no digest of 5,000 keys (~150 KB).
  assert.ok(equalBytes < 3 * SUMMARY_BYTES, `bytes of an exchange between equal stores: ${equalBytes}`)

  // Three keys only m holds, two only w holds: each side gets the other's, in one exchange.
  unspread(m, m, ['x/m1', 'x/m2', 'x/m3'])
  unspread(w, m, ['x/w1', 'x/w2'])
  await Promise.all([m.store.sync(), w.store.sync()])
  const sent1 = w.gossip.stats.bytesSent + m.gossip.stats.bytesSent
  assert.ok(await w.gossip.pushPull(peer(m)))
  const diffBytes = w.gossip.stats.bytesSent + m.gossip.stats.bytesSent - sent1
  for (const k of ['x/m1', 'x/m2', 'x/m3']) assert.ok(w.store.get(k), `w got ${k}`)
  await waitFor('m got what only w held', () => m.store.get('x/w1') !== undefined && m.store.get('x/w2') !== undefined, 5_000)
  assert.equal(w.gossip.stats.pushPullsEqual, 1)
  assert.ok(diffBytes < 6 * SUMMARY_BYTES, `bytes of an exchange with 5 differing keys: ${diffBytes}`)
  assert.ok(m.store.summary().equals(w.store.summary()), 'the stores agree again')
  assert.equal(m.gossip.stats.malformed + w.gossip.stats.malformed, 0)

  // m asks this time: agreeing, it ends at the summaries too.
  assert.ok(await m.gossip.pushPull(peer(w)))
  assert.equal(m.gossip.stats.pushPullsEqual, 1)
  await lab.stop(w)
  await lab.stop(m)
})

test("a manager's floor and digest of the differing buckets make a node forget what was deleted meanwhile", async () => {
  const m = await lab.manager('m2', {store: lab.openStore('m2', {tombstoneTtlMs: 100}), gossip: quiet})
  const w = await lab.worker('w2', m, {gossip: quiet})
  await waitFor(
    'each has heard the other',
    () => m.gossip.transport.readsSummaries('w2') && w.gossip.transport.readsSummaries('m2'),
    10_000,
  )
  // A service w holds (the epidemic missed its delete), which m deleted and reaped: m's floor is above it.
  const [s1] = unspread(w, m, ['service/s1'])
  m.store.put('service/s0', {id: 's0'})
  m.store.delete('service/s0')
  await sleep(150)
  assert.equal(m.store.reap(), 1)
  assert.ok(m.store.deletionFloor >= s1!.version.clock)
  await Promise.all([m.store.sync(), w.store.sync()])
  await waitFor('w has the tombstone of s0', () => w.store.entry('service/s0')?.value === null, 5_000)

  assert.ok(await w.gossip.pushPull(peer(m)))
  assert.equal(w.gossip.stats.pushPullsEqual, 0, 'the stores differed')
  assert.equal(w.store.get('service/s1'), undefined, 'w forgot the deleted service')
  assert.ok(w.gossip.stats.forgotten >= 1)
  assert.equal(m.store.get('service/s1'), undefined, 'm did not take it back')
  assert.ok(w.store.get('network/ingress'), 'what m holds, w keeps')
  await lab.stop(w)
  await lab.stop(m)
})

test('a node of the version before summaries exchanges whole digests both ways', async () => {
  const m = await lab.manager('m3', {gossip: quiet})
  const old = await lab.worker('o3', m, {gossip: {...quiet, summaries: false}})
  await waitFor('m has heard from the older node', () => m.gossip.stats.received > 0 && old.gossip.stats.received > 0, 10_000)
  assert.ok(await old.gossip.pushPull(peer(m)))
  assert.equal(m.gossip.transport.readsSummaries('o3'), false, 'the older node does not say sum: 1')
  assert.equal(old.gossip.transport.readsSummaries('m3'), true)

  unspread(m, m, ['x/a', 'x/b'])
  unspread(old, m, ['x/c'])
  await Promise.all([m.store.sync(), old.store.sync()])
  // Either side asking: the whole digest, never a summary the older node cannot read.
  assert.ok(await m.gossip.pushPull(peer(old)))
  await waitFor('m has what only the older node held', () => m.store.get('x/c') !== undefined, 5_000)
  // The requester's closing updates: merged by the server after the requester is done.
  await waitFor(
    'the older node has what only m held',
    () => old.store.get('x/a') !== undefined && old.store.get('x/b') !== undefined,
    5_000,
  )
  unspread(m, m, ['x/d'])
  await m.store.sync()
  assert.ok(await old.gossip.pushPull(peer(m)))
  assert.ok(old.store.get('x/d'))
  assert.equal(m.gossip.stats.pushPullsEqual + old.gossip.stats.pushPullsEqual, 0)
  assert.equal(m.gossip.stats.malformed + old.gossip.stats.malformed, 0, 'nothing either could not read')
  await lab.stop(old)
  await lab.stop(m)
})
