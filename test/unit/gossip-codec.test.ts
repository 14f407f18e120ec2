import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {decodeMessage, encodeMessage, type Message} from '../../src/gossip/codec.js'

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
    ]
    for (const b of bad) assert.equal(decodeMessage(Buffer.from(b)), undefined, b)
  })
})
