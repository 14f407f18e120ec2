import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {decodeMessage, encodeMessage, type Message} from '../../src/gossip/codec.js'
import {Freshness, MAX_SKEW_MS, SEQ_WINDOW} from '../../src/gossip/freshness.js'
import {SUMMARY_BYTES} from '../../src/store/summary.js'

const sums = Buffer.alloc(SUMMARY_BYTES, 7).toString('base64')

describe('codec', () => {
  it('round trips every message type', () => {
    const v = {clock: 1, node: 'a'}
    const h = {from: 'a', epoch: 7, seq: 1, ts: 9}
    const msgs: Message[] = [
      {
        t: 'updates',
        ...h,
        entries: [
          {key: 'k', value: {x: 1}, version: v},
          {key: 'd', value: null, version: v, deletedAt: 5},
        ],
      },
      {t: 'pushpull-req', ...h, digest: {k: v}},
      {t: 'pushpull-resp', ...h, digest: {}, entries: []},
      {t: 'ping', ...h, n: 3},
      {t: 'ack', ...h, n: 3},
      {t: 'open', ...h},
      {t: 'pushpull-sum', ...h, sums},
      {t: 'open', ...h, mac: 1, sum: 1},
    ]
    for (const m of msgs) assert.deepEqual(decodeMessage(encodeMessage(m)), m)
  })

  it('drops anything malformed', () => {
    const bad = [
      'not json',
      '[]',
      'null',
      '{}',
      '{"t":"ping","from":"a","epoch":1,"seq":1,"ts":1}',
      '{"t":"ping","from":"","epoch":1,"seq":1,"ts":1,"n":1}',
      '{"t":"nope","from":"a","epoch":1,"seq":1,"ts":1}',
      '{"t":"updates","from":"a","epoch":1,"seq":1,"ts":1,"entries":[{"key":"k"}]}',
      '{"t":"updates","from":"a","epoch":1,"seq":1,"ts":1,"entries":{}}',
      '{"t":"pushpull-req","from":"a","epoch":1,"seq":1,"ts":1,"digest":{"k":{"clock":"1","node":"a"}}}',
      '{"t":"ping","from":"a","epoch":1,"seq":1,"ts":1,"n":-1}',
      '{"t":"open","from":"a","seq":1,"ts":1}',
      '{"t":"open","from":"a","epoch":1,"seq":1.5,"ts":1}',
      '{"t":"open","from":"a","epoch":1,"seq":1,"ts":"1"}',
      '{"t":"open","from":"a","epoch":1,"seq":1,"ts":1,"sum":2}',
      // A summary of another length, or not in canonical base64, or not a string.
      `{"t":"pushpull-sum","from":"a","epoch":1,"seq":1,"ts":1,"sums":"${Buffer.alloc(SUMMARY_BYTES - 3).toString('base64')}"}`,
      `{"t":"pushpull-sum","from":"a","epoch":1,"seq":1,"ts":1,"sums":"${Buffer.alloc(SUMMARY_BYTES + 3).toString('base64')}"}`,
      `{"t":"pushpull-sum","from":"a","epoch":1,"seq":1,"ts":1,"sums":"${'!'.repeat(sums.length)}"}`,
      `{"t":"pushpull-sum","from":"a","epoch":1,"seq":1,"ts":1,"sums":"${sums.slice(0, -1)}-"}`,
      '{"t":"pushpull-sum","from":"a","epoch":1,"seq":1,"ts":1,"sums":[1,2]}',
      '{"t":"pushpull-sum","from":"a","epoch":1,"seq":1,"ts":1}',
    ]
    for (const b of bad) assert.equal(decodeMessage(Buffer.from(b)), undefined, b)
  })
})

describe('freshness window', () => {
  const h = (seq: number, epoch = 100, ts = 1_000_000) => ({from: 'a', epoch, seq, ts})
  const now = 1_000_000

  it('takes each sequence number once, late ones within the window, and refuses the rest', () => {
    const f = new Freshness()
    assert.equal(f.accept(h(10), now), 'fresh')
    assert.equal(f.accept(h(10), now), 'replayed')
    assert.equal(f.accept(h(12), now), 'fresh')
    assert.equal(f.accept(h(11), now), 'fresh', 'late but within the window')
    assert.equal(f.accept(h(11), now), 'replayed')
    assert.equal(f.accept(h(12 + SEQ_WINDOW), now), 'fresh')
    assert.equal(f.accept(h(12), now), 'stale', 'fell out of the window')
    assert.equal(f.accept(h(13), now), 'fresh', 'the slot was cleared when the window moved')
  })

  it('each epoch has its own window, a newer one does not shadow an older one; a clock out of range is stale', () => {
    const f = new Freshness()
    assert.equal(f.accept(h(500), now), 'fresh')
    assert.equal(f.accept(h(1, 101), now), 'fresh', 'the sender restarted')
    assert.equal(f.accept(h(500, 100), now), 'replayed', 'its previous run is still remembered')
    // A member stamping the sender's id with a far epoch does not make the real sender stale.
    assert.equal(f.accept(h(9_999_999, 2 ** 52), now), 'fresh')
    assert.equal(f.accept(h(2, 101), now), 'fresh')
    assert.equal(f.accept(h(2, 101, now - MAX_SKEW_MS - 1), now), 'stale')
    assert.equal(f.accept(h(3, 101, now + MAX_SKEW_MS + 1), now), 'stale')
    assert.equal(f.accept(h(3, 101), now), 'fresh', 'refusals are not remembered')
  })
})
