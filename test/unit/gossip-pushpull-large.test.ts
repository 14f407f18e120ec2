// Anti-entropy with a store past 100,000 entries: push-pull goes in chunks
// (10,000 keys or entries per frame), so a node that was away catches up on
// all of it; a single message of the whole digest would be over the codec's
// 100,000-entry cap and be dropped as malformed.
import assert from 'node:assert/strict'
import {after, describe, it} from 'node:test'
import {GossipLab, waitFor} from './gossip-lab.js'

const N = 100_500

describe('push-pull past 100,000 entries', () => {
  const lab = new GossipLab()
  after(() => lab.close())

  it(`a node that was away gets all ${N} entries, in bounded frames`, async () => {
    const m = await lab.manager('m', {gossip: {pushPullIntervalMs: 60_000}})
    const w = await lab.worker('w', m, {gossip: {pushPullIntervalMs: 60_000}})
    const addr = w.addr
    const port = w.port
    await lab.stop(w)
    const t0 = Date.now()
    for (let i = 0; i < N; i++) m.store.put(`x/${i}`, i)
    await m.store.sync()
    console.log(`# ${N} entries written on the manager in ${Date.now() - t0} ms`)
    const t1 = Date.now()
    // Back: its start does one push-pull at once.
    const w2 = await lab.start('w', addr, port, {store: lab.openStore('w'), gossip: {pushPullIntervalMs: 60_000}})
    await waitFor('all entries on w', () => w2.store.get(`x/${N - 1}`) !== undefined && w2.store.list('x/').length === N, 240_000)
    console.log(`# push-pull of ${N} entries: ${Date.now() - t1} ms`)
    assert.equal(m.gossip.stats.malformed + w2.gossip.stats.malformed, 0, 'no frame was refused')
    assert.equal(w2.gossip.stats.unauthorised, 0)
    assert.ok(w2.gossip.stats.received >= Math.ceil(N / 10_000), 'several frames')
  })
})
