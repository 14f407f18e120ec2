// The gossip UDP socket on a thread of its own (udp-thread-worker.ts), so that a SWIM ping is
// answered while the agent's event loop is held (starting hundreds of tasks held it 0.3-8 s in
// the lab, and a probe waits 120 ms): the thread opens and authenticates every datagram, answers
// pings for this node, and hands everything on to the transport here. It answers only while this
// thread's heartbeat is recent (loopStaleMs), so an agent whose main thread is stuck is still
// suspected and declared dead, and one that was killed has no thread either.
import type {Worker} from 'node:worker_threads'
import {startWorker} from '../util/worker.js'
import type {Keyring} from './keyring.js'
import type {FromThread, KeysUpdate, ToThread, UdpThreadData} from './udp-thread-shared.js'

/**
 * How old the main thread's heartbeat may be for the thread to answer a ping for it. A node is
 * declared dead about 1-1.5 s after its probes fail (probe interval 250 ms, suspicion 0.5-1 s at
 * 3 nodes: membership/config.ts), so an agent whose loop stops is declared dead ~6.5 s after.
 * 5 s covers the loop stalls of the lab's 1,000-task runs but for single ones of 5-8 s (mostly
 * 0.3-1 s; docs/status.md), and a held agent loses nothing others count on sooner: its data path
 * answers on its own (agentGraceMs keeps its tasks in the maps for 60 s), and placement waits
 * rescheduleDelayMs (10 s) after the death before it moves tasks.
 */
export const LOOP_STALE_MS = 5_000
/** How often the main thread beats (a timer: it beats only while its loop turns). */
export const HEARTBEAT_MS = 100

/** What the thread is given at its start, but the live keyring in place of its keys' copy. */
export type UdpThreadOptions = Omit<UdpThreadData, 'keys' | 'heartbeat'> & {
  keyring: Keyring
  /** Whatever the thread hands on (messages it accepted, datagrams it did not, send errors). */
  onFrom: (m: FromThread) => void
}

export function keysOf(ring: Keyring): KeysUpdate {
  return {t: 'keys', entries: ring.entries().map((e) => ({id: e.id, key: new Uint8Array(e.key)})), primary: ring.primary}
}

export class UdpThread {
  private readonly heartbeat = new BigInt64Array(new SharedArrayBuffer(8))
  private readonly beatTimer: NodeJS.Timeout
  private readonly unwatchKeys: () => void
  private worker: Worker | undefined
  /** Resolves when the current thread has ended (it may have before stop: a failed one). */
  private exited: Promise<void> = Promise.resolve()
  private stopping: Promise<void> | undefined
  /** Sender keys and this node's SWIM answer as last told, told again to a thread that replaces one that failed. */
  private readonly senders = new Map<string, string>()
  private self: {inc?: number; isig?: string} = {}

  private constructor(private readonly o: UdpThreadOptions) {
    this.beat()
    this.beatTimer = setInterval(() => this.beat(), HEARTBEAT_MS)
    // The heartbeat must never keep a stopping agent alive.
    this.beatTimer.unref()
    this.unwatchKeys = o.keyring.onChange(() => this.post(keysOf(o.keyring)))
  }

  /** The socket bound by its thread; throws (as dgram's bind) when it cannot be. */
  static async open(o: UdpThreadOptions): Promise<UdpThread> {
    const t = new UdpThread(o)
    try {
      await t.spawn()
    } catch (e) {
      clearInterval(t.beatTimer)
      t.unwatchKeys()
      // A thread whose socket could not bind ends here (the transport tries another port).
      await t.worker?.terminate()
      throw e
    }
    return t
  }

  private beat(): void {
    Atomics.store(this.heartbeat, 0, process.hrtime.bigint())
  }

  private spawn(): Promise<void> {
    const {keyring, onFrom: _onFrom, ...given} = this.o
    const data: UdpThreadData = {...given, keys: keysOf(keyring), heartbeat: this.heartbeat.buffer as SharedArrayBuffer}
    const w = startWorker(import.meta.url, 'udp-thread-worker', {workerData: data})
    this.worker = w
    this.exited = new Promise((r) => w.once('exit', () => r()))
    let bound = false
    const started = Date.now()
    return new Promise((resolve, reject) => {
      w.on('message', (m: FromThread) => {
        if (m.t === 'bound') {
          bound = true
          // What the thread it replaces was told.
          if (this.senders.size > 0) this.post({t: 'senders', set: [...this.senders], del: []})
          this.post({t: 'self', ...this.self})
          resolve()
        } else if (m.t === 'bind-error') reject(new Error(m.message))
        else this.o.onFrom(m)
      })
      w.on('error', (e) => reject(e))
      w.on('exit', () => {
        reject(new Error('the gossip UDP thread ended before it bound its socket'))
        // A thread that ran and ended while the socket is still wanted (it failed): another
        // takes its place, at most one a second.
        if (!bound || this.worker !== w || this.stopping) return
        const again = (): void => {
          if (!this.stopping) this.spawn().catch(() => setTimeout(again, 1000).unref())
        }
        if (Date.now() - started < 1000) setTimeout(again, 1000).unref()
        else again()
      })
    })
  }

  private post(m: ToThread, transfer?: ArrayBuffer[]): void {
    if (!this.stopping) this.worker?.postMessage(m, transfer)
  }

  /** A sealed packet out of the thread's socket (so from port 7946, as every answer goes back there). */
  send(packet: Buffer, addr: string, port: number): void {
    // A copy of its own, moved: a small Buffer is a view of a shared pool, which must not be moved.
    const u = new Uint8Array(packet)
    this.post({t: 'send', packet: u, addr, port}, [u.buffer as ArrayBuffer])
  }

  /** Node `id`'s certified key as the transport knows it now (undefined: none, or revoked). */
  setSender(id: string, key: string | undefined): void {
    if (this.senders.get(id) === key) return
    if (key === undefined) {
      this.senders.delete(id)
      this.post({t: 'senders', set: [], del: [id]})
    } else {
      this.senders.set(id, key)
      this.post({t: 'senders', set: [[id, key]], del: []})
    }
  }

  knows(id: string): boolean {
    return this.senders.has(id)
  }

  /** The senders the thread knows. */
  senderIds(): string[] {
    return [...this.senders.keys()]
  }

  /** What the thread answers a ping with: this node's incarnation and its signed `alive` (none: it answers nothing). */
  setSelf(inc: number | undefined, isig: string | undefined): void {
    this.self = {...(inc !== undefined ? {inc} : {}), ...(isig !== undefined ? {isig} : {})}
    this.post({t: 'self', ...this.self})
  }

  stop(): Promise<void> {
    return (this.stopping ??= (async () => {
      clearInterval(this.beatTimer)
      this.unwatchKeys()
      const w = this.worker
      if (!w) return
      w.postMessage({t: 'stop'} satisfies ToThread)
      const timer = setTimeout(() => void w.terminate(), 2000)
      await this.exited
      clearTimeout(timer)
    })())
  }
}
