// A member gone bad: the evil member (evil-member.ts) joined as a worker and
// holds what any worker holds (the cluster key, its node key, its certified
// record). It speaks the protocol by hand, on loopback, to real nodes (a
// manager and workers built from src/, with their failure detectors). Each
// test is one attack of issue 20, and checks it is refused and counted while
// the honest nodes go on working.
import assert from 'node:assert/strict'
import {hkdfSync} from 'node:crypto'
import * as net from 'node:net'
import {after, before, test} from 'node:test'
import {DIGEST_CHUNK, MAX_DIGEST_KEYS, MAX_SERVED_PUSHPULLS} from '../../src/gossip/gossip.js'
import {certifyNode, generateNodeKey} from '../../src/gossip/identity.js'
import {FramedConn} from '../../src/gossip/frame.js'
import {requestJoin} from '../../src/gossip/join.js'
import {openWith, sealWith} from '../../src/gossip/keyring.js'
import {connectFramed} from '../../src/gossip/transport.js'
import type {Entry} from '../../src/store/entry.js'
import type {Membership} from '../../src/membership/swim.js'
import type {NodeRecord} from '../../src/model/types.js'
import type {DesiredStore} from '../../src/manager/backend.js'
import {Manager} from '../../src/manager/manager.js'
import {changeRole} from '../../src/manager/roles.js'
import type {ClusterSpec} from '../../src/model/types.js'
import {EvilMember, attachMembership} from './evil-member.js'
import {GossipLab, freePort, sleep, waitFor, type LabNode} from './gossip-lab.js'

const lab = new GossipLab()
const members: Membership[] = []
const evils: EvilMember[] = []
let m: LabNode
let w1: LabNode
let evil: EvilMember
let mm: Membership
let m1: Membership

before(async () => {
  m = await lab.manager('m')
  w1 = await lab.worker('w1', m)
  evil = await EvilMember.join(lab, 'e', m)
  await waitFor('the evil member is known to w1', () => w1.store.get('node/e') !== undefined, 10_000)
  mm = attachMembership(m)
  m1 = attachMembership(w1)
  members.push(mm, m1)
  await waitFor(
    'm and w1 hold each other alive at their boot incarnations',
    () => mm.get('w1')?.incarnation === w1.gossip.epoch && m1.get('m')?.incarnation === m.gossip.epoch,
    10_000,
  )
})

after(async () => {
  for (const x of members) x.stop()
  evil?.close()
  for (const x of evils) x.close()
  await lab.close()
})

test('poisoned incarnation: a rumour at 2^53 - 1 is refused, the victim stays safe and alive; an alive not signed by the member is refused', async () => {
  const HUGE = Number.MAX_SAFE_INTEGER
  const malformed = m.gossip.stats.malformed
  const inc = m1.incarnation
  // To the victim: "you are dead at 2^53 - 1" (it would refute at 2^53, which no one can read).
  await evil.swim(w1, {
    op: 'ping',
    seq: 1,
    inc: evil.epoch,
    target: 'w1',
    u: [evil.rumour({k: 'dead', id: 'w1', inc: HUGE, by: 'e'})],
  })
  // To the other node: the same, and "w1 is alive at a higher incarnation", signed by the evil member, not by w1.
  await evil.swim(m, {
    op: 'ping',
    seq: 2,
    inc: evil.epoch,
    target: 'm',
    u: [evil.rumour({k: 'alive', id: 'w1', inc: inc + 5}), evil.rumour({k: 'dead', id: 'w1', inc: HUGE, by: 'e'})],
  })
  // Loopback delivers in well under a millisecond; the nodes read them meanwhile.
  await sleep(300)
  assert.ok(Number.isSafeInteger(m1.incarnation), `w1's incarnation is ${m1.incarnation}`)
  assert.equal(m1.incarnation, inc, 'w1 did not refute a rumour no one may believe')
  assert.equal(mm.get('w1')?.incarnation, inc, 'm holds the incarnation w1 itself said')
  assert.equal(mm.stats.unsigned, 1, 'the alive signed by another than w1 was refused')
  assert.ok(mm.stats.implausible >= 1 && m1.stats.implausible >= 1, 'the rumour at 2^53 - 1 was refused by both')
  // The victim keeps being heard: m goes on hearing from it, and holds it alive.
  const heard = mm.get('w1')!.lastHeard
  await waitFor('m hears from w1 after the attack', () => mm.get('w1')!.lastHeard > heard + 1000, 10_000)
  await sleep(500)
  assert.equal(mm.get('w1')?.state, 'alive')
  assert.equal(m1.get('m')?.state, 'alive')
  assert.equal(m.gossip.stats.malformed, malformed, 'nothing w1 sent was unreadable')

  // A plausible accusation is still refuted, as SWIM wants, and everyone keeps up.
  await evil.swim(w1, {
    op: 'ping',
    seq: 3,
    inc: evil.epoch,
    target: 'w1',
    u: [evil.rumour({k: 'suspect', id: 'w1', inc, by: 'e'})],
  })
  await waitFor(
    'w1 refuted, m holds the refutation',
    () => m1.incarnation === inc + 1 && mm.get('w1')?.incarnation === inc + 1,
    5000,
  )
  assert.equal(mm.get('w1')?.state, 'alive')
})

test("forged freshness: a packet stamped with the victim's id and epoch and a huge sequence number is refused; the victim is still heard", async () => {
  const before = {...m.gossip.stats}
  // The best the evil member can do: w1's header, signed with its own key (it holds no other).
  await evil.send(m, {t: 'ping', n: 1}, {from: 'w1', epoch: w1.gossip.epoch, seq: Number.MAX_SAFE_INTEGER - 1})
  // Its own header with a jump no sender makes: refused too (it would only silence itself).
  await evil.send(m, {t: 'ping', n: 2})
  await evil.send(m, {t: 'ping', n: 3}, {seq: 2 ** 33})
  await sleep(200)
  // w1's next packets (an update of its own record) still reach m, by UDP and by push-pull.
  const rec = w1.store.get<NodeRecord>('node/w1')!
  w1.store.put('node/w1', {...rec, mtu: 1400})
  await waitFor('m has what w1 wrote after the forgery', () => m.store.get<NodeRecord>('node/w1')?.mtu === 1400, 5000)
  const heard = mm.get('w1')!.lastHeard
  await waitFor('m still hears w1 probe', () => mm.get('w1')!.lastHeard > heard, 5000)
  assert.equal(mm.get('w1')?.state, 'alive')
  assert.equal(m.gossip.stats.badSender, before.badSender + 1, 'the forged header was refused')
  assert.equal(m.gossip.stats.stale, before.stale + 1, 'the jump was refused')
})

test('digest flooding: a push-pull digest past MAX_DIGEST_KEYS is dropped and counted, so are push-pulls past MAX_SERVED_PUSHPULLS; the node keeps working', async () => {
  const before = {...m.gossip.stats}
  const conn = await evil.connect(m)
  // MAX_DIGEST_KEYS + one chunk of made-up keys, in chunks of DIGEST_CHUNK, the last one saying "that was all".
  const chunks = MAX_DIGEST_KEYS / DIGEST_CHUNK + 1
  for (let c = 0; c < chunks; c++) {
    const digest: Record<string, {clock: number; node: string}> = {}
    for (let i = 0; i < DIGEST_CHUNK; i++) digest[`service/f${c * DIGEST_CHUNK + i}`] = {clock: 1, node: 'm'}
    conn.send(evil.packet({t: 'pushpull-req', digest, last: c === chunks - 1}))
  }
  // Served, it would answer with its digest; bounded, it closes without a word.
  const answer = await conn.next(30_000)
  assert.equal(answer, undefined, 'no answer to a digest over the bound')
  conn.destroy()
  assert.equal(m.gossip.stats.digestOverflows, before.digestOverflows + 1)

  // Push-pulls held open at once: past MAX_SERVED_PUSHPULLS, refused at once.
  const held = await Promise.all(Array.from({length: MAX_SERVED_PUSHPULLS + 1}, () => evil.connect(m)))
  for (const c of held) c.send(evil.packet({t: 'pushpull-req', digest: {}, last: false}))
  await waitFor('one refused', () => m.gossip.stats.pushPullsRefused > before.pushPullsRefused, 5000)
  for (const c of held) c.destroy()

  // And the node goes on: what it writes reaches w1, what w1 writes reaches it.
  m.store.put('service/after-flood', {id: 'after-flood'})
  await waitFor('w1 has it', () => w1.store.get('service/after-flood') !== undefined, 5000)
  await waitFor('push-pulls go on', () => m.gossip.stats.pushPulls > before.pushPulls + 1, 10_000)
})

test('a node cannot change its own role: a demoted manager that kept its manager certificate cannot write itself manager again', async () => {
  // m promotes e, then demotes it: e saw (and keeps) the record with its manager certificate.
  const rec = m.store.get<NodeRecord>('node/e')!
  const asManager: NodeRecord = {...rec, role: 'manager', cert: certifyNode(lab.identity, 'e', rec.pubKey!, 'manager')}
  m.store.put('node/e', asManager)
  m.store.put('node/e', {...rec, role: 'worker'})
  await waitFor('w1 holds e demoted', () => w1.store.get<NodeRecord>('node/e')?.role === 'worker', 5000)
  const before = {m: m.gossip.stats.unauthorised, w1: w1.gossip.stats.unauthorised}
  const clock = Math.max(m.store.clock, w1.store.clock) + 100
  const entries = [
    evil.entry({key: 'node/e', value: {...asManager, mtu: 1400}, version: {clock, node: 'e'}}),
    evil.entry({key: 'service/evil', value: {id: 'evil'}, version: {clock: clock + 1, node: 'e'}}),
  ]
  for (const n of [m, w1]) await evil.send(n, {t: 'updates', entries})
  await waitFor(
    'refused by both',
    () => m.gossip.stats.unauthorised >= before.m + 2 && w1.gossip.stats.unauthorised >= before.w1 + 2,
    5000,
  )
  for (const n of [m, w1]) {
    assert.equal(n.store.get<NodeRecord>('node/e')?.role, 'worker', `${n.id} holds e a worker`)
    assert.equal(n.store.get('service/evil'), undefined, `${n.id} took no service from e`)
  }
  assert.match(m.gossip.lastRefusal ?? '', /only a manager writes service\/evil|may not make itself a manager/)
})

test('a removed node stays removed: its own record back to ready is refused by every receiver', async () => {
  // node rm, as the manager does it: e's record marked left.
  const rec = m.store.get<NodeRecord>('node/e')!
  m.store.put('node/e', {...rec, state: 'left'})
  await waitFor('w1 holds e left', () => w1.store.get<NodeRecord>('node/e')?.state === 'left', 5000)
  const before = {m: m.gossip.stats.unauthorised, w1: w1.gossip.stats.unauthorised}
  // Its agent restarts and announces itself, as agent.ts does at start: ready, signed with its key.
  const clock = Math.max(m.store.clock, w1.store.clock) + 100
  const back = evil.entry({key: 'node/e', value: {...rec, state: 'ready'}, version: {clock, node: 'e'}})
  for (const n of [m, w1]) await evil.send(n, {t: 'updates', entries: [back]})
  // And by push-pull, closing with its updates as a requester does.
  const conn = await evil.connect(w1)
  conn.send(evil.packet({t: 'pushpull-req', digest: {}}))
  await conn.next(5000)
  conn.send(evil.packet({t: 'updates', entries: [back]}))
  conn.close()
  await waitFor('refused by both', () => m.gossip.stats.unauthorised > before.m && w1.gossip.stats.unauthorised > before.w1, 5000)
  await sleep(200)
  for (const n of [m, w1]) assert.equal(n.store.get<NodeRecord>('node/e')?.state, 'left', `${n.id} holds e left`)
  assert.match(w1.gossip.lastRefusal ?? '', /left is final/)
})

/**
 * A worker that was away (stopped with its store) comes back where only the evil member reaches
 * it first: on a port m does not know, with no peers of its own, so nothing but what the test
 * sends (or a push-pull it asks for) reaches it. What it held when it went away is what it judges by.
 */
async function comeBackAlone(w: LabNode): Promise<LabNode> {
  const port = await freePort(w.addr)
  return lab.start(w.id, w.addr, port, {store: lab.openStore(w.id), gossip: {peers: () => [], pushPullIntervalMs: 3_600_000}})
}

function roleChange(id: string, role: NodeRecord['role']): ReturnType<typeof changeRole> {
  const ch = changeRole({
    nodes: m.store.values<NodeRecord>('node/'),
    // The lab's cluster keeps its state embedded; roles change on clusters on etcd, and nothing here reads etcd.
    cluster: {...m.store.get<ClusterSpec>('cluster')!, store: 'etcd'},
    ref: id,
    role,
    secrets: {identity: lab.identity, token: lab.token.text, managerToken: lab.token.text},
    etcd: {endpoints: ['https://127.0.0.1:2379'], prefix: '/swarmnet/c1/'},
    isDown: () => false,
    selfId: m.id,
    now: Date.now(),
  })
  // As the agent's changeRole writes it: the revocation, then the record.
  if (ch.revoke) m.store.put(ch.revoke.key, ch.revoke.value)
  m.store.put(`node/${id}`, ch.record)
  return ch
}

test("revocation: a demoted manager's manager certificate vouches for nothing, also where its own record, planted with a clock above the demotion, got first", async () => {
  const e2 = await EvilMember.join(lab, 'e2', m)
  evils.push(e2)
  let w2 = await lab.worker('w2', m)
  await waitFor('w2 knows e2', () => w2.store.get('node/e2') !== undefined, 5000)
  const up = roleChange('e2', 'manager')
  await waitFor('w2 holds e2 a manager', () => w2.store.get<NodeRecord>('node/e2')?.role === 'manager', 5000)
  // w2 goes away; e2 is demoted meanwhile (node demote: its manager certificate revoked, a worker one issued).
  await lab.stop(w2)
  const down = roleChange('e2', 'worker')
  assert.ok(down.revoke, 'the demotion revokes the manager certificate')
  w2 = await comeBackAlone(w2)
  const to = {addr: w2.addr, port: w2.port}
  const unauthorised = w2.gossip.stats.unauthorised
  // e2 speaks first: its own record, still a manager, with a clock far above the demotion's (w2 believes it:
  // as far as w2 knows, e2 is a manager writing its own record).
  const clock = m.store.clock + 1_000_000
  const planted = e2.entry({key: 'node/e2', value: {...up.record, mtu: 1400}, version: {clock, node: 'e2'}})
  await e2.send(to, {t: 'updates', entries: [planted]})
  await waitFor('w2 took the planted record', () => w2.store.get<NodeRecord>('node/e2')?.mtu === 1400, 5000)
  // The revocation reaches w2 (relayed by anyone: e2 itself here, it stands on m's signature), not yet the new record.
  await e2.send(to, {t: 'updates', entries: [m.store.entry(down.revoke.key)!]})
  await waitFor('w2 holds the revocation', () => w2.store.get(down.revoke!.key) !== undefined, 5000)
  // e2 writes as the manager it was: a service, and its record as manager again.
  const writes = [
    e2.entry({key: 'service/evil2', value: {id: 'evil2'}, version: {clock: clock + 1, node: 'e2'}}),
    e2.entry({key: 'node/e2', value: {...up.record, mtu: 1300}, version: {clock: clock + 2, node: 'e2'}}),
  ]
  const badSender = w2.gossip.stats.badSender
  await e2.send(to, {t: 'updates', entries: writes})
  // The record w2 holds for e2 stands on the revoked certificate: its packets are not believed at all.
  await waitFor('w2 refused the packet', () => w2.gossip.stats.badSender > badSender, 5000)
  await sleep(200)
  assert.equal(w2.store.get('service/evil2'), undefined, 'no service from a revoked manager certificate')
  assert.equal(w2.store.get<NodeRecord>('node/e2')?.mtu, 1400, 'nor its record as manager again')
  // Nor the same entries relayed by an honest node (judged by their writer, whoever carries them).
  // (an honest relay: w1's header and key, as w1's push-pull or fan-out would carry them)
  await e2.send(to, {t: 'updates', entries: writes}, {from: w1.id, epoch: w1.gossip.epoch, seq: 1_000_000}, w1.nodeKey)
  await waitFor('w2 refused both', () => w2.gossip.stats.unauthorised >= unauthorised + 2, 5000)
  assert.equal(w2.store.get('service/evil2'), undefined, 'no service from a revoked manager certificate')
  assert.match(w2.gossip.lastRefusal ?? '', /revoked/)
  // One push-pull with m: w2 does not offer the record that stands on a revoked certificate, m sends the demotion,
  // which replaces it whatever its clock.
  assert.ok(await w2.gossip.pushPull({id: m.id, addr: m.addr, port: m.port}), 'push-pull with m')
  const held = w2.store.get<NodeRecord>('node/e2')
  assert.equal(held?.role, 'worker', 'w2 holds e2 a worker, as m wrote it')
  assert.equal(held?.cert, down.record.cert)
  assert.equal(m.store.get<NodeRecord>('node/e2')?.mtu, 1500, 'm never took the planted record')
  // And as a worker, e2 writes nothing a manager writes.
  await e2.send(to, {
    t: 'updates',
    entries: [e2.entry({key: 'service/evil3', value: {id: 'evil3'}, version: {clock: clock + 3, node: 'e2'}})],
  })
  await waitFor('refused', () => w2.gossip.stats.unauthorised >= unauthorised + 3, 5000)
  assert.equal(w2.store.get('service/evil3'), undefined)
})

test('revocation: a removed node cannot write itself back to ready, also where its own record, planted with a clock above the removal, got first', async () => {
  const e3 = await EvilMember.join(lab, 'e3', m)
  evils.push(e3)
  let w3 = await lab.worker('w3', m)
  await waitFor('w3 knows e3', () => w3.store.get('node/e3') !== undefined, 5000)
  const rec = m.store.get<NodeRecord>('node/e3')!
  // w3 goes away; e3 is removed meanwhile (node rm: only a node that is down, its certificate revoked, marked left).
  await lab.stop(w3)
  // Through the store's four calls only: the lab's records are too thin for the manager's index.
  const desired: DesiredStore = {
    get: (k) => m.store.get(k),
    values: (p) => m.store.values(p),
    put: (k, v) => m.store.put(k, v),
    delete: (k) => m.store.delete(k),
  }
  new Manager(desired, m.id, {isDown: (id) => id === 'e3'}).removeNode('e3')
  const revoke = Object.keys(m.store.digest()).find(
    (k) => k.startsWith('revoked/') && m.store.get<{nodeId: string}>(k)?.nodeId === 'e3',
  )
  assert.ok(revoke, 'node rm revoked the certificate')
  w3 = await comeBackAlone(w3)
  const to = {addr: w3.addr, port: w3.port}
  // Its agent restarts and announces itself ready, with a clock far above the removal's.
  const clock = m.store.clock + 1_000_000
  await e3.send(to, {
    t: 'updates',
    entries: [e3.entry({key: 'node/e3', value: {...rec, mtu: 1400}, version: {clock, node: 'e3'}})],
  })
  await waitFor('w3 took it (it held e3 ready)', () => w3.store.get<NodeRecord>('node/e3')?.mtu === 1400, 5000)
  // The removal reaches w3, relayed by e3 itself: the revocation and m's record marking it left.
  await e3.send(to, {t: 'updates', entries: [m.store.entry(revoke)!, m.store.entry('node/e3')!]})
  await waitFor('w3 holds e3 left', () => w3.store.get<NodeRecord>('node/e3')?.state === 'left', 5000)
  // e3 writes itself ready again, by datagram and by push-pull: nothing it signs is believed any more.
  const before = {...w3.gossip.stats}
  const back = e3.entry({key: 'node/e3', value: {...rec, state: 'ready'}, version: {clock: clock + 10, node: 'e3'}})
  await e3.send(to, {t: 'updates', entries: [back]})
  const conn = await e3.connect(to)
  conn.send(e3.packet({t: 'pushpull-req', digest: {}}))
  assert.equal(await conn.next(2000), undefined, 'no push-pull with a removed node')
  conn.destroy()
  await waitFor('both refused', () => w3.gossip.stats.badSender >= before.badSender + 2, 5000)
  for (const n of [w3, m]) assert.equal(n.store.get<NodeRecord>('node/e3')?.state, 'left', `${n.id} holds e3 left`)
})

/**
 * A man in the middle holding the worker token (any worker holds it): a TCP relay between a joiner
 * and the manager that reads the handshake, opens the answer with the key the token gives (spelt
 * out as an attacker would: HKDF of the token's secret over both nonces), puts in a task of its
 * choosing for the joiner and seals it again. `forge` off: it relays every byte as it came.
 */
async function joinThroughRelay(forge: boolean): Promise<{result: Promise<unknown>; close: () => void}> {
  const addr = lab.newAddr()
  const server = net.createServer((socket) => {
    const down = new FramedConn(socket)
    void (async () => {
      const up = await connectFramed(m, 5000)
      let cnonce: Buffer | undefined
      let nonce: Buffer | undefined
      const json = (f: Buffer) => JSON.parse(f.subarray(1).toString()) as Record<string, string>
      const toManager = (async () => {
        for (let f = await down.next(10_000); f; f = await down.next(10_000)) {
          if (json(f).t === 'hello') cnonce = Buffer.from(json(f).cnonce, 'base64')
          up.send(f)
        }
      })()
      for (let f = await up.next(10_000); f; f = await up.next(10_000)) {
        const x = json(f)
        if (x.t === 'challenge') nonce = Buffer.from(x.nonce, 'base64')
        if (x.t === 'accept' && forge) {
          const k = Buffer.from(
            hkdfSync(
              'sha256',
              lab.token.secret,
              lab.token.digest,
              `swarmnet join seal ${nonce!.toString('hex')} ${cnonce!.toString('hex')}`,
              32,
            ),
          )
          const label = Buffer.from('swarmnet-join')
          const body = JSON.parse(openWith(k, Buffer.from(x.sealed, 'base64'), label)!.toString()) as {entries: Entry[]}
          const task = {id: 'f'.repeat(24), serviceId: 'evil', nodeId: 'j', image: 'evil'}
          body.entries.push({key: `task/${task.id}`, value: task, version: {clock: 1e6, node: 'm'}})
          const sealed = sealWith(k, Buffer.from(JSON.stringify(body)), 0, label).toString('base64')
          f = Buffer.concat([f.subarray(0, 1), Buffer.from(JSON.stringify({...x, sealed}))])
        }
        down.send(f)
      }
      down.destroy()
      await toManager
    })().catch(() => down.destroy())
  })
  await new Promise<void>((r) => server.listen(0, addr, r))
  const port = (server.address() as net.AddressInfo).port
  const key = generateNodeKey()
  const id = forge ? 'j' : 'j0'
  const result = requestJoin({
    manager: {addr, port},
    token: lab.token,
    node: {id, name: id, addr: lab.newAddr(), gossipPort: 7946, mtu: 1500, pubKey: key.publicKey},
  })
  return {result, close: () => server.close()}
}

test('a forged join answer: a man in the middle with the worker token cannot hand a joiner tasks of its choosing', async () => {
  // The relay works: relaying faithfully, the joiner is admitted.
  const honest = await joinThroughRelay(false)
  await honest.result
  honest.close()
  // Forging, it is refused: the answer is not the one the cluster's identity signed.
  const forged = await joinThroughRelay(true)
  await assert.rejects(forged.result, /not signed by the cluster's identity/)
  forged.close()
})

test("a worker's deletion floor is not believed: an empty digest with a huge floor makes a node forget nothing", async () => {
  const e4 = await EvilMember.join(lab, 'e4', m)
  evils.push(e4)
  await waitFor('w1 knows e4', () => w1.store.get('node/e4') !== undefined, 5000)
  const held = w1.store.list('').length
  const conn = await e4.connect(w1)
  conn.send(e4.packet({t: 'pushpull-req', digest: {}, floor: 2 ** 40}))
  assert.ok(await conn.next(5000), 'w1 answered the push-pull')
  conn.destroy()
  assert.equal(w1.gossip.stats.forgotten, 0)
  assert.equal(w1.store.list('').length, held, 'w1 holds all it held')
  assert.ok(w1.store.get('network/ingress'))
})
