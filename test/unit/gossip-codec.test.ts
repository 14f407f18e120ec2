import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {decodeMessage, encodeMessage, type Message} from '../../src/gossip/codec.js'

describe('codec', () => {
  it('round trips every message type', () => {
    const v = {clock: 1, node: 'a'}
    const msgs: Message[] = [
      {
        t: 'updates',
        from: 'a',
        entries: [
          {key: 'k', value: {x: 1}, version: v},
          {key: 'd', value: null, version: v, deletedAt: 5},
        ],
      },
      {t: 'pushpull-req', from: 'a', digest: {k: v}},
      {t: 'pushpull-resp', from: 'a', digest: {}, entries: []},
      {t: 'ping', from: 'a', seq: 3},
      {t: 'ack', from: 'a', seq: 3},
    ]
    for (const m of msgs) assert.deepEqual(decodeMessage(encodeMessage(m)), m)
  })

  it('drops anything malformed', () => {
    const bad = [
      'not json',
      '[]',
      'null',
      '{}',
      '{"t":"ping","from":"a"}',
      '{"t":"ping","from":"","seq":1}',
      '{"t":"nope","from":"a"}',
      '{"t":"updates","from":"a","entries":[{"key":"k"}]}',
      '{"t":"updates","from":"a","entries":{}}',
      '{"t":"pushpull-req","from":"a","digest":{"k":{"clock":"1","node":"a"}}}',
      '{"t":"ping","from":"a","seq":-1}',
    ]
    for (const b of bad) assert.equal(decodeMessage(Buffer.from(b)), undefined, b)
  })
})
