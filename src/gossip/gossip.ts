import * as fs from 'node:fs'
import * as path from 'node:path'
import {writeFileDurably} from '../sys/durable-file.js'
import type {NodeRecord, NodeRole} from '../model/types.js'
import {compareVersions, signedText, type Entry, type Version} from '../store/entry.js'
import {isDesiredStateKey, keyOf, prefixOf} from '../store/keys.js'
import type {Digest, Store} from '../store/store.js'
import {differingBuckets, toggle} from '../store/summary.js'
import {realClock} from '../membership/clock.js'
import type {SwimMessage} from '../membership/messages.js'
import type {Body, Message} from './codec.js'
import {Authority} from './authority.js'
import {Fanout} from './fanout.js'
import type {FramedConn} from './frame.js'
import {signWith, verifyWith, type KeyPair} from './identity.js'
import {serveJoin, type JoinRequestNode} from './join.js'
import {Keyring, SEAL_OVERHEAD} from './keyring.js'
import {applyDirective, keyHash, verifyDirective, type KeyDirective, type KeyRotation} from './rotation.js'
import {emptyStats, type GossipStats} from './stats.js'
import type {JoinToken} from './token.js'
import type {ManagerSecrets} from './manager-secrets.js'
import {SIG_BYTES, Transport, UDP_MAX, type Addr, type Recipient, type SealedConn} from './transport.js'

export type Peer = {id: string; addr: string; port: number}

/**
 * A manager's side of the join handshake: gossip runs the protocol and hands the
 * authenticated request to `admit`, the manager's decision (src/manager/admission.ts).
 */
export type JoinAnswering = {
  identity: KeyPair
  tokens: () => {token: JoinToken; role: NodeRole}[]
  managerSecrets?: () => ManagerSecrets | undefined
  /** Records the joiner (or finds a member coming back); a refusal throws a one-line UserError. */
  admit: (node: JoinRequestNode, role: NodeRole, holdsKey: (pubKey: string) => boolean) => 'admitted' | 'rejoin'
}

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
  /** Random live peers each dissemination round sends the queued updates to (fanout.ts). */
  fanout?: number
  /** Dissemination rounds follow each other at this interval while updates are queued. */
  gossipIntervalMs?: number
  /** Each update is sent retransmitMult * ceil(log10(n + 1)) times by each node that spreads it. */
  retransmitMult?: number
  /**
   * Anti-entropy period: a TCP push-pull with one random peer. Up to 32 nodes as given;
   * beyond, scaled like memberlist's (one more period per doubling), so the cluster's push-pulls per second stay bounded.
   */
  pushPullIntervalMs?: number
  /** The cluster identity's public key: the root every writer's certificate must chain to. */
  identity: string
  /** This node's key pair: it signs every entry this node writes. */
  nodeKey: KeyPair
  /** Managers: what they need to serve join requests (the identity's private half signs challenges and certificates). */
  join?: JoinAnswering
  now?: () => number
  /** The keyring changed by a rotation directive: persist it (before this node seals with a new key). */
  onKeysChanged?: (ring: Keyring) => void
  /** Where the last boot epoch is kept (default: next to the store's state). */
  epochFile?: string
  /** false: push-pull by whole digests only, as a version before summaries (tests: an older agent). */
  summaries?: boolean
  /** How old the main thread's heartbeat may be for that thread to answer a ping (default LOOP_STALE_MS, udp-thread.ts). */
  loopStaleMs?: number
}

const EPOCH_FILE = 'gossip-epoch'

/**
 * This run's epoch: the wall clock, but always above the last run's, even if
 * the clock stepped back, so peers never take this run for an older one.
 */
function bootEpoch(file: string, now: () => number): number {
  let last = 0
  try {
    last = Number(fs.readFileSync(file, 'utf8').trim()) || 0
  } catch {
    // First start: no file yet.
  }
  const epoch = Math.max(now(), last + 1)
  // durable before any packet carries it: an epoch that went back after a crash would make peers drop ours as replays
  writeFileDurably(file, `${epoch}\n`)
  return epoch
}

/** Room for the message's own fields (type, header) around the entries, inside one datagram. */
const UPDATE_ENVELOPE = 128

/**
 * How far ahead of this node's Lamport clock an entry's clock may be. Honest
 * clocks move one per write, so no cluster is 2^32 writes ahead of a member
 * (a node that was away catches up by merging, each merge lifting its clock);
 * a bad peer that stamps 2^53 - 1 would otherwise end every clock's progress
 * at once, and now needs 2^21 refused-free jumps, each one an entry it signed.
 */
export const MAX_CLOCK_JUMP = 2 ** 32

/**
 * Dissemination and anti-entropy over the store:
 *  - every local change, and every entry received that is new here, is spread
 *    as an epidemic (fanout.ts): rounds to a few random live peers, a bounded
 *    number of sends per entry, the first within batchMs (UDP when it fits,
 *    TCP otherwise);
 *  - every pushPullIntervalMs (scaled up past 32 nodes), a digest exchange
 *    with one random peer fixes whatever was lost (a node that was down gets
 *    everything it missed);
 *  - a manager answers join requests.
 * Who is a peer is the caller's (the agent: node records not left and not
 * held down by the failure detector).
 */
export class Gossip {
  readonly stats: GossipStats = emptyStats()
  readonly keyring: Keyring
  /** Why the last entry was refused by the authority (for inspect and tests). */
  lastRefusal: string | undefined
  private readonly o: Required<
    Omit<
      GossipOptions,
      | 'join'
      | 'key'
      | 'epochFile'
      | 'nodeKey'
      | 'identity'
      | 'onKeysChanged'
      | 'fanout'
      | 'gossipIntervalMs'
      | 'retransmitMult'
      | 'summaries'
      | 'loopStaleMs'
    >
  > &
    Pick<GossipOptions, 'join' | 'onKeysChanged'>
  /** The sockets; `receive` is the UDP path without the socket (the fuzz test drives it). */
  readonly transport: Transport
  private readonly authority: Authority
  /** This run's boot epoch: above every earlier run's (membership starts its incarnation there). */
  readonly epoch: number
  /** Failure detection's messages (src/membership/): the sealed header's sender and the source address. */
  onSwim: ((m: SwimMessage, from: string, addr: Addr, acked: boolean) => void) | undefined
  /** The epidemic that spreads updates (bounded fan-out and retransmissions). */
  readonly fanout: Fanout<Peer>
  private pushPullTimer: NodeJS.Timeout | undefined
  /** While a flush runs: its round's sends, which it waits for. */
  private flushSends: Promise<unknown>[] | undefined
  private unsubscribe: (() => void) | undefined
  private pushPullBusy = false
  /** Push-pulls this node serves now (each holds a peer's digest). */
  private serving = 0
  private running = false
  private readonly inflight = new Set<Promise<unknown>>()
  private readonly privateKey: string
  /** The last key directive applied (its generation): an older one is acked but not applied again. */
  private keysGen = 0
  /** Managers: the rotation in progress, which receives the nodes' acks. */
  rotation: KeyRotation | undefined
  /**
   * Push-pull by summaries, with peers that answer them (true unless the options say no). false
   * behaves as a version from before them: whole digests only, and a summary request is dropped
   * (what an older agent does with a message it cannot read): the interop test's older agent.
   */
  private readonly summaries: boolean

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
      onKeysChanged: opts.onKeysChanged,
    }
    this.privateKey = opts.nodeKey.privateKey
    this.summaries = opts.summaries ?? true
    this.fanout = new Fanout<Peer>({
      clock: realClock,
      random: Math.random,
      peers: () => this.o.peers(),
      send: (p, entries) => {
        for (const msg of this.packUpdates(entries)) {
          const sent = this.transport.send(p, msg)
          this.flushSends?.push(sent)
          this.track(sent)
        }
      },
      fanout: opts.fanout,
      firstDelayMs: this.o.batchMs,
      intervalMs: opts.gossipIntervalMs,
      retransmitMult: opts.retransmitMult,
      // Nothing leaves this node before it is on disk here: a crash must not lose a version a peer holds.
      ready: () => opts.store.sync(),
    })
    this.authority = new Authority(opts.store, opts.identity)
    const privateKey = opts.nodeKey.privateKey
    opts.store.signer = (e) => signWith(privateKey, signedText(e))
    this.epoch = bootEpoch(opts.epochFile ?? path.join(opts.store.dir, EPOCH_FILE), this.o.now)
    this.transport = new Transport({
      nodeId: opts.nodeId,
      epoch: this.epoch,
      now: this.o.now,
      keyring: this.keyring,
      stats: this.stats,
      privateKey: opts.nodeKey.privateKey,
      senderKey: (id) => this.certifiedNode(id)?.pubKey,
      summaries: this.summaries,
      ...(opts.loopStaleMs !== undefined ? {loopStaleMs: opts.loopStaleMs} : {}),
      handlers: {
        onMessage: (m, from, acked) => this.onMessage(m, from, acked),
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
    // What init or join wrote before this node had a signer.
    this.o.store.signOwn()
    this.unsubscribe = this.o.store.onChange((k, _v, _o, origin, entry) => {
      if (origin === 'local') this.enqueue(entry)
      // The UDP thread authenticates senders by their certified keys: a node's new record or a
      // revocation reaches it at once (transport.ts sendersChanged).
      if (k.startsWith('node/')) this.transport.sendersChanged([k.slice('node/'.length)])
      else if (k.startsWith('revoked/')) this.transport.sendersChanged()
    })
    // Catch up at once rather than after a full interval (rejoin, restart).
    this.track(this.pushPull())
    this.schedulePushPull()
    return port
  }

  async stop(): Promise<void> {
    this.running = false
    this.unsubscribe?.()
    this.unsubscribe = undefined
    if (this.pushPullTimer) clearTimeout(this.pushPullTimer)
    this.pushPullTimer = undefined
    this.fanout.stop()
    await this.transport.stop()
    await Promise.allSettled([...this.inflight])
  }

  /**
   * One push-pull with the given peer, or a random one; resolves when done.
   * With a peer that said it answers by summaries (`sum: 1` in its headers), the
   * store summaries go first (src/store/summary.ts) and digests and entries follow
   * only for the buckets where they differ: nothing more when the stores agree.
   * With an older peer, or one not heard from yet, the whole digest, as before.
   * Chunked both ways (DIGEST_CHUNK keys or entries per frame), so no message
   * grows with the store: a store of any size is exchanged in frames of a
   * bounded size, and a peer can make us hold at most MAX_DIGEST_KEYS of its digest.
   */
  async pushPull(peer?: Peer): Promise<boolean> {
    if (!this.running || this.pushPullBusy) return false
    const target = peer ?? pick(this.o.peers())
    if (!target) return false
    this.pushPullBusy = true
    let conn: SealedConn | undefined
    try {
      conn = await this.transport.open(target, 5_000)
      let scope: number[] | undefined
      if (this.summaries && this.transport.readsSummaries(target.id)) {
        const sums = this.offeredSummary()
        conn.send({t: 'pushpull-sum', sums: sums.toString('base64')})
        const resp = await conn.next()
        if (resp?.t !== 'pushpull-sum') return false
        scope = differingBuckets(sums, Buffer.from(resp.sums, 'base64'))
        if (scope.length === 0) {
          this.stats.pushPulls++
          this.stats.pushPullsEqual++
          return true
        }
      }
      const mine = chunks(Object.entries(this.offeredDigest(scope)))
      const floor = this.floorField()
      mine.forEach((c, i) => conn!.send({t: 'pushpull-req', digest: digestOf(c), last: i === mine.length - 1, ...floor}))
      const theirs = new DigestHeld()
      const theirFloor = {floor: 0, efloor: 0}
      let from = ''
      for (;;) {
        const resp = await conn.next()
        if (!resp || resp.t !== 'pushpull-resp') return false
        this.merge(resp.entries)
        if (!theirs.add(resp.digest)) {
          this.stats.digestOverflows++
          return false
        }
        raise(theirFloor, resp)
        from = resp.from
        if (resp.last !== false) break
      }
      this.forgetDeleted(from, theirFloor, theirs.digest, scope)
      await this.o.store.sync()
      for (const c of chunks(this.offered(theirs.digest, scope))) conn.send({t: 'updates', entries: c})
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

  /** One failure-detection message, sealed like every other, best effort. */
  sendSwim(to: Addr, m: SwimMessage, id?: string): void {
    if (this.running) this.track(this.transport.send({addr: to.addr, port: to.port, id}, {t: 'swim', swim: m}))
  }

  /** What the UDP thread answers SWIM pings for this node with (Membership's SwimNet.answerWith). */
  swimAnswer(self: {inc: number; isig?: string} | undefined): void {
    this.transport.swimSelf(self?.inc, self?.isig)
  }

  /** Signs a membership rumour this node vouches for (src/membership/: its own `alive`, its accusations). */
  signRumour(text: string): string {
    return signWith(this.privateKey, text)
  }

  /** Whether a membership rumour is signed by the certified key of node `id`. */
  verifyRumour(id: string, text: string, sig: string): boolean {
    const rec = this.certifiedNode(id)
    return rec?.pubKey !== undefined && verifyWith(rec.pubKey, text, sig)
  }

  /** Runs a dissemination round now instead of at the end of the batch window; resolves once it is sent. */
  async flush(): Promise<void> {
    if (!this.running) return
    const sends: Promise<unknown>[] = []
    this.flushSends = sends
    try {
      await this.fanout.round()
    } finally {
      this.flushSends = undefined
    }
    await Promise.allSettled(sends)
  }

  /** The push-pull period for a cluster of n nodes: memberlist's scaling, one more period per doubling past 32. */
  static pushPullInterval(base: number, n: number): number {
    return n <= PUSH_PULL_SCALE_FROM ? base : base * (1 + Math.ceil(Math.log2(n) - Math.log2(PUSH_PULL_SCALE_FROM)))
  }

  private schedulePushPull(): void {
    if (!this.running) return
    const ms = Gossip.pushPullInterval(this.o.pushPullIntervalMs, this.o.peers().length + 1)
    this.pushPullTimer = setTimeout(() => {
      this.track(this.pushPull())
      this.schedulePushPull()
    }, ms)
  }

  private enqueue(e: Entry): void {
    this.fanout.add(e)
  }

  /** Greedy packing into datagram-sized messages; a lone big entry goes alone (by TCP). */
  private packUpdates(entries: Entry[]): Body[] {
    const budget = UDP_MAX - SEAL_OVERHEAD - SIG_BYTES - UPDATE_ENVELOPE - this.o.nodeId.length
    const out: Body[] = []
    let batch: Entry[] = []
    let size = 0
    for (const e of entries) {
      const n = Buffer.byteLength(JSON.stringify(e)) + 1
      if (batch.length > 0 && size + n > budget) {
        out.push({t: 'updates', entries: batch})
        batch = []
        size = 0
      }
      batch.push(e)
      size += n
    }
    if (batch.length > 0) out.push({t: 'updates', entries: batch})
    return out
  }

  private onMessage(m: Message, from: Addr, acked?: boolean): void {
    switch (m.t) {
      case 'updates':
        // What is new here is spread on: the epidemic, not the writer, reaches everyone.
        for (const e of this.merge(m.entries)) this.fanout.add(e)
        return
      case 'ping':
        this.track(this.transport.send({...from, id: m.from}, {t: 'ack', n: m.n}))
        return
      case 'swim':
        this.onSwim?.(m.swim, m.from, from, acked === true)
        return
      case 'keys':
        this.onKeys(m.keys, {...from, id: m.from})
        return
      case 'keys-ack': {
        const rec = this.certifiedNode(m.by)
        if (rec?.pubKey && verifyWith(rec.pubKey, ackText(m.gen, m.by, m.id, m.hash), m.sig))
          this.rotation?.onAck(m.by, m.gen, m.id, m.hash)
        else this.stats.unauthorised++
        return
      }
      default:
        // ack (until SWIM probes use it) and stray stream messages: nothing to do.
        return
    }
  }

  private async servePushPull(first: Message, conn: SealedConn): Promise<void> {
    // At most MAX_SERVED_PUSHPULLS digests held for peers at once: the bound per exchange times this is what peers can make us hold.
    if (this.serving >= MAX_SERVED_PUSHPULLS) {
      this.stats.pushPullsRefused++
      conn.close()
      return
    }
    this.serving++
    try {
      let req: Message | undefined = first
      let scope: number[] | undefined
      if (first.t === 'pushpull-sum' && this.summaries) {
        const sums = this.offeredSummary()
        conn.send({t: 'pushpull-sum', sums: sums.toString('base64')})
        // The requester computes the same buckets from the same two summaries: it sends their digest next, or closes.
        scope = differingBuckets(sums, Buffer.from(first.sums, 'base64'))
        if (scope.length === 0) return
        req = await conn.next()
      }
      if (req?.t !== 'pushpull-req') return
      const theirs = new DigestHeld()
      const theirFloor = {floor: 0, efloor: 0}
      for (let m: Message | undefined = req; ;) {
        if (m?.t !== 'pushpull-req') return
        if (!theirs.add(m.digest)) {
          this.stats.digestOverflows++
          return
        }
        raise(theirFloor, m)
        if (m.last !== false) break
        m = await conn.next()
      }
      this.forgetDeleted(first.from, theirFloor, theirs.digest, scope)
      await this.o.store.sync()
      const digest = chunks(Object.entries(this.offeredDigest(scope)))
      const entries = chunks(this.offered(theirs.digest, scope))
      const n = Math.max(digest.length, entries.length)
      const floor = this.floorField()
      for (let i = 0; i < n; i++)
        conn.send({
          t: 'pushpull-resp',
          digest: digestOf(digest[i] ?? []),
          entries: entries[i] ?? [],
          last: i === n - 1,
          ...floor,
        })
      let merged = false
      for (let back = await conn.next(); back?.t === 'updates'; back = await conn.next()) {
        this.merge(back.entries)
        merged = true
      }
      if (merged) this.stats.pushPulls++
    } finally {
      this.serving--
      conn.close()
    }
  }

  /** A node that became a manager (or stopped being one) starts (or stops) answering joins. */
  setJoin(join: GossipOptions['join']): void {
    this.o.join = join
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
      ...(join.managerSecrets ? {managerSecrets: join.managerSecrets} : {}),
      clusterKey: () => ({key: this.keyring.primaryKey(), keyId: this.keyring.primary}),
      admit: async (node, role, holdsKey) => {
        // Who gets in is the manager's decision (src/manager/admission.ts); this layer carries the request.
        if (join.admit(node, role, holdsKey) === 'rejoin') this.stats.rejoins++
        // The answer carries the joiner's record: it is on disk here first.
        await this.o.store.sync()
        return this.o.store.all().filter((e) => this.o.store.isDurable(e))
      },
    })
    if (ok) this.stats.joinsAccepted++
    else this.stats.joinsRefused++
  }

  /**
   * Merges what a peer sent, entry by entry: each one must be within
   * MAX_CLOCK_JUMP of our clock and pass the authority (signed by a writer
   * allowed to write its key); the others are dropped and counted. Node
   * records go first, so a new node's record vouches for its entries in the
   * same message. What passes is merged in one durable write (two when the
   * message carries revocations, which go first).
   */
  private merge(entries: Entry[]): Entry[] {
    // Revocations first, merged before the rest is judged (each is judged by its manager's record, and
    // then judges what follows); then node records, so a new node's record vouches for its entries.
    const revocations = entries.filter((e) => e.key.startsWith('revoked/'))
    const rest = entries.filter((e) => !e.key.startsWith('revoked/'))
    const batch = new Map<string, NodeRecord>()
    const first = revocations.length > 0 ? this.mergeNow(this.judge(revocations, batch)) : []
    const ordered = [...rest.filter((e) => e.key.startsWith('node/')), ...rest.filter((e) => !e.key.startsWith('node/'))]
    const replace = new Set<string>()
    return [...first, ...this.mergeNow(this.judge(ordered, batch, replace), replace)]
  }

  /** The entries that may be merged; `replace` gets the keys whose held entry they replace whatever its version. */
  private judge(entries: Entry[], batch: Map<string, NodeRecord>, replace?: Set<string>): Entry[] {
    const limit = this.o.store.clock + MAX_CLOCK_JUMP
    const ok: Entry[] = []
    for (const e of entries) {
      if (e.version.clock > limit) {
        this.stats.clockJumps++
        continue
      }
      const cur = this.o.store.entry(e.key)
      // Already held (or older): nothing to judge, nothing to merge; unless what is held stands on a revoked certificate.
      const older = cur !== undefined && compareVersions(e.version, cur.version) <= 0
      if (older && (!replace || e.value === null || !this.authority.superseded(cur))) continue
      const why = this.authority.refusal(e, batch)
      if (why) {
        this.stats.unauthorised++
        this.lastRefusal = why
        continue
      }
      if (older) replace!.add(e.key)
      if (e.key.startsWith('node/') && e.value !== null) batch.set((e.value as NodeRecord).id, e.value as NodeRecord)
      ok.push(e)
    }
    return ok
  }

  private mergeNow(ok: Entry[], replace?: ReadonlySet<string>): Entry[] {
    if (ok.length === 0) return []
    try {
      const changed = this.o.store.merge(ok, replace)
      this.stats.merged += changed.length
      return changed
    } catch {
      // A failed disk write: the entries are not acknowledged, push-pull brings them again.
      this.stats.storeErrors++
      return []
    }
  }

  /** Sends a key directive to one node, by id (rotation.ts resends it until acked). */
  sendKeys(peerId: string, d: KeyDirective): void {
    const n = this.o.store.get<NodeRecord>(keyOf('node', peerId))
    if (n && this.running) this.track(this.transport.send({addr: n.addr, port: n.gossipPort, id: n.id}, {t: 'keys', keys: d}))
  }

  /**
   * A key directive: believed only when signed by a certified manager; applied
   * (and persisted before the ack, so a restart keeps the keys it acked) and
   * acked with this node's signature, so the manager knows who holds the key.
   */
  private onKeys(d: KeyDirective, from: Recipient): void {
    const by = this.certifiedNode(d.by)
    if (!by?.pubKey || by.role !== 'manager' || !verifyDirective(d, by.pubKey)) {
      this.stats.unauthorised++
      this.lastRefusal = `key directive not signed by a certified manager (${d.by})`
      return
    }
    if (d.gen > this.keysGen) {
      const r = applyDirective(this.keyring, d)
      if (r.refused) {
        this.stats.unauthorised++
        this.lastRefusal = `key directive refused: ${r.refused}`
        return
      }
      this.keysGen = d.gen
      if (r.changed) {
        this.o.onKeysChanged?.(this.keyring)
        this.stats.keyChanges++
      }
    }
    // The bytes held under the directive's key id (an older directive's, or another manager's, may differ).
    const id = d.install?.id ?? -1
    const hash = d.install ? keyHash(this.keyring.key(d.install.id)) : ''
    const ack = {
      t: 'keys-ack' as const,
      gen: d.gen,
      by: this.o.nodeId,
      id,
      hash,
      sig: signWith(this.privateKey, ackText(d.gen, this.o.nodeId, id, hash)),
    }
    this.track(this.transport.send(from, ack))
  }

  /** A node's record, when its certificate verifies and is not revoked: whose packets, rumours and acks are believed. */
  private certifiedNode(id: string): NodeRecord | undefined {
    const r = this.authority.certified(this.o.store.get(keyOf('node', id)), id)
    return r && !this.authority.revoked(r.cert) ? r : undefined
  }

  /** Node records held on a revoked certificate (Authority.superseded): not offered, so a peer sends its valid one. */
  private superseded(): Set<string> {
    const out = new Set<string>()
    // The node records only (the store keeps its keys by kind): no walk of the whole store, three times every push-pull.
    for (const e of this.o.store.list(prefixOf('node'))) if (this.authority.superseded(e)) out.add(e.key)
    return out
  }

  private floorField(): {floor?: number; efloor?: number} {
    const f = this.o.store.deletionFloor
    const e = this.o.store.revisionFloor
    return {...(f > 0 ? {floor: f} : {}), ...(e > 0 ? {efloor: e} : {})}
  }

  /**
   * A manager's whole digest and deletion floor: desired state held here at or below its
   * floor that it holds in no form was deleted and its tombstone reaped while this node was
   * away (Store.deletionFloor): this node forgets it too, rather than keep a deleted
   * service (and run its tasks) that no one else will take back. Believed from a certified
   * manager only (the header's sender is signed): a worker's claim would wipe desired state.
   * scope: their digest covers these summary buckets only; in every other bucket both hold
   * the same keys (the summaries agreed), so nothing there is gone.
   */
  private forgetDeleted(from: string, floors: {floor: number; efloor: number}, theirs: Digest, scope?: number[]): void {
    const {floor, efloor} = floors
    if ((floor <= 0 && efloor <= 0) || this.certifiedNode(from)?.role !== 'manager') return
    const gone: string[] = []
    for (const e of scope ? this.o.store.inBuckets(scope) : this.o.store.all()) {
      if (e.value === null || !isDesiredStateKey(e.key)) continue
      // A numbered entry by its revision (Store.revisionFloor), others by clock.
      if (e.version.erev !== undefined ? e.version.erev > efloor : e.version.clock > floor) continue
      if (!Object.hasOwn(theirs, e.key)) gone.push(e.key)
    }
    if (gone.length === 0) return
    try {
      this.stats.forgotten += this.o.store.forget(gone)
    } catch {
      this.stats.storeErrors++
    }
  }

  /** The store's summary without what is not offered (superseded node records), as the offered digest is. */
  private offeredSummary(): Buffer {
    const sums = this.o.store.summary()
    for (const k of this.superseded()) toggle(sums, k, this.o.store.entry(k)!.version)
    return sums
  }

  /** scope: the digest of these summary buckets only. */
  private offeredDigest(scope?: number[]): Digest {
    const d = scope ? this.o.store.digestIn(scope) : this.o.store.digest()
    for (const k of this.superseded()) delete d[k]
    return d
  }

  private offered(theirs: Digest, scope?: number[]): Entry[] {
    const gone = this.superseded()
    const out = this.o.store.since(theirs, scope)
    return gone.size === 0 ? out : out.filter((e) => !gone.has(e.key))
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

/** Cluster size up to which push-pull runs at its base interval (memberlist's pushPullScaleThreshold). */
const PUSH_PULL_SCALE_FROM = 32

/** Keys or entries per push-pull frame: a frame stays well under the codec's and the transport's caps. */
export const DIGEST_CHUNK = 10_000
/**
 * The most of its digest a push-pull peer may make us hold, in keys and in bytes of key text:
 * far above any store this design serves (100,000 entries is tested), far below what would
 * hurt the agent. Past either, the exchange is abandoned and counted (`digestOverflows`).
 */
export const MAX_DIGEST_KEYS = 1_000_000
export const MAX_DIGEST_BYTES = 64 * 1024 * 1024
/** Push-pulls served at once; more are refused and counted (`pushPullsRefused`): the peer tries again at its next round. */
export const MAX_SERVED_PUSHPULLS = 4

/** A peer's digest as it arrives in chunks, refusing to grow past MAX_DIGEST_KEYS or MAX_DIGEST_BYTES. */
class DigestHeld {
  readonly digest = Object.create(null) as Digest
  private keys = 0
  private bytes = 0

  /** false once the bound is passed (the caller drops the exchange). */
  add(chunk: Digest): boolean {
    for (const [k, v] of Object.entries(chunk)) {
      if (!(k in this.digest)) {
        this.keys++
        this.bytes += k.length
        if (this.keys > MAX_DIGEST_KEYS || this.bytes > MAX_DIGEST_BYTES) return false
      }
      this.digest[k] = v
    }
    return true
  }
}

function chunks<T>(xs: T[]): T[][] {
  const out: T[][] = []
  for (let i = 0; i < xs.length; i += DIGEST_CHUNK) out.push(xs.slice(i, i + DIGEST_CHUNK))
  return out.length > 0 ? out : [[]]
}

function digestOf(pairs: [string, Version][]): Digest {
  const d = Object.create(null) as Digest
  for (const [k, v] of pairs) d[k] = v
  return d
}

function ackText(gen: number, by: string, id: number, hash: string): string {
  return JSON.stringify(['swarmnet keys ack 3', gen, by, id, hash])
}

/** The highest floors a peer's push-pull messages gave (each chunk carries them). */
function raise(held: {floor: number; efloor: number}, m: {floor?: number; efloor?: number}): void {
  held.floor = Math.max(held.floor, m.floor ?? 0)
  held.efloor = Math.max(held.efloor, m.efloor ?? 0)
}

function pick<T>(xs: T[]): T | undefined {
  return xs.length === 0 ? undefined : xs[Math.floor(Math.random() * xs.length)]
}
