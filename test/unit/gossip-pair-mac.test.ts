// Messages between two nodes that know each other are authenticated by an HMAC under the pair's
// key (src/gossip/pair-keys.ts) instead of an Ed25519 signature (issue 24: the signature and its
// check held a busy agent's event loop). What the signature guaranteed must still hold: a message
// is refused unless the node its header names made it (forged MACs, another member's pair key),
// it is read only where it was meant to go (not by another node, not reflected to its sender), a
// replay is refused, a revoked sender is refused at once although its pair key was agreed before,
// and a node that does not say it reads MACs (an older version) is still sent signatures.
import assert from 'node:assert/strict'
import {randomBytes} from 'node:crypto'
import {after, before, test} from 'node:test'
import type {Message} from '../../src/gossip/codec.js'
import {generateNodeKey} from '../../src/gossip/identity.js'
import {Keyring} from '../../src/gossip/keyring.js'
import {MAC_BYTES, PairKeys} from '../../src/gossip/pair-keys.js'
import {revocationOf} from '../../src/gossip/revocation.js'
import {readOpened, sealMessage, sealPairMessage} from '../../src/gossip/transport.js'
import type {NodeRecord} from '../../src/model/types.js'
import {EvilMember} from './evil-member.js'
import {GossipLab, sendUdp, sleep, waitFor, type LabNode} from './gossip-lab.js'

const lab = new GossipLab()
let m: LabNode
let w1: LabNode
let w2: LabNode
let evil: EvilMember

const pairsOf = (id: string): PairKeys => new PairKeys(id, lab.keys.get(id)!.privateKey)
const pubOf = (id: string): string => lab.keys.get(id)!.publicKey
const ring = () => new Keyring(lab.clusterKey)
/** A header of a run of `from` no real node uses (an epoch of its own: its window is apart from the real run's). */
let seq = 0
const epoch = Date.now() - 1000
const header = (from: string) => ({from, epoch, seq: ++seq, ts: Date.now(), mac: 1 as const})
const honest = () => [m, w1, w2]

before(async () => {
  m = await lab.manager('m')
  w1 = await lab.worker('w1', m)
  w2 = await lab.worker('w2', m)
  evil = await EvilMember.join(lab, 'e', m)
  await waitFor(
    'every node knows every other',
    () => honest().every((n) => ['m', 'w1', 'w2', 'e'].every((id) => n.store.get(`node/${id}`))),
    10_000,
  )
})

after(async () => {
  evil?.close()
  await lab.close()
})

test('pair keys: each direction has its own key, which no third node, other receiver or reflection can use', () => {
  const a = new PairKeys('a', generateNodeKey().privateKey)
  const b = new PairKeys('b', generateNodeKey().privateKey)
  const c = new PairKeys('c', generateNodeKey().privateKey)
  const data = Buffer.from('{"t":"ping","from":"a"}')
  const mac = a.mac('b', b.publicKey, data)!
  assert.equal(mac.length, MAC_BYTES)
  assert.ok(b.check('a', a.publicKey, data, mac), 'b reads what a MACed for it')
  assert.ok(!b.check('a', a.publicKey, Buffer.from('{"t":"ping","from":"a","n":1}'), mac), 'other bytes')
  assert.ok(!b.check('c', c.publicKey, data, mac), 'as if c had sent it')
  assert.ok(!b.check('a', c.publicKey, data, mac), "under another node's key")
  assert.ok(!c.check('a', a.publicKey, data, mac), 'another receiver')
  assert.ok(!a.check('b', b.publicKey, data, mac), 'reflected to its sender, as if b had sent it')
  assert.ok(!b.check('a', a.publicKey, data, mac.subarray(0, 16)), 'cut short')
  // c holds its own pair key with b: a MAC under it, claiming to be a's, is no use.
  assert.ok(!b.check('a', a.publicKey, data, c.mac('b', b.publicKey, data)!))
  // No pair with itself, nor with a key that is not Ed25519.
  assert.equal(a.mac('a', a.publicKey, data), undefined)
  assert.equal(a.mac('x', Buffer.alloc(44).toString('base64'), data), undefined)
  // One derivation per peer and direction, whatever the number of messages.
  const derived = [a.derived, b.derived]
  for (let i = 0; i < 100; i++) assert.ok(b.check('a', a.publicKey, data, a.mac('b', b.publicKey, data)!))
  assert.deepEqual([a.derived, b.derived], derived)
})

test('between nodes that know each other every message is MACed, and writes still reach everyone', async () => {
  // Each node says `mac: 1` in every header; once every pair has heard from each other, nothing is signed.
  const signed = () => honest().reduce((s, n) => s + n.gossip.stats.received - n.gossip.stats.macReceived, 0)
  const t0 = Date.now()
  for (let i = 0, last = -1, since = Date.now(); Date.now() - since < 1000; i++) {
    assert.ok(Date.now() - t0 < 15_000, 'signed messages went on for 15 s')
    m.store.put(`service/warm${i}`, {id: 'warm'})
    await sleep(100)
    if (signed() !== last) [last, since] = [signed(), Date.now()]
  }
  const before = honest().map((n) => ({...n.gossip.stats}))
  for (let k = 0; k < 20; k++) {
    if (k % 2) w1.store.put('node/w1', {...w1.store.get<NodeRecord>('node/w1')!, mtu: 1400 + k})
    else m.store.put(`service/s${k}`, {id: `s${k}`})
  }
  await waitFor(
    'every node has every write',
    () => honest().every((n) => n.store.get('service/s18') && n.store.get<NodeRecord>('node/w1')?.mtu === 1419),
    5000,
  )
  await sleep(700) // a push-pull round too
  honest().forEach((n, j) => {
    const got = n.gossip.stats.received - before[j]!.received
    const byMac = n.gossip.stats.macReceived - before[j]!.macReceived
    assert.ok(got > 0, `${n.id} received messages`)
    assert.equal(byMac, got, `${n.id}: every message it received was MACed`)
    assert.equal(n.gossip.stats.badSender, before[j]!.badSender, `${n.id} refused nothing`)
  })
})

test("a forged MAC is refused and counted: a member's own pair key under another node's header, or random bytes", async () => {
  const before = {...m.gossip.stats}
  const evilPairs = pairsOf('e')
  // The evil member holds its own pair key with m: it MACs a header that names w1.
  const forged = sealPairMessage(ring(), evilPairs, 'm', pubOf('m'), {t: 'ping', n: 1, ...header('w1')} as Message)!
  await evil.sendRaw(m, forged)
  // Random bytes where the MAC goes.
  const json = Buffer.from(JSON.stringify({t: 'ping', n: 2, ...header('w1')}))
  await evil.sendRaw(m, ring().seal(Buffer.concat([json, randomBytes(MAC_BYTES)])))
  // Under its own header, MACed for another node (w2) and sent to m.
  const misdirected = sealPairMessage(ring(), evilPairs, 'w2', pubOf('w2'), {t: 'ping', n: 3, ...header('e')} as Message)!
  await evil.sendRaw(m, misdirected)
  await waitFor('m refused all three', () => m.gossip.stats.badSender === before.badSender + 3, 5000)
  assert.equal(m.gossip.stats.received - before.received - (m.gossip.stats.macReceived - before.macReceived), 0)
  // Its own header, MACed for m: that one is the evil member speaking for itself, and is heard.
  await evil.sendRaw(m, sealPairMessage(ring(), evilPairs, 'm', pubOf('m'), {t: 'ping', n: 4, ...header('e')} as Message)!)
  await waitFor('m heard e', () => m.gossip.stats.macReceived > before.macReceived, 5000)
  assert.equal(m.gossip.stats.badSender, before.badSender + 3)
})

test('a MACed message is read only by the node it was made for: another node and its sender refuse it, its node refuses it played back', async () => {
  // What m would send w1 (the test holds m's key, as a capture of m's traffic to w1 would hold the packet).
  const packet = sealPairMessage(ring(), pairsOf('m'), 'w1', pubOf('w1'), {t: 'ping', n: 9, ...header('m')} as Message)!
  const at = (n: LabNode) => ({...n.gossip.stats})
  const [b1, b2, bm] = [at(w1), at(w2), at(m)]
  await sendUdp(packet, w2)
  await sendUdp(packet, m)
  await waitFor(
    'w2 and m refused it',
    () => w2.gossip.stats.badSender === b2.badSender + 1 && m.gossip.stats.badSender === bm.badSender + 1,
    5000,
  )
  await sendUdp(packet, w1)
  await waitFor('w1 read it', () => w1.gossip.stats.macReceived > b1.macReceived, 5000)
  await sendUdp(packet, w1)
  // Refused as a replay (a message is counted received or refused, never both). \`received\` is not
  // compared: the lab's own gossip reaches w1 meanwhile (under load one more message came: 56, not 55).
  await waitFor('w1 refused it played back', () => w1.gossip.stats.replayed === b1.replayed + 1, 5000)
  assert.equal(w1.gossip.stats.badSender, b1.badSender)
})

test('a node is MACed to once it said it reads MACs, and signed to again when a newer run of it does not say so', async () => {
  const mine = pairsOf('e')
  /** m's answer to a ping from e (m acks to the ping's source address: e's socket). */
  let n = 100
  const answer = async (over: Partial<Message>) => {
    const ping = ++n
    // What else m sends e (its fan-out: e is a peer) is passed over.
    const ack = () =>
      evil.received.map((b) => readOpened(ring().open(b) ?? Buffer.alloc(0))).find((o) => o?.m.t === 'ack' && o.m.n === ping)
    await evil.send(m, {t: 'ping', n: ping}, over)
    await waitFor("m's ack", () => ack() !== undefined, 5000)
    const opened = ack()!
    assert.equal(opened.m.mac, 1, 'm says it reads MACs')
    return opened
  }
  // A run of e that says nothing of MACs (an older version): m signs.
  const old = await answer({epoch: evil.epoch + 1})
  assert.equal(old.byMac, false)
  // e says it reads them: m's answers are MACed for e, and e checks them with its pair key.
  const mac = await answer({epoch: evil.epoch + 1, mac: 1})
  assert.equal(mac.byMac, true)
  assert.ok(mine.check('m', pubOf('m'), mac.json, mac.auth))
  // A late packet of an earlier run changes nothing; a newer run that does not say it does.
  assert.equal((await answer({epoch: evil.epoch})).byMac, true)
  assert.equal((await answer({epoch: evil.epoch + 2})).byMac, false)
})

test('a revoked sender is refused at once, MACed or signed, although its pair key was agreed before', async () => {
  const b = {...w1.gossip.stats}
  const pairs = pairsOf('w2')
  const fromW2 = (n: number) => sealPairMessage(ring(), pairs, 'w1', pubOf('w1'), {t: 'ping', n, ...header('w2')} as Message)!
  await sendUdp(fromW2(1), w1)
  await waitFor('w1 read w2 (its pair key agreed and cached)', () => w1.gossip.stats.macReceived > b.macReceived, 5000)
  const rev = revocationOf(w2.store.get<NodeRecord>('node/w2')!, Date.now())!
  m.store.put(rev.key, rev.value)
  await waitFor('w1 holds the revocation', () => w1.store.get(rev.key) !== undefined, 5000)
  const refused = w1.gossip.stats.badSender
  await sendUdp(fromW2(2), w1)
  await sendUdp(sealMessage(ring(), lab.keys.get('w2')!.privateKey, {t: 'ping', n: 3, ...header('w2')} as Message), w1)
  await waitFor('w1 refused both', () => w1.gossip.stats.badSender >= refused + 2, 5000)
  // And what w2 itself sends w1 from now on is refused too (its fan-out of a write of its own).
  w2.store.put('node/w2', {...w2.store.get<NodeRecord>('node/w2')!, mtu: 1300})
  await w2.gossip.flush()
  await sleep(300)
  assert.notEqual(w1.store.get<NodeRecord>('node/w2')?.mtu, 1300)
  assert.ok(w1.gossip.stats.badSender > refused + 2, "w2's own packets are refused")
})
