import {UserError} from '../model/errors.js'
import type {NodeRecord, NodeRole} from '../model/types.js'
import type {Entry} from '../store/entry.js'
import {keyOf, prefixOf} from '../store/keys.js'
import type {Store} from '../store/store.js'
import type {Message} from './codec.js'
import type {FramedConn} from './frame.js'
import {serveJoin, type JoinRequestNode} from './join.js'
import {Keyring, SEAL_OVERHEAD} from './keyring.js'
import {emptyStats, type GossipStats} from './stats.js'
import type {JoinToken} from './token.js'
import {Transport, UDP_MAX, type Addr, type SealedConn} from './transport.js'

export type Peer = {id: string; addr: string; port: number}

export type GossipOptions = {
  store: Store
  nodeId: string
  bindAddr: string
  /** 7946 in production; 0 picks a free port (tests). */
  port: number
  /** The cluster key, or a keyring holding it (for rotation). */
  key: Buffer | Keyring
  /** Whom to talk to; by default the ready nodes of the store, minus this one. */
  peers?: () => Peer[]
  /** How long local changes are gathered before they are sent. */
  batchMs?: number
  /** Anti-entropy period: a TCP push-pull with one random peer. */
  pushPullIntervalMs?: number
  /** Managers: what they need to serve join requests. */
  join?: {
    identity: string
    tokens: () => {token: JoinToken; role: NodeRole}[]
  }
  now?: () => number
}

/** Room for the message's own fields around the entries, inside one datagram. */
const UPDATE_ENVELOPE = 64

/**
 * Dissemination and anti-entropy over the store:
 *  - every local change goes to every live peer within batchMs (UDP when it
 *    fits, TCP otherwise);
 *  - every pushPullIntervalMs, a digest exchange with one random peer fixes
 *    whatever was lost (a node that was down gets everything it missed);
 *  - a manager answers join requests.
 * Failure detection (SWIM probes) is not here yet: every node record in state
 * 'ready' is a peer, and sends to a dead one are simply counted as errors.
 */
export class Gossip {
  readonly stats: GossipStats = emptyStats()
  readonly keyring: Keyring
  private readonly o: Required<Omit<GossipOptions, 'join' | 'key'>> & Pick<GossipOptions, 'join'>
  private readonly transport: Transport
  private pending = new Map<string, Entry>()
  private batchTimer: NodeJS.Timeout | undefined
  private pushPullTimer: NodeJS.Timeout | undefined
  private unsubscribe: (() => void) | undefined
  private pushPullBusy = false
  private running = false
  private readonly inflight = new Set<Promise<unknown>>()

  constructor(opts: GossipOptions) {
    this.keyring = opts.key instanceof Keyring ? opts.key : new Keyring(opts.key)
    this.o = {
      store: opts.store,
      nodeId: opts.nodeId,
      bindAddr: opts.bindAddr,
      port: opts.port,
      peers: opts.peers ?? (() => this.storePeers()),
      batchMs: opts.batchMs ?? 50,
      pushPullIntervalMs: opts.pushPullIntervalMs ?? 1000,
      join: opts.join,
      now: opts.now ?? Date.now,
    }
    this.transport = new Transport({
      keyring: this.keyring,
      stats: this.stats,
      handlers: {
        onMessage: (m, from) => this.onMessage(m, from),
        onStream: (m, conn) => this.track(this.servePushPull(m, conn)),
        onJoin: (conn, first) => this.track(this.serveJoin(conn, first)),
      },
    })
  }

  /** The bound port (useful when started with port 0). */
  get port(): number {
    return this.transport.port
  }

  async start(): Promise<number> {
    const port = await this.transport.start(this.o.bindAddr, this.o.port)
    this.running = true
    this.unsubscribe = this.o.store.onChange((_k, _v, _o, origin, entry) => {
      if (origin === 'local') this.enqueue(entry)
    })
    // Catch up at once rather than after a full interval (rejoin, restart).
    this.track(this.pushPull())
    this.pushPullTimer = setInterval(() => this.track(this.pushPull()), this.o.pushPullIntervalMs)
    return port
  }

  async stop(): Promise<void> {
    this.running = false
    this.unsubscribe?.()
    this.unsubscribe = undefined
    if (this.batchTimer) clearTimeout(this.batchTimer)
    if (this.pushPullTimer) clearInterval(this.pushPullTimer)
    this.batchTimer = undefined
    this.pushPullTimer = undefined
    this.pending.clear()
    await this.transport.stop()
    await Promise.allSettled([...this.inflight])
  }

  /** One push-pull with the given peer, or a random one; resolves when done. */
  async pushPull(peer?: Peer): Promise<boolean> {
    if (!this.running || this.pushPullBusy) return false
    const target = peer ?? pick(this.o.peers())
    if (!target) return false
    this.pushPullBusy = true
    let conn: SealedConn | undefined
    try {
      conn = await this.transport.open(target, 5_000)
      conn.send({t: 'pushpull-req', from: this.o.nodeId, digest: this.o.store.digest()})
      const resp = await conn.next()
      if (!resp || resp.t !== 'pushpull-resp') return false
      this.merge(resp.entries)
      const mine = this.o.store.since(resp.digest)
      conn.send({t: 'updates', from: this.o.nodeId, entries: mine})
      this.stats.pushPulls++
      return true
    } catch {
      this.stats.sendErrors++
      return false
    } finally {
      conn?.close()
      this.pushPullBusy = false
    }
  }

  /** Sends what is queued now instead of at the end of the batch window. */
  async flush(): Promise<void> {
    if (this.batchTimer) clearTimeout(this.batchTimer)
    this.batchTimer = undefined
    const entries = [...this.pending.values()]
    this.pending.clear()
    if (entries.length === 0 || !this.running) return
    const peers = this.o.peers()
    const sends: Promise<void>[] = []
    for (const msg of this.packUpdates(entries)) {
      for (const p of peers) sends.push(this.transport.send(p, msg))
    }
    await Promise.all(sends)
  }

  private enqueue(e: Entry): void {
    this.pending.set(e.key, e)
    this.batchTimer ??= setTimeout(() => this.track(this.flush()), this.o.batchMs)
  }

  /** Greedy packing into datagram-sized messages; a lone big entry goes alone (by TCP). */
  private packUpdates(entries: Entry[]): Message[] {
    const budget = UDP_MAX - SEAL_OVERHEAD - UPDATE_ENVELOPE - this.o.nodeId.length
    const out: Message[] = []
    let batch: Entry[] = []
    let size = 0
    for (const e of entries) {
      const n = Buffer.byteLength(JSON.stringify(e)) + 1
      if (batch.length > 0 && size + n > budget) {
        out.push({t: 'updates', from: this.o.nodeId, entries: batch})
        batch = []
        size = 0
      }
      batch.push(e)
      size += n
    }
    if (batch.length > 0) out.push({t: 'updates', from: this.o.nodeId, entries: batch})
    return out
  }

  private onMessage(m: Message, from: Addr): void {
    switch (m.t) {
      case 'updates':
        this.merge(m.entries)
        return
      case 'ping':
        this.track(this.transport.send(from, {t: 'ack', from: this.o.nodeId, seq: m.seq}))
        return
      default:
        // ack (until SWIM probes use it) and stray stream messages: nothing to do.
        return
    }
  }

  private async servePushPull(first: Message, conn: SealedConn): Promise<void> {
    try {
      if (first.t !== 'pushpull-req') return
      conn.send({
        t: 'pushpull-resp',
        from: this.o.nodeId,
        digest: this.o.store.digest(),
        entries: this.o.store.since(first.digest),
      })
      const back = await conn.next()
      if (back?.t === 'updates') {
        this.merge(back.entries)
        this.stats.pushPulls++
      }
    } finally {
      conn.close()
    }
  }

  private async serveJoin(conn: FramedConn, first: Buffer): Promise<void> {
    const join = this.o.join
    if (!join) {
      conn.destroy()
      return
    }
    const ok = await serveJoin(conn, first, {
      identity: join.identity,
      tokens: join.tokens,
      clusterKey: () => ({key: this.keyring.primaryKey(), keyId: this.keyring.primary}),
      admit: (node, role) => this.admit(node, role),
    })
    if (ok) this.stats.joinsAccepted++
    else this.stats.joinsRefused++
  }

  /** Records the joiner (a rejoin keeps its first joinedAt) and hands out everything. */
  private admit(node: JoinRequestNode, role: NodeRole): Entry[] {
    if (node.id === this.o.nodeId) throw new UserError(`node id ${node.id} is already in use`)
    const key = keyOf('node', node.id)
    const prev = this.o.store.get<NodeRecord>(key)
    const rec: NodeRecord = {
      id: node.id,
      name: node.name,
      addr: node.addr,
      gossipPort: node.gossipPort,
      mtu: node.mtu,
      role,
      state: 'ready',
      joinedAt: prev?.joinedAt ?? this.o.now(),
    }
    this.o.store.put(key, rec)
    return this.o.store.all()
  }

  private merge(entries: Entry[]): void {
    try {
      this.stats.merged += this.o.store.merge(entries).length
    } catch {
      // A failed disk write: the entries are not acknowledged, push-pull brings them again.
      this.stats.storeErrors++
    }
  }

  private storePeers(): Peer[] {
    const out: Peer[] = []
    for (const n of this.o.store.values<NodeRecord>(prefixOf('node'))) {
      if (n.id !== this.o.nodeId && n.state === 'ready') out.push({id: n.id, addr: n.addr, port: n.gossipPort})
    }
    return out
  }

  private track(p: Promise<unknown>): void {
    const q = p
      .catch(() => {
        this.stats.sendErrors++
      })
      .finally(() => this.inflight.delete(q))
    this.inflight.add(q)
  }
}

function pick<T>(xs: T[]): T | undefined {
  return xs.length === 0 ? undefined : xs[Math.floor(Math.random() * xs.length)]
}
