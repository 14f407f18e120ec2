import {retransmitLimit} from '../membership/broadcast.js'
import type {Cancel, Clock} from '../membership/clock.js'
import type {Entry} from '../store/entry.js'

export type FanoutOptions<P> = {
  clock: Clock
  random: () => number
  /** The live peers (this node excluded): a round picks its targets among them. */
  peers: () => P[]
  /** Sends these entries to one peer (the caller packs them into messages). */
  send: (to: P, entries: Entry[]) => void
  /** Peers per round (SWIM's / memberlist's gossip nodes). */
  fanout?: number
  /** How long a new entry waits before the round that first sends it (changes close together go together). */
  firstDelayMs?: number
  /** Rounds follow each other at this interval while anything is queued. */
  intervalMs?: number
  /** Each entry is sent retransmitMult * ceil(log10(n + 1)) times in all, n the cluster's size. */
  retransmitMult?: number
  /** Bytes of entries sent to one peer in one round at most (a burst is spread over rounds beyond this). */
  maxBytesPerPeer?: number
  /** Awaited before each round sends (the store's entries on disk first); none in the simulation. */
  ready?: () => Promise<void>
}

type Rumour = {e: Entry; sent: number; n: number; bytes: number}

/**
 * Spreads store entries as an epidemic with a bounded cost, as memberlist
 * spreads its broadcasts: every round sends the queued entries to `fanout`
 * random live peers, each entry counted once per peer it goes to and dropped
 * after retransmitMult * ceil(log10(n + 1)) sends; a node that receives an
 * entry new to it queues it in turn. No node sends an entry to every other
 * (unless the cluster is no bigger than the fan-out, where one round is
 * everyone, as fast as sending to all), and each node's cost per entry is
 * bounded whatever the cluster's size. Push-pull fixes what the epidemic
 * misses. The least sent go first, the newest of those first.
 */
export class Fanout<P> {
  private readonly q = new Map<string, Rumour>()
  private readonly o: Required<Omit<FanoutOptions<P>, 'ready'>> & Pick<FanoutOptions<P>, 'ready'>
  private timer: {cancel: Cancel; at: number} | undefined
  private pushed = 0
  private busy = false
  private again = false
  private waiters: (() => void)[] = []
  private stopped = false
  /** Entry sends (one entry to one peer) and rounds, for stats and tests. */
  entriesSent = 0
  rounds = 0

  constructor(opts: FanoutOptions<P>) {
    this.o = {
      ...opts,
      fanout: opts.fanout ?? 3,
      firstDelayMs: opts.firstDelayMs ?? 50,
      intervalMs: opts.intervalMs ?? 200,
      retransmitMult: opts.retransmitMult ?? 4,
      maxBytesPerPeer: opts.maxBytesPerPeer ?? 256 * 1024,
    }
    for (const k of ['fanout', 'firstDelayMs', 'intervalMs', 'retransmitMult', 'maxBytesPerPeer'] as const) {
      const v = this.o[k]
      if (!Number.isInteger(v) || v < 1) throw new Error(`gossip ${k} must be a whole number >= 1, not ${String(v)}`)
    }
  }

  get size(): number {
    return this.q.size
  }

  /** Sends of one entry by one node, in all, in a cluster of n nodes. */
  static readonly limit = retransmitLimit

  /** Queues an entry (a newer version of a key replaces the older one: only the latest is worth spreading). */
  add(e: Entry): void {
    if (this.stopped) return
    this.q.delete(e.key)
    this.q.set(e.key, {e, sent: 0, n: ++this.pushed, bytes: Buffer.byteLength(JSON.stringify(e)) + 1})
    // Fresh news goes out within firstDelayMs, not at the next interval.
    this.schedule(this.o.firstDelayMs)
  }

  /**
   * One round now (what is queued goes to this round's peers); resolves when
   * sent. While a round waits for the disk, a call asks for another right after
   * it and resolves when that one is sent: what was queued before the call goes.
   */
  async round(): Promise<void> {
    if (this.timer) this.timer.cancel()
    this.timer = undefined
    if (this.busy) {
      this.again = true
      return new Promise((resolve) => this.waiters.push(resolve))
    }
    if (this.stopped || this.q.size === 0) return
    this.busy = true
    try {
      if (this.o.ready) await this.o.ready()
      if (!this.stopped) this.sendRound()
    } finally {
      this.busy = false
      if (this.again) {
        this.again = false
        const waiters = this.waiters.splice(0)
        void this.round().finally(() => waiters.forEach((w) => w()))
      } else if (this.q.size > 0) this.schedule(this.o.intervalMs)
    }
  }

  stop(): void {
    this.stopped = true
    this.timer?.cancel()
    this.timer = undefined
    this.q.clear()
    for (const w of this.waiters.splice(0)) w()
  }

  private schedule(ms: number): void {
    if (this.stopped) return
    const at = this.o.clock.now() + ms
    if (this.timer && this.timer.at <= at) return
    this.timer?.cancel()
    const cancel = this.o.clock.after(ms, () => {
      this.timer = undefined
      void this.round()
    })
    this.timer = {cancel, at}
  }

  private sendRound(): void {
    const peers = this.o.peers()
    // Nobody to tell: a node that joins later gets the state in its join answer and by push-pull.
    if (peers.length === 0) {
      this.q.clear()
      return
    }
    this.rounds++
    const limit = Fanout.limit(this.o.retransmitMult, peers.length + 1)
    for (const p of this.choose(peers)) {
      const items = [...this.q.values()].sort((a, b) => a.sent - b.sent || b.n - a.n)
      const out: Entry[] = []
      let bytes = 0
      for (const it of items) {
        if (out.length > 0 && bytes + it.bytes > this.o.maxBytesPerPeer) break
        out.push(it.e)
        bytes += it.bytes
        if (++it.sent >= limit) this.q.delete(it.e.key)
      }
      if (out.length === 0) break
      this.entriesSent += out.length
      this.o.send(p, out)
    }
  }

  /** fanout distinct peers at random (all of them when there are no more). */
  private choose(peers: P[]): P[] {
    const xs = [...peers]
    const k = Math.min(this.o.fanout, xs.length)
    for (let i = 0; i < k; i++) {
      const j = i + Math.floor(this.o.random() * (xs.length - i))
      ;[xs[i], xs[j]] = [xs[j]!, xs[i]!]
    }
    return xs.slice(0, k)
  }
}
