// The gossip UDP socket's thread (src/gossip/udp-thread.ts): it answers a valid SWIM ping for
// its node off the event loop, and nothing else: a forged, wrong-key, replayed or revoked
// sender's ping gets no answer and is counted (by the main thread, as before); and it answers
// only while the main thread's heartbeat is recent. The prober is a child process, so the main
// thread of this one (the agent's, here) can be held with Atomics.wait while it probes.
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import type {Worker} from 'node:worker_threads'
import * as dgram from 'node:dgram'
import {after, before, describe, test} from 'node:test'
import type {Message} from '../../src/gossip/codec.js'
import {certSerial, verifyBytes} from '../../src/gossip/identity.js'
import {generateKey, Keyring} from '../../src/gossip/keyring.js'
import {revokedKey} from '../../src/gossip/revocation.js'
import {readOpened, sealMessage} from '../../src/gossip/transport.js'
import type {SwimMessage} from '../../src/membership/messages.js'
import {Membership} from '../../src/membership/swim.js'
import type {NodeRecord} from '../../src/model/types.js'
import {generateNodeKey} from '../../src/gossip/identity.js'
import {GossipLab, sealAs, sleep, waitFor, type LabNode} from './gossip-lab.js'

/** The bound the thread is given here: short, so the test of a held loop stays short. */
const STALE_MS = 1000

const lab = new GossipLab()
let m: LabNode
/** The pinger's identity: a member that joined (its certified record is in m's store), then went quiet. */
const PINGER = 'w1'
let epoch = Date.now()
let seq = 0

function ping(o: {key?: Buffer; keyId?: number; signer?: string; from?: string; target?: string; swimSeq?: number} = {}): Buffer {
  const swim: SwimMessage = {op: 'ping', seq: o.swimSeq ?? ++seq, inc: 1, target: o.target ?? 'm', u: []}
  const msg = {t: 'swim', swim, from: o.from ?? PINGER, epoch, seq: ++seq, ts: Date.now()} as Message
  const signer = lab.keys.get(o.signer ?? PINGER)!
  return o.keyId !== undefined
    ? sealMessage(new Keyring(o.key!, o.keyId), signer.privateKey, msg)
    : sealAs(o.key ?? lab.clusterKey, msg, signer)
}

/** The SWIM acks among datagrams: each opened with the cluster key and checked as signed by m's key. */
function acks(datagrams: Buffer[], key = lab.clusterKey, keyId = 0): {swimSeq: number; inc: number}[] {
  const out: {swimSeq: number; inc: number}[] = []
  for (const d of datagrams) {
    const plain = new Keyring(key, keyId).open(d)
    const o = plain && readOpened(plain)
    assert.ok(o, 'every answer opens with the cluster key')
    assert.ok(
      !o.byMac && verifyBytes(lab.keys.get('m')!.publicKey, o.json, o.auth),
      'signed by m (the ping did not say it reads MACs)',
    )
    if (o.m.t === 'swim' && o.m.swim.op === 'ack') out.push({swimSeq: o.m.swim.seq, inc: o.m.swim.inc})
  }
  return out
}

/** Sends packets from a socket of its own and collects what comes back for `listenMs`. */
async function exchange(packets: Buffer[], listenMs = 400): Promise<Buffer[]> {
  const sock = dgram.createSocket('udp4')
  const got: Buffer[] = []
  sock.on('message', (b) => got.push(b))
  await new Promise<void>((r) => sock.bind(0, '127.0.0.250', r))
  for (const p of packets) await new Promise<void>((r) => sock.send(p, m.port, m.addr, () => r()))
  await sleep(listenMs)
  await new Promise<void>((r) => sock.close(() => r()))
  return got
}

/**
 * The prober, a child process: sends each packet `at` ms after it says it is ready, and prints
 * when it sent each and every datagram that came back (wall-clock ms, as this process reads them).
 */
const PROBER = `
const dgram = require('node:dgram')
const [addr, port, plan, listenMs] = process.argv.slice(1)
const sock = dgram.createSocket('udp4')
const sent = [], got = []
sock.on('message', (b) => got.push({at: Date.now(), hex: b.toString('hex')}))
sock.bind(0, '127.0.0.251', () => {
  process.stdout.write('ready\\n')
  const t = Date.now()
  for (const [i, p] of JSON.parse(plan).entries())
    setTimeout(() => sock.send(Buffer.from(p.hex, 'hex'), Number(port), addr, () => (sent[i] = Date.now())), p.at - (Date.now() - t))
  setTimeout(() => { process.stdout.write(JSON.stringify({sent, got}) + '\\n'); sock.close() }, Number(listenMs))
})
`

type Held = {t0: number; t1: number; pings: {swimSeq: number; sentAt: number}[]; acks: {swimSeq: number; at: number}[]}

/** Holds this process's main thread (the agent's loop) for holdMs while the child pings at the given offsets. */
async function heldProbe(holdMs: number, at: number[]): Promise<Held> {
  const plan = at.map((ms) => {
    const swimSeq = ++seq + 100_000
    return {at: ms, swimSeq, hex: ping({swimSeq}).toString('hex')}
  })
  const listenMs = Math.max(...at) + holdMs + 500
  const child = spawn(process.execPath, ['-e', PROBER, m.addr, String(m.port), JSON.stringify(plan), String(listenMs)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  let out = ''
  let t0 = 0
  let t1 = 0
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString()
      if (t0 === 0 && out.startsWith('ready\n')) {
        t0 = Date.now()
        // The agent's event loop held: no timer, no message, no heartbeat until it returns.
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, holdMs)
        t1 = Date.now()
      }
    })
    child.on('error', reject)
    child.on('exit', () => resolve())
  })
  const r = JSON.parse(out.split('\n')[1] ?? '') as {sent: number[]; got: {at: number; hex: string}[]}
  const acked: {swimSeq: number; at: number}[] = []
  for (const g of r.got) for (const a of acks([Buffer.from(g.hex, 'hex')])) acked.push({swimSeq: a.swimSeq, at: g.at})
  return {t0, t1, pings: plan.map((p, i) => ({swimSeq: p.swimSeq, sentAt: r.sent[i] ?? 0})), acks: acked}
}

before(async () => {
  m = await lab.manager('m', {gossip: {loopStaleMs: STALE_MS}})
  const w1 = await lab.worker(PINGER, m)
  await waitFor('w1 certified in m', () => m.store.get(`node/${PINGER}`) !== undefined, 10_000)
  await lab.stop(w1)
  epoch = w1.gossip.epoch + 1
  // What m's membership tells the thread to answer with.
  m.gossip.swimAnswer({inc: 77})
})
after(() => lab.close())

describe('the gossip UDP thread answers SWIM pings', () => {
  test('a valid ping is answered by the thread, with the incarnation the membership gave it', async () => {
    // The first message of a sender goes to the main thread, which tells the thread its key.
    const first = await exchange([ping()])
    const before = m.gossip.stats.swimAckedOffLoop
    const got = await exchange([ping({swimSeq: 5001})])
    assert.deepEqual(acks(got), [{swimSeq: 5001, inc: 77}])
    assert.equal(m.gossip.stats.swimAckedOffLoop, before + 1)
    assert.ok(acks(first).length <= 1)
  })

  test('while the main thread is held for less than the bound, its pings are answered; held longer, they are not', async () => {
    const short = await heldProbe(700, [250])
    const early = short.pings[0]!
    assert.ok(
      early.sentAt > short.t0 && early.sentAt < short.t1,
      `the ping went while the loop was held (${JSON.stringify(short)})`,
    )
    const ack = short.acks.find((a) => a.swimSeq === early.swimSeq)
    assert.ok(ack && ack.at < short.t1, `answered while the main thread was held (${JSON.stringify(short)})`)

    const withheld0 = m.gossip.stats.swimAcksWithheld
    const long = await heldProbe(STALE_MS + 1600, [STALE_MS + 300, STALE_MS + 600, STALE_MS + 900, STALE_MS + 1200])
    // Pings sent when the beat was older than the bound for sure (the last one came before the hold).
    const late = long.pings.filter((p) => p.sentAt - long.t0 > STALE_MS + 50 && p.sentAt < long.t1)
    assert.ok(late.length > 0, `some pings went more than the bound into the hold (${JSON.stringify(long)})`)
    for (const p of late)
      assert.ok(
        !long.acks.some((a) => a.swimSeq === p.swimSeq && a.at < long.t1),
        `ping ${p.swimSeq} not answered while the main thread was stuck`,
      )
    await waitFor('counted as withheld', () => m.gossip.stats.swimAcksWithheld >= withheld0 + late.length, 5000)
    // Once the loop turns again, the thread answers again.
    const again = await exchange([ping({swimSeq: 8001})])
    assert.deepEqual(acks(again), [{swimSeq: 8001, inc: 77}])
  })

  test('a forged, wrong-key, replayed, misdirected or revoked ping gets no answer, and is counted', async () => {
    const s0 = {...m.gossip.stats}
    const stranger = generateNodeKey()
    lab.keys.set('stranger', stranger)
    const valid = ping({swimSeq: 6001})
    const answered = await exchange([valid])
    assert.deepEqual(acks(answered), [{swimSeq: 6001, inc: 77}])
    const got = await exchange([
      // Signed by a key that is not w1's certified one.
      ping({signer: 'stranger', swimSeq: 6002}),
      // Sealed with another cluster key.
      ping({key: generateKey(), swimSeq: 6003}),
      // The valid ping again, byte for byte.
      valid,
      // For another node.
      ping({target: 'w2', swimSeq: 6004}),
    ])
    assert.deepEqual(acks(got), [], 'no answer to any of them')
    await waitFor('counted by the main thread', () => m.gossip.stats.replayed === s0.replayed + 1, 5000)
    assert.equal(m.gossip.stats.badSender, s0.badSender + 1)
    assert.equal(m.gossip.stats.decryptFailed, s0.decryptFailed + 1)
    assert.equal(m.gossip.stats.swimAckedOffLoop, s0.swimAckedOffLoop + 1)
  })

  test('the thread follows a key rotation: pings under the new key answered under it, the removed key no longer opens', async () => {
    const ring = m.gossip.keyring
    const next = generateKey()
    const old = ring.primary
    ring.install(9, next)
    ring.use(9)
    // The change is told to the thread by message: a datagram it reads before that goes to the main thread (not answered here).
    await sleep(100)
    const got = await exchange([ping({key: next, keyId: 9, swimSeq: 9001})])
    assert.deepEqual(acks(got, next, 9), [{swimSeq: 9001, inc: 77}], 'answered, sealed with the new primary')
    ring.remove(old)
    await sleep(100)
    const s0 = {...m.gossip.stats}
    const stale = await exchange([ping({swimSeq: 9002})])
    assert.deepEqual(stale, [], 'nothing answers a ping under the removed key')
    await waitFor('counted', () => m.gossip.stats.decryptFailed === s0.decryptFailed + 1, 5000)
    // Back to the lab's key for what follows.
    ring.install(old, lab.clusterKey)
    ring.use(old)
    ring.remove(9)
    await sleep(100)
    assert.deepEqual(acks(await exchange([ping({swimSeq: 9003})])), [{swimSeq: 9003, inc: 77}])
  })

  test('a thread that fails is replaced, and told again what to answer with', async () => {
    const t = (m.gossip.transport as unknown as {thread: {worker: Worker}}).thread
    const first = t.worker
    await first.terminate()
    await waitFor('another thread', () => t.worker !== first, 10_000)
    let got: Buffer[] = []
    for (let i = 0; i < 50 && acks(got).length === 0; i++) got = await exchange([ping({swimSeq: 9500 + i})], 200)
    assert.equal(acks(got).length, 1)
    assert.equal(acks(got)[0]!.inc, 77)
  })

  test("the revocation of the pinger's certificate stops the answers at once", async () => {
    // w1's certificate revoked (as `node rm` does): its next ping is neither answered nor taken.
    const rec = m.store.get(`node/${PINGER}`) as NodeRecord
    const s1 = {...m.gossip.stats}
    m.store.put(revokedKey(certSerial(rec.cert!)), {serial: certSerial(rec.cert!), nodeId: PINGER, at: Date.now()})
    const revoked = await exchange([ping({swimSeq: 6005})])
    assert.deepEqual(acks(revoked), [])
    await waitFor('counted', () => m.gossip.stats.badSender === s1.badSender + 1, 5000)
    assert.equal(m.gossip.stats.swimAckedOffLoop, s1.swimAckedOffLoop)
  })
})

describe('membership and the answers off the loop', () => {
  test('a ping already answered is taken in but not answered again; the answer follows the incarnation', () => {
    const sent: SwimMessage[] = []
    const told: ({inc: number; isig?: string} | undefined)[] = []
    const mm = new Membership({
      self: {id: 'a', addr: '127.0.0.1', port: 1},
      incarnation: 10,
      net: {send: (_to, msg) => sent.push(msg), answerWith: (x) => told.push(x)},
      random: () => 0.5,
    })
    mm.setRoster([{id: 'b', addr: '127.0.0.2', port: 2, left: false}])
    mm.start()
    assert.deepEqual(told, [{inc: 10}])
    const from = {addr: '127.0.0.2', port: 2}
    mm.receive({op: 'ping', seq: 1, inc: 5, target: 'a', u: []}, 'b', from, true)
    assert.deepEqual(
      sent.filter((x) => x.op === 'ack'),
      [],
    )
    assert.equal(mm.get('b')!.incarnation, 5, 'what the ping says is taken in')
    mm.receive({op: 'ping', seq: 2, inc: 5, target: 'a', u: []}, 'b', from)
    assert.equal(sent.filter((x) => x.op === 'ack').length, 1, 'not answered off the loop: answered here')
    // A suspicion of this node, refuted: the thread answers with the new incarnation.
    mm.receive({op: 'ping', seq: 3, inc: 5, target: 'a', u: [{k: 'suspect', id: 'a', inc: 10, by: 'b'}]}, 'b', from, true)
    assert.deepEqual(told.at(-1), {inc: 11})
    mm.stop()
    assert.equal(told.at(-1), undefined, 'stopped: nothing is answered for it')
  })
})
