// The node's resolver for its tasks: UDP and TCP 53 on the gateway-bridge address, in the
// node's namespace. The asking task is known by its source address (its gateway-bridge address).
// UDP is read in batches by a thread of its own that answers what the responder keeps
// (udp-batch.ts); where that cannot run (no libc through koffi) one dgram socket does it all.
import {createSocket, type Socket} from 'node:dgram'
import {createServer, type Server, type Socket as TcpSocket} from 'node:net'
import {Forwarder, type Upstream} from './forwarder.js'
import type {NameTable} from './names.js'
import {Responder} from './responder.js'
import {DnsStats} from './stats.js'
import {BatchedUdp} from './udp-batch.js'

export interface DnsServerOptions {
  addr: string
  port?: number
  ttl: number
  upstreams: Upstream[]
  /** The cluster's names; when it would return another table, call DnsServer.invalidate(). */
  names: () => NameTable
  log: (m: string) => void
  /** 'dgram': one datagram per call on the main loop, as before the batch thread (bench/dns-loopback.ts compares). */
  udp?: 'batched' | 'dgram'
}

/** A TCP client gets this long between queries before it is closed (ms); and at most this many at once. */
const TCP_IDLE_MS = 10_000
const TCP_MAX = 256

export class DnsServer {
  private readonly counts = new DnsStats()
  private readonly forwarder: Forwarder
  private readonly responder: Responder
  private udp?: Socket
  private batch?: BatchedUdp
  /** The table the batch thread's answers were made from. */
  private batchTable?: NameTable
  private tcp?: Server
  private readonly conns = new Set<TcpSocket>()

  constructor(private readonly o: DnsServerOptions) {
    this.forwarder = new Forwarder({upstreams: o.upstreams, stats: this.counts})
    this.responder = new Responder({names: o.names, ttl: o.ttl, forwarder: this.forwarder, stats: this.counts})
  }

  /** What the responder counted, the batch thread's answers included. */
  get stats(): DnsStats {
    this.batch?.fold(this.counts)
    return this.counts
  }

  /** The name table changed (or will, at the next names()): no answer made from the old one leaves after this. */
  invalidate(): void {
    this.batch?.invalidate()
  }

  get ttl(): number {
    return this.o.ttl
  }

  get upstreams(): Upstream[] {
    return this.o.upstreams
  }

  async start(): Promise<void> {
    const port = this.o.port ?? 53
    await this.forwarder.start()
    if (this.o.udp !== 'dgram') this.batch = await this.openBatch(port)
    if (!this.batch) await this.startDgram(port)
    const tcp = createServer((c) => this.serveTcp(c))
    tcp.on('error', (e) => this.o.log(`dns: tcp: ${e.message}`))
    try {
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject)
        tcp.listen(port, this.o.addr, () => (tcp.off('error', reject), resolve()))
      })
    } catch (e) {
      await this.stop() // nothing half-made: the UDP side closes too
      throw e
    }
    this.tcp = tcp
  }

  /** The batch thread on the socket; undefined where it cannot run (the address taken: thrown, as dgram would). */
  private async openBatch(port: number): Promise<BatchedUdp | undefined> {
    try {
      return await BatchedUdp.open({
        addr: this.o.addr,
        port,
        onMiss: (q, asker, reply) => this.askBatched(q, asker, reply),
        log: this.o.log,
      })
    } catch (e) {
      if ((e as {code?: string}).code) throw e
      this.o.log(`dns: udp in batches unavailable (${(e as Error).message}): one datagram per call`)
      return undefined
    }
  }

  private async startDgram(port: number): Promise<void> {
    // Answers go to the address a question came from: an IP, so no name lookup (dgram's default
    // would ask dns.lookup and wait a tick for each answer).
    const udp = createSocket({type: 'udp4', lookup: (address, _opts, cb) => cb(null, address, 4)})
    udp.on('message', (msg, rinfo) => {
      const send = (out: Buffer | undefined) => out && udp.send(out, rinfo.port, rinfo.address)
      this.ask(msg, rinfo.address, false, send)
    })
    udp.on('error', (e) => this.o.log(`dns: udp: ${e.message}`))
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject)
      udp.bind(port, this.o.addr, () => (udp.off('error', reject), resolve()))
    })
    this.udp = udp
  }

  /** Stopped: the batch thread ended and every socket closed. */
  async stop(): Promise<void> {
    this.udp?.close()
    this.tcp?.close()
    for (const c of this.conns) c.destroy()
    this.forwarder.stop()
    await this.batch?.stop()
  }

  /** A question the batch thread did not answer: answered here, and its answer handed over when the responder keeps it. */
  private askBatched(query: Buffer, asker: string, reply: (out: Buffer) => void): void {
    const batch = this.batch!
    // A table that changed without invalidate() (a caller that forgot): the thread's answers are dropped too.
    const table = this.o.names()
    if (table !== this.batchTable) {
      if (this.batchTable) batch.invalidate()
      this.batchTable = table
    }
    this.ask(query, asker, false, (out) => out && reply(out))
    const kept = this.responder.keptFor(query, asker, false)
    if (kept) batch.keep(asker, query, kept)
  }

  /** The answer to `msg`, to `send` now when it is the cluster's, later when forwarded; never a throw. */
  private ask(msg: Buffer, asker: string, tcp: boolean, send: (out: Buffer | undefined) => void): void {
    try {
      const out = this.responder.answer(msg, asker, tcp)
      if (out instanceof Promise) out.then(send, () => this.stats.malformed++)
      else send(out)
    } catch {
      this.stats.malformed++
    }
  }

  private serveTcp(c: TcpSocket): void {
    if (this.conns.size >= TCP_MAX) {
      c.destroy()
      return
    }
    this.conns.add(c)
    c.on('close', () => this.conns.delete(c))
    c.on('error', () => undefined)
    c.setTimeout(TCP_IDLE_MS, () => c.destroy())
    const asker = (c.remoteAddress ?? '').replace(/^::ffff:/, '')
    let buf = Buffer.alloc(0)
    c.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d])
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0)
        if (buf.length < 2 + len) break
        const msg = buf.subarray(2, 2 + len)
        buf = buf.subarray(2 + len)
        this.ask(msg, asker, true, (out) => {
          if (!out || c.destroyed) return
          const l = Buffer.alloc(2)
          l.writeUInt16BE(out.length)
          c.write(Buffer.concat([l, out]))
        })
      }
      if (buf.length > 65537) c.destroy()
    })
  }
}
