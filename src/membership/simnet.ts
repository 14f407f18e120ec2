import type {Cancel, Clock} from './clock.js'
import type {SwimMessage} from './messages.js'
import type {Addr, Membership, SwimNet} from './swim.js'

/**
 * A simulated clock and network, for the unit tests and the 1,000-node
 * benchmark: the real Membership code runs over it, with virtual time, a
 * latency, a loss rate and nodes that can be killed or cut off. Messages go
 * through JSON like on the wire, so their size is counted as sent.
 */
export class SimClock implements Clock {
  private t = 0
  private seq = 0
  /** Timers ordered by (time, insertion): a binary heap. */
  private heap: {at: number; seq: number; fn: () => void; live: boolean}[] = []

  now(): number {
    return this.t
  }

  after(ms: number, fn: () => void): Cancel {
    const item = {at: this.t + Math.max(0, ms), seq: this.seq++, fn, live: true}
    this.push(item)
    return () => {
      item.live = false
    }
  }

  /** Runs every timer due within ms, in order, moving time forward. */
  advance(ms: number): void {
    const end = this.t + ms
    for (;;) {
      const top = this.heap[0]
      if (!top || top.at > end) break
      this.pop()
      this.t = top.at
      if (top.live) top.fn()
    }
    this.t = end
  }

  private less(a: {at: number; seq: number}, b: {at: number; seq: number}): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq)
  }

  private push(x: (typeof this.heap)[number]): void {
    const h = this.heap
    h.push(x)
    let i = h.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (!this.less(h[i]!, h[p]!)) break
      ;[h[i], h[p]] = [h[p]!, h[i]!]
      i = p
    }
  }

  private pop(): void {
    const h = this.heap
    const last = h.pop()!
    if (h.length === 0) return
    h[0] = last
    let i = 0
    for (;;) {
      const l = 2 * i + 1
      const r = l + 1
      let m = i
      if (l < h.length && this.less(h[l]!, h[m]!)) m = l
      if (r < h.length && this.less(h[r]!, h[m]!)) m = r
      if (m === i) break
      ;[h[i], h[m]] = [h[m]!, h[i]!]
      i = m
    }
  }
}

/** Deterministic uniform numbers in [0, 1) (mulberry32): a failing run can be replayed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export type SimNetOptions = {clock: SimClock; random: () => number; latencyMs?: number; jitterMs?: number; loss?: number}

export class SimNetwork {
  loss: number
  /** When set, messages between a and b are lost when it says they are on different sides. */
  partition: ((a: Addr, b: Addr) => boolean) | undefined
  bytes = 0
  messages = 0
  dropped = 0
  private readonly nodes = new Map<string, {id: string; m: Membership}>()
  private readonly down = new Set<string>()
  private readonly deaf = new Set<string>()

  constructor(private readonly o: SimNetOptions) {
    this.loss = o.loss ?? 0
  }

  static addrOf(i: number): Addr {
    return {addr: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, port: 7946}
  }

  /** The SwimNet of the node at addr, whose id is id. */
  endpoint(id: string, addr: Addr): SwimNet {
    return {
      send: (to, msg) => this.deliver(id, addr, to, msg),
    }
  }

  attach(addr: Addr, id: string, m: Membership): void {
    this.nodes.set(key(addr), {id, m})
  }

  /** A killed or cut-off node: nothing in, nothing out. */
  setDown(addr: Addr, down: boolean): void {
    if (down) this.down.add(key(addr))
    else this.down.delete(key(addr))
  }

  /** A node that sends but hears nothing (its own receive path is broken or overloaded). */
  setDeaf(addr: Addr, deaf: boolean): void {
    if (deaf) this.deaf.add(key(addr))
    else this.deaf.delete(key(addr))
  }

  private deliver(fromId: string, from: Addr, to: Addr, msg: SwimMessage): void {
    const wire = JSON.stringify(msg)
    this.messages++
    this.bytes += wire.length + 60 // the sealed envelope and header around it
    if (
      this.down.has(key(from)) ||
      this.down.has(key(to)) ||
      this.deaf.has(key(to)) ||
      this.partition?.(from, to) ||
      this.o.random() < this.loss
    ) {
      this.dropped++
      return
    }
    const delay = (this.o.latencyMs ?? 1) + this.o.random() * (this.o.jitterMs ?? 0)
    this.o.clock.after(delay, () => {
      if (this.down.has(key(to))) return
      this.nodes.get(key(to))?.m.receive(JSON.parse(wire) as SwimMessage, fromId, from)
    })
  }
}

function key(a: Addr): string {
  return `${a.addr}:${a.port}`
}
