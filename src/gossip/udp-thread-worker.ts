// The gossip UDP socket's own thread (see udp-thread.ts): it reads every datagram, opens it with
// the keyring, authenticates its sender (pair MAC or signature, by the certified key the main
// thread published), checks its freshness (its own window of sequence numbers), and answers a
// SWIM ping for this node at once with an ack, while the main thread's heartbeat is recent. Every
// message it accepts goes on to the main thread decoded (whose transport checks the sender's key
// and freshness again and hands it to gossip and membership as before); every datagram it does
// not accept goes on untouched, for the main thread to judge and count exactly as it always did.
// It also sends what the main thread seals (one socket, one source port).
import * as dgram from 'node:dgram'
import * as os from 'node:os'
import {parentPort, workerData} from 'node:worker_threads'
import type {Message} from './codec.js'
import {Freshness} from './freshness.js'
import {verifyBytes} from './identity.js'
import {ENVELOPE_VERSION, Keyring} from './keyring.js'
import {PairKeys} from './pair-keys.js'
import {readOpened, sealMessage, sealPairMessage, UDP_MAX} from './transport.js'
import type {FromThread, KeysUpdate, ToThread, UdpThreadData} from './udp-thread-shared.js'

/**
 * This thread's nice value (Linux keeps one per thread; pid 0 is the calling thread): it works a
 * few microseconds per datagram, and on a machine whose run queue holds 50-140 threads (the lab
 * starting 1,000 tasks) a thread of default priority can wait longer than the probe timeout for
 * a CPU. Raised only where the agent may (root); else it stays as it is.
 */
export const THREAD_NICE = -5
try {
  os.setPriority(0, THREAD_NICE)
} catch {
  // Not permitted: the default priority.
}

const wd = workerData as UdpThreadData
const port = parentPort!
const seqCell = new BigInt64Array(wd.seq)
const beat = new BigInt64Array(wd.heartbeat)
const staleNs = BigInt(wd.loopStaleMs) * 1_000_000n
const pairs = new PairKeys(wd.nodeId, wd.privateKey)
const freshness = new Freshness()
const senders = new Map<string, string>()
const sumFlag: {sum?: 1} = wd.summaries ? {sum: 1} : {}
let keyring = ringOf(wd.keys)
let self: {inc: number; isig?: string} | undefined

function ringOf(k: KeysUpdate): Keyring {
  const first = k.entries.find((e) => e.id === k.primary) ?? k.entries[0]
  if (!first) throw new Error('no gossip key')
  const ring = new Keyring(Buffer.from(first.key), first.id)
  for (const e of k.entries) if (e.id !== first.id) ring.install(e.id, Buffer.from(e.key))
  if (ring.has(k.primary)) ring.use(k.primary)
  return ring
}

function post(m: FromThread, transfer?: ArrayBuffer[]): void {
  port.postMessage(m, transfer)
}

/** A copy in a buffer of its own (a received Buffer may be a view of a bigger one), moved rather than copied again. */
function own(b: Buffer): {u: Uint8Array; transfer: ArrayBuffer[]} {
  const u = new Uint8Array(b)
  return {u, transfer: [u.buffer as ArrayBuffer]}
}

const sock = dgram.createSocket({type: 'udp4'})

function forwardRaw(packet: Buffer, addr: string, p: number): void {
  const {u, transfer} = own(packet)
  post({t: 'raw', packet: u, addr, port: p}, transfer)
}

/**
 * What Transport.unseal checks, in the same order, on what this thread holds: a datagram that
 * fails any check goes to the main thread whole (undefined here), so what is refused, and what is
 * counted, is the main thread's decision as before.
 */
function accept(packet: Buffer): {m: Message; key: string; byMac: boolean} | undefined {
  if (packet.length === 0 || packet[0] !== ENVELOPE_VERSION) return undefined
  const plain = keyring.open(packet)
  if (!plain) return undefined
  const opened = readOpened(plain)
  if (!opened) return undefined
  const {m, json, auth, byMac} = opened
  const key = senders.get(m.from)
  if (!key || !(byMac ? pairs.check(m.from, key, json, auth) : verifyBytes(key, json, auth))) return undefined
  if (freshness.accept(m, Date.now()) !== 'fresh') return undefined
  return {m, key, byMac}
}

/** Whether the main thread beat within the bound: the thread answers for a live agent only. */
function mainAlive(): boolean {
  return process.hrtime.bigint() - Atomics.load(beat, 0) <= staleNs
}

/** The ack to a ping, sealed as the transport seals (a sequence number from the shared counter). */
function ackFor(m: Message & {t: 'swim'}, key: string, inc: number, isig: string | undefined): Buffer {
  const seq = Number(Atomics.add(seqCell, 0, 1n) + 1n)
  const ack = {
    t: 'swim',
    swim: {op: 'ack', seq: m.swim.seq, inc, u: [], ...(isig !== undefined ? {isig} : {})},
    from: wd.nodeId,
    epoch: wd.epoch,
    seq,
    ts: Date.now(),
    mac: 1,
    ...sumFlag,
  } as Message
  // MACed for the pinger when its header says it reads MACs (its current run speaks), else signed.
  return (m.mac === 1 && sealPairMessage(keyring, pairs, m.from, key, ack)) || sealMessage(keyring, wd.privateKey, ack)
}

sock.on('message', (packet, rinfo) => {
  let got: ReturnType<typeof accept>
  try {
    got = accept(packet)
  } catch {
    got = undefined
  }
  if (!got) {
    forwardRaw(packet, rinfo.address, rinfo.port)
    return
  }
  const {m, key, byMac} = got
  let acked = false
  let withheld = false
  let ackBytes = 0
  // A ping that came in a datagram was sent as one (a sealed message over UDP_MAX goes by TCP):
  // one carried by TCP and played back as a datagram is not answered here, the main thread sees it.
  if (m.t === 'swim' && m.swim.op === 'ping' && m.swim.target === wd.nodeId && self && packet.length <= UDP_MAX) {
    if (mainAlive()) {
      const out = ackFor(m, key, self.inc, self.isig)
      ackBytes = out.length
      sock.send(out, rinfo.port, rinfo.address, (err) => {
        if (err) post({t: 'send-error'})
      })
      acked = true
    } else withheld = true
  }
  post({t: 'msg', m, addr: rinfo.address, port: rinfo.port, key, len: packet.length, byMac, acked, withheld, ackBytes})
})

port.on('message', (x: ToThread) => {
  switch (x.t) {
    case 'send':
      sock.send(x.packet, x.port, x.addr, (err) => {
        if (err) post({t: 'send-error'})
      })
      return
    case 'keys':
      keyring = ringOf(x)
      return
    case 'senders':
      for (const [id, k] of x.set) senders.set(id, k)
      for (const id of x.del) senders.delete(id)
      return
    case 'self':
      self = x.inc !== undefined ? {inc: x.inc, ...(x.isig !== undefined ? {isig: x.isig} : {})} : undefined
      return
    case 'stop':
      // process.exit in a worker ends this thread only.
      sock.close(() => process.exit(0))
      return
  }
})

sock.once('error', (e) => post({t: 'bind-error', message: e.message}))
sock.bind({address: wd.bindAddr, port: wd.port, exclusive: true}, () => {
  sock.removeAllListeners('error')
  sock.on('error', () => post({t: 'send-error'}))
  post({t: 'bound'})
})
