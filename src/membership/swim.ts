import {Awareness} from './awareness.js'
import {BroadcastQueue} from './broadcast.js'
import {realClock, type Cancel, type Clock} from './clock.js'
import {membershipConfig, type MembershipConfig} from './config.js'
import {rumourText, type SwimMessage, type Update} from './messages.js'
import type {Liveness, Member, RosterEntry} from './state.js'
import {Suspicion, suspicionMinMs} from './suspicion.js'

export type Addr = {addr: string; port: number}

/** How messages leave: the sealed UDP transport in the agent, a simulated network in tests. */
export interface SwimNet {
  /** id: the member at `to` (the sealed transport authenticates the message with the pair's key). */
  send(to: Addr, m: SwimMessage, id: string): void
  /**
   * What pings for this node are answered with where they are answered off the event loop (the
   * agent's gossip UDP thread): this node's incarnation and its signed `alive` at it, told at the
   * start and after every refutation; undefined when stopped (nothing is answered then).
   */
  answerWith?(self: {inc: number; isig?: string} | undefined): void
}

export type MembershipOptions = {
  self: {id: string; addr: string; port: number}
  /** This run's first incarnation: the boot epoch, above that of any earlier run. */
  incarnation: number
  net: SwimNet
  clock?: Clock
  /** Uniform in [0, 1): seeded in tests and the simulation. */
  random?: () => number
  config?: Partial<MembershipConfig>
  /** Signs what this node vouches for (its own `alive`, its accusations) with its node key. Absent: unsigned (the simulation). */
  sign?: (text: string) => string
  /**
   * Checks a rumour's signature by a member's certified key. Given, a rumour is believed only
   * signed: `alive` by the member itself, `suspect` and `dead` by their accuser (`by`), so no one
   * raises another's incarnation nor speaks for accusers that said nothing.
   */
  verify?: (nodeId: string, text: string, sig: string) => boolean
  /** The highest incarnation believable now (default: the wall clock plus MAX_INCARNATION_AHEAD_MS). */
  maxIncarnation?: () => number
}

/**
 * Incarnations start at the boot epoch (wall-clock ms) and grow by one per refutation, so a
 * believable one is at most a day ahead of the clock. One further ahead is a lie: 2^53 - 1 would
 * make the refutation an unsafe integer, which every receiver drops as malformed, for good.
 */
export const MAX_INCARNATION_AHEAD_MS = 24 * 3600_000
/**
 * A node refutes rumours about itself up to this much further ahead than others believe them,
 * so it refutes whatever a peer whose clock is ahead of its own (within freshness' 2 minutes) took in.
 */
const SELF_SLACK_MS = 10 * 60_000
/** Bytes of piggybacked rumours per message: with their signatures, the message stays one datagram. */
const PIGGYBACK_BYTES = 800

export type MembershipStats = {
  probes: number
  failedProbes: number
  indirectProbes: number
  suspicions: number
  refutations: number
  deaths: number
  revivals: number
  sent: number
  received: number
  misdirected: number
  /** Rumours refused: their incarnation is beyond maxIncarnation. */
  implausible: number
  /** Rumours refused: not signed by the member (alive) or by their accuser (suspect, dead). */
  unsigned: number
}

export type ChangeListener = (m: Member, was: Liveness) => void

type Probe = {target: string; inc: number; seq: number; acked: boolean; nacks: number; expectedNacks: number; timers: Cancel[]}
type Waiter = {ack: () => void; nack?: () => void}

/**
 * SWIM failure detection with the Lifeguard refinements (as memberlist does
 * it), over whatever SwimNet it is given:
 *  - every probe interval, the next member of a shuffled round-robin gets
 *    direct pings (several, spread over the probe timeout, since one lost
 *    datagram is not a dead node), then pings through k helpers, who nack
 *    when they get no answer either;
 *  - a member no one reached is suspected; the suspicion spreads piggybacked
 *    on the probes, and the member refutes it with a higher incarnation;
 *  - an unrefuted suspicion becomes death after a timeout that shrinks as
 *    other members independently confirm it (suspicion.ts);
 *  - a node that itself misses acks and nacks slows its probing down instead
 *    of accusing others (awareness.ts);
 *  - members held dead are pinged now and then, so a node that returns or a
 *    partition that heals is seen again.
 * Who is a member at all comes from the store's node records (setRoster);
 * liveness stays here, in memory.
 */
export class Membership {
  readonly cfg: MembershipConfig
  readonly stats: MembershipStats = {
    probes: 0,
    failedProbes: 0,
    indirectProbes: 0,
    suspicions: 0,
    refutations: 0,
    deaths: 0,
    revivals: 0,
    sent: 0,
    received: 0,
    misdirected: 0,
    implausible: 0,
    unsigned: 0,
  }
  readonly awareness: Awareness
  private readonly self: {id: string; addr: string; port: number}
  private inc: number
  private readonly net: SwimNet
  private readonly clock: Clock
  private readonly random: () => number
  private readonly members = new Map<string, Member>()
  private readonly suspicions = new Map<string, Suspicion>()
  private readonly waiters = new Map<number, Waiter>()
  private readonly queue: BroadcastQueue
  private readonly listeners = new Set<ChangeListener>()
  private order: string[] = []
  private next = 0
  private seq = 0
  private current: Probe | undefined
  private size = 1
  private running = false
  private stopTick: Cancel | undefined
  private stopReconnect: Cancel | undefined
  private readonly sign: ((text: string) => string) | undefined
  private readonly verify: ((nodeId: string, text: string, sig: string) => boolean) | undefined
  private readonly maxIncarnation: () => number
  /** This node's own `alive` at its incarnation, signed (made again when the incarnation changes). */
  private aliveSelf: Update | undefined

  constructor(o: MembershipOptions) {
    this.cfg = membershipConfig(o.config)
    this.self = o.self
    this.inc = o.incarnation
    this.net = o.net
    this.clock = o.clock ?? realClock
    this.random = o.random ?? Math.random
    this.awareness = new Awareness(this.cfg.awarenessMax)
    this.queue = new BroadcastQueue(this.cfg.retransmitMult)
    this.sign = o.sign
    this.verify = o.verify
    this.maxIncarnation = o.maxIncarnation ?? (() => Date.now() + MAX_INCARNATION_AHEAD_MS)
  }

  get incarnation(): number {
    return this.inc
  }

  get selfId(): string {
    return this.self.id
  }

  /** Members other than this node, as this node sees them now. */
  list(): Member[] {
    return [...this.members.values()].map((m) => ({...m}))
  }

  get(id: string): Member | undefined {
    const m = this.members.get(id)
    return m && {...m}
  }

  /** Down means declared dead (or gone): its endpoints and tasks are no longer counted on. */
  isDown(id: string): boolean {
    const s = this.members.get(id)?.state
    return s === 'dead' || s === 'left'
  }

  /** How long the member has been down, 0 when it is not. */
  downFor(id: string): number {
    const m = this.members.get(id)
    return m && (m.state === 'dead' || m.state === 'left') ? Math.max(1, this.clock.now() - m.since) : 0
  }

  onChange(fn: ChangeListener): () => void {
    this.listeners.add(fn)
    return () => this.listeners.delete(fn)
  }

  /** Members are the store's node records: new ones start alive, 'left' is final, removed ones go. */
  setRoster(roster: RosterEntry[]): void {
    const ids = new Set<string>()
    for (const r of roster) {
      if (r.id === this.self.id) continue
      ids.add(r.id)
      const m = this.members.get(r.id)
      if (!m) {
        if (r.left) continue
        this.members.set(r.id, {
          id: r.id,
          addr: r.addr,
          port: r.port,
          state: 'alive',
          incarnation: 0,
          since: this.clock.now(),
          lastHeard: 0,
        })
        continue
      }
      m.addr = r.addr
      m.port = r.port
      if (r.left && m.state !== 'left') this.setState(m, 'left')
    }
    for (const id of [...this.members.keys()]) {
      if (ids.has(id)) continue
      this.suspicions.get(id)?.stop()
      this.suspicions.delete(id)
      this.members.delete(id)
    }
    this.recount()
  }

  start(): void {
    if (this.running) return
    this.running = true
    this.announce()
    this.stopTick = this.clock.after(Math.floor(this.random() * this.cfg.probeIntervalMs), () => this.tick())
    this.stopReconnect = this.clock.after(this.cfg.reconnectIntervalMs, () => this.reconnect())
  }

  stop(): void {
    this.running = false
    this.net.answerWith?.(undefined)
    this.stopTick?.()
    this.stopReconnect?.()
    if (this.current) for (const c of this.current.timers) c()
    this.current = undefined
    for (const s of this.suspicions.values()) s.stop()
    this.suspicions.clear()
    this.waiters.clear()
  }

  /**
   * A message from member `from` (the sealed header's sender), which arrived from `addr`.
   * acked: a ping already answered off the event loop (SwimNet.answerWith): taken in, not answered again.
   */
  receive(msg: SwimMessage, from: string, addr: Addr, acked = false): void {
    if (!this.running || from === this.self.id) return
    this.stats.received++
    const sender = this.members.get(from)
    if (sender) sender.lastHeard = this.clock.now()
    // The sender speaks for itself first: its own incarnation outranks rumours about it.
    this.apply({k: 'alive', id: from, inc: msg.inc, ...(msg.isig !== undefined ? {sig: msg.isig} : {})}, from)
    for (const u of msg.u) this.apply(u, from)
    switch (msg.op) {
      case 'ping':
        if (msg.target !== this.self.id) {
          this.stats.misdirected++
          return
        }
        if (acked) return
        this.send(addr, from, {op: 'ack', seq: msg.seq, inc: this.inc, u: this.piggyback(from)})
        return
      case 'ack':
        this.waiters.get(msg.seq)?.ack()
        return
      case 'nack':
        this.waiters.get(msg.seq)?.nack?.()
        return
      case 'ping-req':
        this.helpProbe(msg.seq, msg.target, {addr: msg.addr, port: msg.port}, from, addr)
        return
    }
  }

  private tick(): void {
    if (!this.running) return
    this.finishProbe()
    const target = this.nextTarget()
    if (target) this.probe(target)
    this.stopTick = this.clock.after(this.cfg.probeIntervalMs * this.awareness.multiplier, () => this.tick())
  }

  private nextTarget(): Member | undefined {
    for (let tries = 0; tries < 2; tries++) {
      while (this.next < this.order.length) {
        const m = this.members.get(this.order[this.next++] as string)
        if (m && (m.state === 'alive' || m.state === 'suspect')) return m
      }
      this.order = shuffle(
        [...this.members.values()].filter((m) => m.state === 'alive' || m.state === 'suspect').map((m) => m.id),
        this.random,
      )
      this.next = 0
    }
    return undefined
  }

  private probe(t: Member): void {
    this.stats.probes++
    const p: Probe = {target: t.id, inc: t.incarnation, seq: ++this.seq, acked: false, nacks: 0, expectedNacks: 0, timers: []}
    this.current = p
    this.waiters.set(p.seq, {
      ack: () => {
        p.acked = true
        for (const c of p.timers) c()
        p.timers = []
      },
      nack: () => p.nacks++,
    })
    const timeout = this.cfg.probeTimeoutMs * this.awareness.multiplier
    const ping = (): void => {
      if (!p.acked) this.send(t, t.id, {op: 'ping', seq: p.seq, inc: this.inc, target: t.id, u: this.piggyback(t.id)})
    }
    ping()
    for (let i = 1; i < this.cfg.pingAttempts; i++)
      p.timers.push(this.clock.after(Math.floor((timeout * i) / this.cfg.pingAttempts), ping))
    p.timers.push(
      this.clock.after(timeout, () => {
        // One more direct try alongside the helpers (memberlist's TCP fallback plays that part).
        ping()
        this.indirect(p, t)
      }),
    )
  }

  private indirect(p: Probe, t: Member): void {
    if (p.acked || !this.running) return
    const helpers = shuffle(
      [...this.members.values()].filter((m) => m.id !== t.id && m.state === 'alive'),
      this.random,
    ).slice(0, this.cfg.indirectChecks)
    p.expectedNacks = helpers.length
    if (helpers.length > 0) this.stats.indirectProbes++
    for (const h of helpers)
      this.send(h, h.id, {
        op: 'ping-req',
        seq: p.seq,
        inc: this.inc,
        target: t.id,
        addr: t.addr,
        port: t.port,
        u: this.piggyback(h.id),
      })
  }

  /** The end of a probe (at the next tick): a member no one reached becomes a suspect. */
  private finishProbe(): void {
    const p = this.current
    if (!p) return
    this.current = undefined
    this.waiters.delete(p.seq)
    for (const c of p.timers) c()
    if (p.acked) {
      this.awareness.apply(-1)
      return
    }
    this.stats.failedProbes++
    // Lifeguard: helpers that did not even nack point at our own network, not the target's.
    this.awareness.apply(p.expectedNacks > 0 ? p.expectedNacks - Math.min(p.nacks, p.expectedNacks) : 1)
    const m = this.members.get(p.target)
    if (m && m.state === 'alive' && m.incarnation === p.inc)
      this.apply(this.own({k: 'suspect', id: m.id, inc: m.incarnation, by: this.self.id}), this.self.id)
  }

  /** As a helper: ping target for the asker; ack if it answers, nack if not. */
  private helpProbe(askerSeq: number, target: string, to: Addr, asker: string, askerAddr: Addr): void {
    const seq = ++this.seq
    let done = false
    const timers: Cancel[] = []
    const finish = (reply: 'ack' | 'nack'): void => {
      if (done) return
      done = true
      this.waiters.delete(seq)
      for (const c of timers) c()
      this.send(askerAddr, asker, {op: reply, seq: askerSeq, inc: this.inc, u: this.piggyback(asker)})
    }
    this.waiters.set(seq, {ack: () => finish('ack')})
    const timeout = this.cfg.probeTimeoutMs * this.awareness.multiplier
    const ping = (): void => {
      if (!done) this.send(to, target, {op: 'ping', seq, inc: this.inc, target, u: this.piggyback(target)})
    }
    ping()
    for (let i = 1; i < this.cfg.pingAttempts; i++)
      timers.push(this.clock.after(Math.floor((timeout * i) / this.cfg.pingAttempts), ping))
    timers.push(this.clock.after(timeout, () => finish('nack')))
  }

  /** Now and then, one member held dead is pinged: if it is back, its answer revives it. */
  private reconnect(): void {
    if (!this.running) return
    const dead = [...this.members.values()].filter((m) => m.state === 'dead')
    const m = dead[Math.floor(this.random() * dead.length)]
    if (m) {
      const seq = ++this.seq
      // The ack's incarnation (raised by its refutation) is what revives it; nothing to wait for.
      this.send(m, m.id, {op: 'ping', seq, inc: this.inc, target: m.id, u: this.piggyback(m.id)})
    }
    this.stopReconnect = this.clock.after(this.cfg.reconnectIntervalMs, () => this.reconnect())
  }

  /**
   * Applies one rumour with the incarnation rules of state.ts. What changes
   * this node's view is spread further; a rumour about this node is refuted.
   */
  private apply(raw: Update, via: string): void {
    const self = raw.id === this.self.id
    if (raw.inc > this.maxIncarnation() + (self ? SELF_SLACK_MS : 0)) {
      this.stats.implausible++
      return
    }
    // Incarnation 0 is "never heard from it": a prober that knew no better suspected the member
    // as this node knows it. Taken as such, its rumour counts with everyone's rather than being
    // ignored by all who have heard from the member (they would never agree on its death).
    const known = self ? this.inc : (this.members.get(raw.id)?.incarnation ?? 0)
    const u = raw.k !== 'alive' && raw.inc === 0 ? {...raw, inc: known} : raw
    // What is passed on: the rumour as signed (a signature covers the incarnation as it was said).
    const relay = (fallback: Update): Update => (raw.sig !== undefined ? raw : fallback)
    if (self) {
      if (u.k === 'alive' || u.inc < this.inc || !this.trusted(raw)) return
      this.inc = u.inc + 1
      this.aliveSelf = undefined
      this.stats.refutations++
      this.awareness.apply(1)
      this.queue.push(this.selfAlive())
      this.announce()
      return
    }
    const m = this.members.get(u.id)
    // Who is a member is the store's to say; liveness of a node that left means nothing.
    if (!m || m.state === 'left') return
    switch (u.k) {
      case 'alive': {
        if (u.inc <= m.incarnation || !this.trusted(raw)) return
        const first = m.incarnation === 0
        m.incarnation = u.inc
        if (m.state !== 'alive') {
          if (m.state === 'dead') this.stats.revivals++
          this.setState(m, 'alive')
        } else if (first && via === u.id) return // a member telling its boot incarnation to each peer it probes is not news
        this.queue.push(relay({k: 'alive', id: u.id, inc: u.inc}))
        return
      }
      case 'suspect': {
        if (u.inc < m.incarnation || m.state === 'dead' || !this.trusted(raw)) return
        const by = u.by ?? via
        if (m.state === 'suspect') {
          if (this.suspicions.get(m.id)?.confirm(by)) this.queue.push(relay({k: 'suspect', id: m.id, inc: m.incarnation, by}))
          return
        }
        m.incarnation = u.inc
        this.stats.suspicions++
        this.setState(m, 'suspect')
        this.suspect(m, by)
        this.queue.push(relay({k: 'suspect', id: m.id, inc: u.inc, by}))
        return
      }
      case 'dead': {
        if (u.inc < m.incarnation || m.state === 'dead' || !this.trusted(raw)) return
        m.incarnation = u.inc
        this.die(m)
        this.queue.push(relay({k: 'dead', id: m.id, inc: u.inc, by: u.by ?? via}))
        return
      }
    }
  }

  /** Whether a rumour is signed by whom it must be (always, when no verifier was given). */
  private trusted(u: Update): boolean {
    if (!this.verify) return true
    const signer = u.k === 'alive' ? u.id : u.by
    if (signer === undefined || u.sig === undefined || !this.verify(signer, rumourText(u), u.sig)) {
      this.stats.unsigned++
      return false
    }
    return true
  }

  /** A rumour this node vouches for, signed. */
  private own(u: Update): Update {
    return this.sign ? {...u, sig: this.sign(rumourText(u))} : u
  }

  /** Tells the net what a ping is answered with off the loop: the incarnation and `alive` now. */
  private announce(): void {
    if (!this.net.answerWith) return
    const sig = this.selfAlive().sig
    this.net.answerWith({inc: this.inc, ...(sig !== undefined ? {isig: sig} : {})})
  }

  private selfAlive(): Update {
    if (this.aliveSelf?.inc !== this.inc) this.aliveSelf = this.own({k: 'alive', id: this.self.id, inc: this.inc})
    return this.aliveSelf
  }

  private suspect(m: Member, by: string): void {
    const n = this.clusterSize()
    let k = this.cfg.suspicionMult - 2
    // Too few members to ever gather k confirmations: the minimum, at once.
    if (n - 2 < k) k = 0
    const min = suspicionMinMs(this.cfg.suspicionMult, n, this.cfg.probeIntervalMs)
    const inc = m.incarnation
    this.suspicions.get(m.id)?.stop()
    this.suspicions.set(
      m.id,
      new Suspicion(this.clock, by, k, min, min * this.cfg.suspicionMaxMult, () => {
        this.suspicions.delete(m.id)
        if (m.state !== 'suspect' || m.incarnation !== inc) return
        this.die(m)
        this.queue.push(this.own({k: 'dead', id: m.id, inc, by: this.self.id}))
      }),
    )
  }

  private die(m: Member): void {
    this.stats.deaths++
    this.setState(m, 'dead')
  }

  private setState(m: Member, s: Liveness): void {
    const was = m.state
    if (was === s) return
    m.state = s
    m.since = this.clock.now()
    if (s === 'left' || was === 'left') this.recount()
    if (s !== 'suspect') {
      this.suspicions.get(m.id)?.stop()
      this.suspicions.delete(m.id)
    }
    for (const fn of this.listeners) {
      try {
        fn({...m}, was)
      } catch {
        // A listener's bug must not stop the protocol.
      }
    }
  }

  /** The queued rumours, plus what this node holds about the recipient if that is not 'alive' (so it can refute). */
  private piggyback(to: string): Update[] {
    const u = this.queue.take(this.cfg.maxPiggyback, this.clusterSize(), PIGGYBACK_BYTES)
    const m = this.members.get(to)
    if (m && (m.state === 'suspect' || m.state === 'dead') && !u.some((x) => x.id === to))
      u.push(this.own({k: m.state, id: to, inc: m.incarnation, by: this.self.id}))
    return u
  }

  /** This node and every member that has not left (kept up to date: it is read for every message). */
  private clusterSize(): number {
    return this.size
  }

  private recount(): void {
    let n = 1
    for (const m of this.members.values()) if (m.state !== 'left') n++
    this.size = n
  }

  private send(to: Addr, id: string, m: SwimMessage): void {
    this.stats.sent++
    const sig = m.inc === this.inc ? this.selfAlive().sig : undefined
    this.net.send({addr: to.addr, port: to.port}, sig !== undefined ? {...m, isig: sig} : m, id)
  }
}

function shuffle<T>(xs: T[], random: () => number): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    ;[xs[i], xs[j]] = [xs[j] as T, xs[i] as T]
  }
  return xs
}
