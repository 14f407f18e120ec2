import assert from 'node:assert/strict'
import {after, before, describe, it} from 'node:test'
import {Keyring} from '../../src/gossip/keyring.js'
import type {Message} from '../../src/gossip/codec.js'
import {signBytes} from '../../src/gossip/identity.js'
import {sealMessage} from '../../src/gossip/transport.js'
import type {NodeRecord} from '../../src/model/types.js'
import {signedText, type Entry} from '../../src/store/entry.js'
import {readDurableState} from '../../src/store/durable.js'
import {GossipLab, signedEntry, type LabNode} from './gossip-lab.js'

const lab = new GossipLab()
const N = 100_000
const mKey = () => lab.keys.get('m')!.privateKey

/** Deterministic, so a failure can be replayed. */
function rng(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6d2b79f5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const TOKENS = [
  'null',
  '-1',
  '1e308',
  '9007199254740993',
  '""',
  '"x"',
  '[]',
  '{}',
  'true',
  '"node/m"',
  '"m"',
  '0',
  '1.5',
  '{"a":',
  ']',
  '"\\u0000"',
]

function mutate(text: string, r: () => number): Buffer {
  let s = text
  const ops = 1 + Math.floor(r() * 3)
  for (let k = 0; k < ops; k++) {
    const at = Math.floor(r() * s.length)
    switch (Math.floor(r() * 6)) {
      case 0: // flip one character
        s = s.slice(0, at) + String.fromCharCode(32 + Math.floor(r() * 95)) + s.slice(at + 1)
        break
      case 1: // cut a piece out
        s = s.slice(0, at) + s.slice(at + 1 + Math.floor(r() * 20))
        break
      case 2: // put a JSON token somewhere
        s = s.slice(0, at) + TOKENS[Math.floor(r() * TOKENS.length)] + s.slice(at)
        break
      case 3: {
        // replace a value after a colon with a token: stays valid JSON more often
        const colon = s.indexOf(':', at)
        if (colon < 0) break
        const end = s.slice(colon + 1).search(/[,}\]]/)
        if (end < 0) break
        s = s.slice(0, colon + 1) + TOKENS[Math.floor(r() * TOKENS.length)] + s.slice(colon + 1 + end)
        break
      }
      case 4: // repeat a piece
        s = s.slice(0, at) + s.slice(at, at + Math.floor(r() * 40)) + s.slice(at)
        break
      default: {
        // change a digit: a clock, a seq, a timestamp
        const d = s.slice(at).search(/[0-9]/)
        if (d < 0) break
        s = s.slice(0, at + d) + String(Math.floor(r() * 10)) + s.slice(at + d + 1)
      }
    }
  }
  return Buffer.from(s)
}

describe('gossip decoder under fuzz', () => {
  let m: LabNode
  let w: LabNode
  const legit = new Set<string>()
  const fingerprint = (e: Entry) => `${signedText(e)} ${e.sig ?? ''}`

  before(async () => {
    m = await lab.manager()
    w = await lab.worker('w', m)
    for (const e of w.store.all()) legit.add(fingerprint(e))
  })

  after(() => lab.close())

  it('per entry: in one message, the entries that pass are applied and the one that does not is refused, alone', () => {
    const c = w.store.clock
    const good1 = signedEntry(lab, 'm', {key: 'service/g1', value: {id: 'g1'}, version: {clock: c + 1, node: 'm'}})
    const good2 = signedEntry(lab, 'm', {key: 'service/g2', value: {id: 'g2'}, version: {clock: c + 2, node: 'm'}})
    const bad = {
      ...signedEntry(lab, 'm', {key: 'service/b', value: {id: 'b'}, version: {clock: c + 3, node: 'm'}}),
      value: {id: 'changed'},
    }
    const ring = new Keyring(lab.clusterKey)
    const now = Date.now()
    const h = {from: 'm', epoch: now, ts: now}
    const before = {...w.gossip.stats}
    w.gossip.transport.receive(
      sealMessage(ring, mKey(), {t: 'updates', ...h, seq: 1, entries: [good1, bad, good2]} as Message),
      m,
    )
    assert.ok(w.store.get('service/g1') && w.store.get('service/g2'))
    assert.equal(w.store.get('service/b'), undefined)
    assert.equal(w.gossip.stats.unauthorised, before.unauthorised + 1)
    // Per message, for the shape: one entry that is not an entry at all drops the whole message.
    const good3 = signedEntry(lab, 'm', {key: 'service/g3', value: {id: 'g3'}, version: {clock: c + 4, node: 'm'}})
    w.gossip.transport.receive(
      sealMessage(ring, mKey(), {t: 'updates', ...h, seq: 2, entries: [good3, {key: 'service/x', version: 1}]} as never),
      m,
    )
    assert.equal(w.store.get('service/g3'), undefined)
    assert.equal(w.gossip.stats.malformed, before.malformed + 1)
    for (const e of [good1, good2]) legit.add(fingerprint(e))
  })

  it(`${N} sealed messages with mutated content: each dropped and counted or applied whole, nothing thrown`, async () => {
    const r = rng(6)
    // A pool of valid entries from every kind of writer, new to w.
    const c = w.store.clock + 10
    const pool: Entry[] = []
    const wRec = w.store.get<NodeRecord>('node/w') as NodeRecord
    for (let i = 0; i < 150; i++) {
      pool.push(
        signedEntry(lab, 'm', {
          key: `service/s${i}`,
          value: {id: `s${i}`, name: `svc${i}`, n: i},
          version: {clock: c + i, node: 'm'},
        }),
      )
    }
    for (let i = 0; i < 20; i++) {
      pool.push(
        signedEntry(lab, 'm', {key: `task/t${i}`, value: {id: `t${i}`, nodeId: 'm'}, version: {clock: c + 200 + i, node: 'm'}}),
      )
      pool.push(
        signedEntry(lab, 'm', {
          key: `service/s${i}`,
          value: null,
          version: {clock: c + 300 + i, node: 'm'},
          deletedAt: Date.now(),
        }),
      )
    }
    pool.push(signedEntry(lab, 'w', {key: 'node/w', value: {...wRec, mtu: 1400}, version: {clock: c + 400, node: 'w'}}))
    for (const e of pool) legit.add(fingerprint(e))
    const ring = new Keyring(lab.clusterKey)
    const epoch = Date.now()
    const before = {...w.gossip.stats}
    for (let seq = 1; seq <= N; seq++) {
      const kind = r()
      let body: object
      if (kind < 0.7) {
        const entries = Array.from({length: 1 + Math.floor(r() * 3)}, () => pool[Math.floor(r() * pool.length)])
        body = {t: 'updates', entries}
      } else if (kind < 0.8) body = {t: 'pushpull-req', digest: {'service/s1': {clock: 1, node: 'm'}}}
      else if (kind < 0.85) body = {t: 'ping', n: seq}
      // A push-pull's summary (the store's, as a peer would send it), by datagram: taken and ignored, or malformed.
      else if (kind < 0.9) body = {t: 'pushpull-sum', sums: w.store.summary().toString('base64')}
      else body = {t: 'open'}
      // An epoch per message: a mutated sequence number must not push the next ones out of the window.
      const text = JSON.stringify({...body, from: 'm', epoch: epoch + seq, seq, ts: Date.now()})
      // One in ten goes in unchanged: the valid ones must still be applied.
      const json = r() < 0.1 ? Buffer.from(text) : mutate(text, r)
      // Signed by m as mutated (a mutated sender id is then not m's: refused as such).
      const plain = Buffer.concat([signBytes(mKey(), json), json])
      assert.doesNotThrow(() => w.gossip.transport.receive(ring.seal(plain), m))
    }
    const d = (k: keyof typeof before) => w.gossip.stats[k] - before[k]
    // Every datagram is accounted for exactly once: taken, or dropped with a reason.
    assert.equal(d('received') + d('malformed') + d('stale') + d('replayed') + d('decryptFailed') + d('badSender'), N)
    assert.equal(d('decryptFailed'), 0)
    assert.equal(d('handlerErrors'), 0)
    assert.ok(d('received') > N / 10, `${d('received')} valid ones were taken`)
    assert.ok(d('malformed') > N / 10)
    assert.ok(d('unauthorised') > 0 && d('merged') > 0)
    console.log(
      `fuzz: ${N} messages, received ${d('received')}, malformed ${d('malformed')}, stale ${d('stale')}, bad sender ${d('badSender')}, replayed ${d('replayed')}, entries merged ${d('merged')}, refused ${d('unauthorised')}, clock jumps ${d('clockJumps')}`,
    )
    // Nothing in the store that a legitimate writer did not write, exactly as signed.
    for (const e of w.store.all()) assert.ok(legit.has(fingerprint(e)), `not a legitimate entry: ${JSON.stringify(e)}`)
    // And what is on disk is what is in memory: no half-applied message.
    await w.store.sync()
    const copy = readDurableState(w.store.dir)!
    assert.deepEqual(
      copy.entries.sort((a, b) => (a.key < b.key ? -1 : 1)),
      w.store.all().sort((a, b) => (a.key < b.key ? -1 : 1)),
    )
  })
})
