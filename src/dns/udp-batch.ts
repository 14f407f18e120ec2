// The responder's UDP socket read and answered in batches by a thread of its own: Node 20's
// dgram makes one recvmsg and one sendmsg per question on the main event loop (the top of the
// responder's profile, bench/README.md), while recvmmsg/sendmmsg (libc, through koffi) move up
// to BATCH datagrams per call. The socket is made here, on the main thread, so it is in the
// namespace the agent runs in, like dgram's; the thread (udp-batch-worker.ts) only reads and
// writes it. It answers the questions whose answer the responder keeps (the same bytes but for
// the id while the name table is the same); every other question comes back here, to the
// responder, and the answers it keeps are handed to the thread. A change of the name table
// (invalidate) bumps a generation in shared memory that the thread reads before each answer,
// so no answer from an older table leaves once invalidate has returned.
import {constants} from 'node:os'
import {MessageChannel, type MessagePort, type Worker} from 'node:worker_threads'
import {startWorker} from '../util/worker.js'
import {
  AF_INET,
  MSG_DONTWAIT,
  SHUT_RD,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCKADDR_IN,
  SOL_SOCKET,
  SO_RCVTIMEO,
  errno,
  ipv4Number,
  ipv4String,
  libcUdp,
  sockaddrIn,
  type LibcUdp,
} from './libc-udp.js'
import type {DnsStats} from './stats.js'
import {
  COUNTER,
  COUNTER_CELLS,
  CTL_CELLS,
  CTL_GEN,
  CTL_STOP,
  type FromBatch,
  type KeptEntry,
  type WorkerData,
} from './udp-batch-shared.js'

export interface BatchedUdpOptions {
  addr: string
  port: number
  /** A question the thread had no kept answer for: answer it with `reply` (or not at all). */
  onMiss(query: Buffer, asker: string, reply: (out: Buffer) => void): void
  log(m: string): void
}

/** What the responder keeps of an answer (Responder.keptFor). */
export interface KeptAnswer {
  bytes: Buffer
  nxdomain: boolean
  truncated: boolean
}

/** The socket's read timeout: how long the thread may take to see a stop if the shutdown did not wake it. */
const READ_TIMEOUT_US = 200_000

/** The errno's name, as Node's own errors say it (EADDRINUSE). */
function errnoName(e: number): string {
  for (const [name, n] of Object.entries(constants.errno)) if (n === e) return name
  return `errno ${e}`
}

export class BatchedUdp {
  private readonly ctl = new Int32Array(new SharedArrayBuffer(CTL_CELLS * 4))
  private readonly counters = new Float64Array(new SharedArrayBuffer(COUNTER_CELLS * 8))
  /** The thread's counters already added to the DnsStats (fold). */
  private readonly folded = new Float64Array(COUNTER_CELLS)
  private worker?: Worker
  /** Resolves when the current thread has ended. */
  private exited: Promise<void> = Promise.resolve()
  private entries?: MessagePort
  private stopping?: Promise<void>
  private closed = false

  private constructor(
    private readonly o: BatchedUdpOptions,
    private readonly c: LibcUdp,
    private readonly fd: number,
  ) {}

  /** The socket bound to addr:port and its thread running; throws (as dgram's bind) when it cannot be. */
  static async open(o: BatchedUdpOptions): Promise<BatchedUdp> {
    const {c} = libcUdp()
    const fd = c.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)
    if (fd < 0) throw new Error(`socket: ${errnoName(errno())}`)
    const tv = Buffer.alloc(16)
    tv.writeBigInt64LE(BigInt(Math.floor(READ_TIMEOUT_US / 1e6)), 0)
    tv.writeBigInt64LE(BigInt(READ_TIMEOUT_US % 1e6), 8)
    if (c.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv, tv.length) < 0 || c.bind(fd, sockaddrIn(o.addr, o.port), SOCKADDR_IN) < 0) {
      const e = errnoName(errno())
      c.close(fd)
      throw Object.assign(new Error(`bind ${e} ${o.addr}:${o.port}`), {code: e})
    }
    const b = new BatchedUdp(o, c, fd)
    try {
      await b.spawn()
    } catch (e) {
      c.close(fd) // the thread never read it
      throw e
    }
    return b
  }

  private spawn(): Promise<void> {
    const {port1, port2} = new MessageChannel()
    const data: WorkerData = {
      fd: this.fd,
      ctl: this.ctl.buffer as SharedArrayBuffer,
      counters: this.counters.buffer as SharedArrayBuffer,
      entries: port2,
    }
    const w = startWorker(import.meta.url, 'udp-batch-worker', {workerData: data, transferList: [port2]})
    this.worker = w
    this.entries = port1
    this.exited = new Promise((r) => w.once('exit', () => r()))
    w.on('message', (m: FromBatch) => {
      if ('error' in m) this.o.log(`dns: udp: ${m.error}`)
      else if ('ready' in m) return
      else for (const x of m.misses) this.miss(x.q, x.ip, x.port)
    })
    w.on('error', (e) => this.o.log(`dns: udp thread: ${e.message}`))
    let online = false
    const started = Date.now()
    w.on('exit', () => {
      port1.close()
      // A thread that ran and ended while the socket is still wanted (it failed): another takes
      // its place. One that never came up is not tried again (open() fails instead).
      if (!online || this.worker !== w || this.stopping) return
      // At most one a second, so a thread that keeps failing does not spin the main loop.
      const again = () => void (this.stopping ?? this.spawn().catch((e: Error) => this.o.log(`dns: udp thread: ${e.message}`)))
      if (Date.now() - started < 1000) setTimeout(again, 1000).unref()
      else again()
    })
    return new Promise((resolve, reject) => {
      w.once('message', () => ((online = true), resolve()))
      w.once('error', reject)
      w.once('exit', () => reject(new Error('the thread ended before it read the socket')))
    })
  }

  private miss(q: Uint8Array, ip: number, port: number): void {
    if (this.closed) return
    const query = Buffer.from(q.buffer, q.byteOffset, q.byteLength)
    const asker = ipv4String(ip)
    this.o.onMiss(query, asker, (out) => {
      // Never blocks the main loop: a full send buffer drops the answer, as a full queue would.
      if (!this.closed) this.c.sendto(this.fd, out, out.length, MSG_DONTWAIT, sockaddrIn(asker, port), SOCKADDR_IN)
    })
  }

  /** The responder keeps `kept` as the answer to `query` from `asker`: the thread answers it from now on. */
  keep(asker: string, query: Buffer, kept: KeptAnswer): void {
    const e: KeptEntry = {
      gen: Atomics.load(this.ctl, CTL_GEN),
      key: `${ipv4Number(asker)}|${query.toString('latin1', 2)}`,
      bytes: kept.bytes,
      nxdomain: kept.nxdomain,
      truncated: kept.truncated,
    }
    this.entries?.postMessage(e)
  }

  /** The name table changed: nothing kept before answers again. */
  invalidate(): void {
    Atomics.add(this.ctl, CTL_GEN, 1)
  }

  /** Adds what the thread counted since the last fold to `stats`. */
  fold(stats: DnsStats): void {
    for (const [name, i] of Object.entries(COUNTER) as [keyof typeof COUNTER, number][]) {
      const now = this.counters[i]!
      stats[name] += now - this.folded[i]!
      this.folded[i] = now
    }
  }

  /** The thread ended and the socket closed. */
  stop(): Promise<void> {
    return (this.stopping ??= (async () => {
      Atomics.store(this.ctl, CTL_STOP, 1)
      Atomics.notify(this.ctl, CTL_STOP)
      // Wakes a recvmmsg that waits (the read timeout would, later).
      this.c.shutdown(this.fd, SHUT_RD)
      await this.exited
      // Closed only once the thread is gone: a number closed under its read could be reused by another socket.
      this.closed = true
      this.c.close(this.fd)
    })())
  }
}
