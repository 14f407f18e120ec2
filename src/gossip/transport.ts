import * as net from 'node:net'
import {decodeMessage, encodeMessage, type Body, type Message} from './codec.js'
import {FramedConn, MAX_UNAUTHENTICATED_FRAME} from './frame.js'
import {Freshness} from './freshness.js'
import {signBytes, verifyBytes} from './identity.js'
import {ENVELOPE_VERSION, type Keyring} from './keyring.js'
import {MAC_BYTES, PairKeys} from './pair-keys.js'
import type {GossipStats} from './stats.js'
import {LOOP_STALE_MS, UdpThread} from './udp-thread.js'
import type {FromThread} from './udp-thread-shared.js'

/**
 * UDP and TCP on one port (7946), as memberlist and Swarm do. UDP carries
 * small messages (one sealed datagram <= 1400 bytes, a size no sane underlay
 * fragments); TCP carries big ones and the request/response exchanges.
 *
 * The first byte of a datagram or TCP frame says what follows: the sealed
 * envelope's version byte, or JOIN_FRAME for the join handshake (which runs
 * before the joiner holds the cluster key).
 *
 * The UDP socket is a thread's (udp-thread.ts): it opens and authenticates datagrams, answers
 * SWIM pings off the event loop, and hands everything on to this transport (fromThread).
 */
export const UDP_MAX = 1400
export const JOIN_FRAME = 0x4a // 'J'
export const TCP_TIMEOUT_MS = 10_000
/**
 * Connections others may hold open to us at once, from one address and in
 * all: enough for push-pull plus a burst of one-shot sends from every peer,
 * small enough that a flood of idle connections cannot exhaust the agent.
 */
export const MAX_CONNS_PER_ADDR = 32
export const MAX_CONNS = 512
/** Peers remembered as reading MACs (only certified senders get there: the cluster's size). */
const MAX_MAC_READERS = 4096

export type Addr = {addr: string; port: number}
/** Where a message goes, and when known, the node that should read it (its pair key authenticates the message). */
export type Recipient = Addr & {id?: string}

/**
 * Inside the seal, every message says which node sent it, in one of two forms:
 *
 *   [64-byte Ed25519 signature][JSON]   the sender's node key signs the JSON, header included;
 *   [JSON][32-byte HMAC-SHA256]         under the key of the (sender, receiver) pair (pair-keys.ts).
 *
 * The cluster key only says "some member"; either form says which, so no member can stamp
 * another's id, epoch and sequence number (freshness.ts keys its windows on them: a forged header
 * with a victim's epoch and a huge number would make all the victim's later packets stale). A
 * sender uses the MAC when it knows the receiver's id and certified key and the receiver has said
 * (`mac: 1` in a header it sent) that it reads MACs; else (a peer known by address only, a node
 * not heard from yet, an older version) it signs. The JSON starts with '{': a packet whose
 * leading JSON (all but the last 32 bytes) decodes is the MAC form; anything else is read as the
 * signed form.
 */
export const SIG_BYTES = 64
export {MAC_BYTES}

/** A message as a transport seals it with a signature: signed with the sender's node key, sealed with the cluster key. */
export function sealMessage(keyring: Keyring, privateKey: string, m: Message): Buffer {
  const json = encodeMessage(m)
  return keyring.seal(Buffer.concat([signBytes(privateKey, json), json]))
}

/** A message in the MAC form: authenticated with the pair key of m.from and `to`, sealed with the cluster key. */
export function sealPairMessage(keyring: Keyring, pairs: PairKeys, to: string, toKey: string, m: Message): Buffer | undefined {
  const json = encodeMessage(m)
  const mac = pairs.mac(to, toKey, json)
  return mac ? keyring.seal(Buffer.concat([json, mac])) : undefined
}

/** An opened envelope's message, its JSON and what authenticates it (signature or MAC); undefined when neither form decodes. */
export type Opened = {m: Message; json: Buffer; auth: Buffer; byMac: boolean}

export function readOpened(plain: Buffer): Opened | undefined {
  if (plain.length > MAC_BYTES && plain[0] === 0x7b) {
    const json = plain.subarray(0, plain.length - MAC_BYTES)
    const m = decodeMessage(json)
    if (m) return {m, json, auth: plain.subarray(plain.length - MAC_BYTES), byMac: true}
  }
  if (plain.length <= SIG_BYTES) return undefined
  const json = plain.subarray(SIG_BYTES)
  const m = decodeMessage(json)
  return m ? {m, json, auth: plain.subarray(0, SIG_BYTES), byMac: false} : undefined
}

export type TransportHandlers = {
  /**
   * A valid message by UDP, or a one-shot TCP message. acked: a SWIM ping the UDP thread
   * already answered (udp-thread.ts): the protocol takes in what it says but does not answer.
   */
  onMessage: (m: Message, from: Addr, acked?: boolean) => void
  /** The first message of a TCP stream that expects an answer (push-pull). */
  onStream: (m: Message, conn: SealedConn) => void
  /** A join handshake; the frame is the first one, JOIN_FRAME byte included. */
  onJoin?: (conn: FramedConn, first: Buffer) => void
}

/** A TCP connection whose frames are sealed messages. */
export class SealedConn {
  constructor(
    readonly conn: FramedConn,
    private readonly t: Transport,
    /** The node at the other end, when known: what this side sends is MACed for it. */
    readonly peer?: string,
  ) {}

  send(m: Body): void {
    this.conn.send(this.t.seal(m, this.peer))
    this.t.stats.sent++
  }

  /** The next valid message; undefined (counted) when bad, closed or late. */
  async next(timeoutMs = TCP_TIMEOUT_MS): Promise<Message | undefined> {
    const f = await this.conn.next(timeoutMs)
    return f ? this.t.unseal(f) : undefined
  }

  close(): void {
    this.conn.close()
  }
}

export type TransportOptions = {
  nodeId: string
  /** This run's boot epoch: larger than that of any earlier run of this node. */
  epoch: number
  keyring: Keyring
  stats: GossipStats
  handlers: TransportHandlers
  now?: () => number
  /** This node's key (PKCS#8 PEM): signs every message it seals. */
  privateKey: string
  /** The certified public key of node `id`, if it is one this node knows: checks what it sends. */
  senderKey: (id: string) => string | undefined
  /** Whether this node answers push-pull by summaries: says so (`sum: 1`) in every header (default true). */
  summaries?: boolean
  /** How old the main thread's heartbeat may be for that thread to answer a ping (default LOOP_STALE_MS). */
  loopStaleMs?: number
}

export class Transport {
  readonly stats: GossipStats
  private readonly nodeId: string
  private readonly epoch: number
  private readonly keyring: Keyring
  private readonly handlers: TransportHandlers
  private readonly now: () => number
  private readonly privateKey: string
  private readonly senderKey: (id: string) => string | undefined
  private readonly freshness = new Freshness()
  private readonly pairs: PairKeys
  /** Peers that said they read MACs (`mac: 1` in an authenticated header), with the newest epoch that said so. */
  private readonly macReaders = new Map<string, number>()
  /** Peers that said they answer push-pull by summaries (`sum: 1`: gossip.ts), likewise. */
  private readonly summaryReaders = new Map<string, number>()
  private readonly sumFlag: {sum?: 1}
  /** The last sequence number stamped, shared with the UDP thread, which stamps its acks from it too. */
  private readonly seq = new BigInt64Array(new SharedArrayBuffer(8))
  private readonly loopStaleMs: number
  /** The UDP socket's thread (udp-thread.ts): it reads and writes the socket, and answers SWIM pings. */
  private thread: UdpThread | undefined
  /** What that thread answers SWIM pings with (swimSelf), kept for a thread started later. */
  private answer: {inc?: number; isig?: string} = {}
  private tcp: net.Server | undefined
  private readonly conns = new Set<net.Socket>()
  /** Inbound connections open now, per remote address. */
  private readonly inbound = new Map<string, number>()
  private inboundTotal = 0
  private boundPort = 0

  constructor(opts: TransportOptions) {
    this.nodeId = opts.nodeId
    this.epoch = opts.epoch
    this.keyring = opts.keyring
    this.stats = opts.stats
    this.handlers = opts.handlers
    this.now = opts.now ?? Date.now
    this.privateKey = opts.privateKey
    this.senderKey = opts.senderKey
    this.pairs = new PairKeys(opts.nodeId, opts.privateKey)
    this.sumFlag = opts.summaries === false ? {} : {sum: 1}
    this.loopStaleMs = opts.loopStaleMs ?? LOOP_STALE_MS
  }

  get port(): number {
    return this.boundPort
  }

  /** Binds both sockets; port 0 picks one free for TCP and UDP alike. */
  async start(bindAddr: string, port: number): Promise<number> {
    for (let attempt = 0; ; attempt++) {
      const tcp = await this.listenTcp(bindAddr, port)
      const p = (tcp.address() as net.AddressInfo).port
      try {
        this.thread = await this.openThread(bindAddr, p)
        this.tcp = tcp
        this.boundPort = p
        return p
      } catch (e) {
        await new Promise<void>((r) => tcp.close(() => r()))
        // With a random port, UDP's twin may be taken: try another one.
        if (port !== 0 || attempt >= 20) throw new Error(`cannot bind UDP ${bindAddr}:${p}: ${(e as Error).message}`)
      }
    }
  }

  async stop(): Promise<void> {
    const tcp = this.tcp
    const thread = this.thread
    this.tcp = undefined
    this.thread = undefined
    for (const s of this.conns) s.destroy()
    this.conns.clear()
    await Promise.all([thread?.stop(), tcp ? new Promise<void>((r) => tcp.close(() => r())) : undefined])
  }

  /**
   * Stamps the header (a new sequence number every time) and seals: MACed for node `to` when it
   * reads MACs and its certified key is known here, else signed.
   */
  seal(body: Body, to?: string): Buffer {
    const seq = Number(Atomics.add(this.seq, 0, 1n) + 1n)
    const m = {...body, from: this.nodeId, epoch: this.epoch, seq, ts: this.now(), mac: 1, ...this.sumFlag} as Message
    const toKey = to !== undefined && this.macReaders.has(to) ? this.senderKey(to) : undefined
    const sealed =
      (toKey !== undefined && sealPairMessage(this.keyring, this.pairs, to as string, toKey, m)) ||
      sealMessage(this.keyring, this.privateKey, m)
    this.stats.bytesSent += sealed.length
    return sealed
  }

  /** Opens, decodes, checks the sender's signature or MAC and freshness, counting what fails; never throws. */
  unseal(packet: Buffer): Message | undefined {
    this.stats.bytesReceived += packet.length
    if (packet.length === 0 || packet[0] !== ENVELOPE_VERSION) {
      this.stats.malformed++
      return undefined
    }
    const plain = this.keyring.open(packet)
    if (!plain) {
      this.stats.decryptFailed++
      return undefined
    }
    const opened = readOpened(plain)
    if (!opened) {
      this.stats.malformed++
      return undefined
    }
    const {m, json, auth, byMac} = opened
    // Before freshness: only the sender's own packets may move its window. The key is looked up
    // for every message, MAC or signature: a revoked certificate is refused at once either way.
    const key = this.senderKey(m.from)
    if (!key || !(byMac ? this.pairs.check(m.from, key, json, auth) : verifyBytes(key, json, auth))) {
      this.stats.badSender++
      return undefined
    }
    // The UDP thread judges this sender's next datagrams itself.
    this.thread?.setSender(m.from, key)
    const verdict = this.freshness.accept(m, this.now())
    if (verdict !== 'fresh') {
      this.stats[verdict]++
      return undefined
    }
    this.stats.received++
    if (byMac) this.stats.macReceived++
    noteReader(this.macReaders, m.mac === 1, m)
    noteReader(this.summaryReaders, m.sum === 1, m)
    return m
  }

  /** Whether node `id` said (in its latest run) that it answers push-pull by summaries (`sum: 1`). */
  readsSummaries(id: string): boolean {
    return this.summaryReaders.has(id)
  }

  /** One datagram, as the UDP socket hands it over. Never throws. */
  receive(packet: Buffer, from: Addr): void {
    const m = this.unseal(packet)
    if (m) this.dispatch(() => this.handlers.onMessage(m, from))
  }

  /**
   * What the UDP thread hands on. A message it accepted is checked here again against what this
   * thread knows now (the sender's certified key: a revocation takes effect here at once even if
   * the thread has not heard of it yet; freshness: this window holds UDP and TCP alike, so a
   * message is taken at most once), without opening or authenticating it again.
   */
  private fromThread(f: FromThread): void {
    switch (f.t) {
      case 'raw':
        this.receive(Buffer.from(f.packet.buffer, f.packet.byteOffset, f.packet.byteLength), {addr: f.addr, port: f.port})
        return
      case 'send-error':
        this.stats.sendErrors++
        return
      case 'msg':
        break
      default:
        return
    }
    const {m} = f
    this.stats.bytesReceived += f.len
    if (f.acked) {
      this.stats.sent++
      this.stats.bytesSent += f.ackBytes
      this.stats.swimAckedOffLoop++
    }
    if (f.withheld) this.stats.swimAcksWithheld++
    const key = this.senderKey(m.from)
    if (key !== f.key) {
      this.thread?.setSender(m.from, key)
      this.stats.badSender++
      return
    }
    const verdict = this.freshness.accept(m, this.now())
    if (verdict !== 'fresh') {
      this.stats[verdict]++
      return
    }
    this.stats.received++
    if (f.byMac) this.stats.macReceived++
    noteReader(this.macReaders, m.mac === 1, m)
    noteReader(this.summaryReaders, m.sum === 1, m)
    const from = {addr: f.addr, port: f.port}
    this.dispatch(() => this.handlers.onMessage(m, from, f.acked))
  }

  /**
   * Node records or revocations changed: the UDP thread's sender keys are looked up again (ids:
   * those nodes; none: every node it knows, as after a revocation).
   */
  sendersChanged(ids?: string[]): void {
    const t = this.thread
    if (!t) return
    for (const id of ids ?? t.senderIds()) if (t.knows(id)) t.setSender(id, this.senderKey(id))
  }

  /** What the UDP thread answers SWIM pings with: this node's incarnation and signed `alive`; undefined: it answers none. */
  swimSelf(inc: number | undefined, isig?: string): void {
    this.answer = {...(inc !== undefined ? {inc} : {}), ...(isig !== undefined ? {isig} : {})}
    this.thread?.setSelf(inc, isig)
  }

  /** Best effort: UDP when it fits, else a one-shot TCP connection. */
  async send(to: Recipient, m: Body): Promise<void> {
    const packet = this.seal(m, to.id)
    if (packet.length <= UDP_MAX && this.thread) {
      this.thread.send(packet, to.addr, to.port)
      this.stats.sent++
      return
    }
    let conn: FramedConn
    try {
      conn = await this.connect(to)
    } catch {
      this.stats.sendErrors++
      return
    }
    conn.send(this.seal({t: 'open'}, to.id))
    conn.send(packet)
    this.stats.sent++
    conn.close()
  }

  /** A TCP stream of sealed messages to a peer (push-pull). */
  async open(to: Recipient, timeoutMs = TCP_TIMEOUT_MS): Promise<SealedConn> {
    const conn = await this.connect(to, timeoutMs)
    conn.send(this.seal({t: 'open'}, to.id))
    return new SealedConn(conn, this, to.id)
  }

  connect(to: Addr, timeoutMs = TCP_TIMEOUT_MS): Promise<FramedConn> {
    return connectFramed(to, timeoutMs, this.conns)
  }

  private listenTcp(bindAddr: string, port: number): Promise<net.Server> {
    return new Promise((resolve, reject) => {
      const server = net.createServer((s) => this.onConnection(s))
      server.once('error', reject)
      server.listen({host: bindAddr, port, exclusive: true}, () => {
        server.off('error', reject)
        server.on('error', () => {
          /* accept errors are per-connection; the server stays up */
        })
        resolve(server)
      })
    })
  }

  private async openThread(bindAddr: string, port: number): Promise<UdpThread> {
    const t = await UdpThread.open({
      bindAddr,
      port,
      nodeId: this.nodeId,
      epoch: this.epoch,
      privateKey: this.privateKey,
      summaries: this.sumFlag.sum === 1,
      keyring: this.keyring,
      loopStaleMs: this.loopStaleMs,
      seq: this.seq.buffer as SharedArrayBuffer,
      onFrom: (f) => this.fromThread(f),
    })
    t.setSelf(this.answer.inc, this.answer.isig)
    return t
  }

  private onConnection(socket: net.Socket): void {
    const from = socket.remoteAddress ?? ''
    const mine = this.inbound.get(from) ?? 0
    if (mine >= MAX_CONNS_PER_ADDR || this.inboundTotal >= MAX_CONNS) {
      this.stats.connsRefused++
      socket.destroy()
      return
    }
    this.inbound.set(from, mine + 1)
    this.inboundTotal++
    this.conns.add(socket)
    socket.on('close', () => {
      this.conns.delete(socket)
      this.inboundTotal--
      const n = (this.inbound.get(from) ?? 1) - 1
      if (n > 0) this.inbound.set(from, n)
      else this.inbound.delete(from)
    })
    socket.setTimeout(TCP_TIMEOUT_MS * 3, () => socket.destroy())
    const conn = new FramedConn(socket, MAX_UNAUTHENTICATED_FRAME)
    void this.serveConnection(conn, {addr: from, port: socket.remotePort ?? 0})
  }

  private async serveConnection(conn: FramedConn, from: Addr): Promise<void> {
    const first = await conn.next(TCP_TIMEOUT_MS)
    if (!first) {
      if (conn.oversized || conn.truncated) this.stats.malformed++
      conn.destroy()
      return
    }
    if (first[0] === JOIN_FRAME && this.handlers.onJoin) {
      const onJoin = this.handlers.onJoin
      this.dispatch(() => onJoin(conn, first))
      return
    }
    const open = this.unseal(first)
    if (open?.t !== 'open') {
      if (open) this.stats.malformed++
      conn.destroy()
      return
    }
    conn.authenticated()
    const f = await conn.next(TCP_TIMEOUT_MS)
    const m = f ? this.unseal(f) : undefined
    if (!m) {
      if (!f && (conn.oversized || conn.truncated)) this.stats.malformed++
      conn.destroy()
      return
    }
    if (m.t === 'pushpull-req' || m.t === 'pushpull-sum') {
      const sc = new SealedConn(conn, this, m.from)
      this.dispatch(() => this.handlers.onStream(m, sc))
    } else {
      conn.close()
      this.dispatch(() => this.handlers.onMessage(m, from))
    }
  }

  /** A handler bug is counted, never a crash of the agent. */
  private dispatch(fn: () => unknown): void {
    try {
      const r = fn()
      if (r instanceof Promise)
        r.catch(() => {
          this.stats.handlerErrors++
        })
    } catch {
      this.stats.handlerErrors++
    }
  }
}

/** Opens a framed TCP connection, with the address in the error. */
export function connectFramed(to: Addr, timeoutMs: number, track?: Set<net.Socket>): Promise<FramedConn> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({host: to.addr, port: to.port})
    track?.add(socket)
    socket.on('close', () => track?.delete(socket))
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`cannot reach ${to.addr}:${to.port}: timed out after ${timeoutMs} ms`))
    }, timeoutMs)
    socket.once('error', (e) => {
      clearTimeout(timer)
      reject(new Error(`cannot reach ${to.addr}:${to.port}: ${e.message}`))
    })
    socket.once('connect', () => {
      clearTimeout(timer)
      socket.removeAllListeners('error')
      resolve(new FramedConn(socket))
    })
  })
}

/**
 * What a peer reads (MACs, summaries) is what its latest run said (an older version, started
 * again in a newer epoch, does not): a late packet of an earlier epoch changes nothing.
 */
function noteReader(readers: Map<string, number>, says: boolean, m: Message): void {
  const said = readers.get(m.from)
  if (says) {
    if (said !== undefined && said >= m.epoch) return
    if (said === undefined && readers.size >= MAX_MAC_READERS) readers.clear()
    readers.set(m.from, m.epoch)
  } else if (said !== undefined && m.epoch > said) readers.delete(m.from)
}
