// A manager's requests on etcd, queued and sent by group commit and pipelining (issue 24).
// Requests of one manager are decided one after another (all reading the same state, they would
// pick the same next address and all but one lose; between managers, etcd decides). Those that
// queue are decided each over the writes of those before it and go as one transaction (group
// commit: runBatch); the next batch may go while earlier ones are in flight if it touches none
// of their keys (pipelining: Flight), and a batch is answered when it lands (until the copy
// shows it, later batches are decided over it: Overlaid). A batch that lost a race is decided
// again over the caught-up copy. Work that must go alone (the leader's placement pass, role
// changes) is queued too (solo) and runs in its turn, once nothing is in flight.
import {UserError, isUserError} from '../model/errors.js'
import type {Json} from '../store/json.js'
import type {Store} from '../store/store.js'
import {CATCH_UP_WAIT_MS, OWN_WRITE_WAIT_MS, type CacheSnapshot, type CachedKv, type EtcdCache} from './etcd-cache.js'
import type {EtcdIndex} from './etcd-index.js'
import {RequestView} from './etcd-request-view.js'
import {
  MAX_ATTEMPTS,
  MAX_TXN_OPS,
  TxnMemo,
  transaction,
  withLeft,
  type KvView,
  type Txn,
  type TxnResult,
} from './etcd-transaction.js'
import type {Manager} from './manager.js'

/** Most requests in one batch (a create of one replica is about 5 operations). */
const MAX_BATCH = 32
/**
 * Most batches of one manager in flight at once. Each in flight is one more transaction etcd
 * holds; a few hide the round trip without flooding it.
 */
const MAX_IN_FLIGHT = 4

/** A request waiting for its batch. */
type Req = {
  fn: (m: Manager) => unknown
  /** Refusals and answers that change nothing are given only over a copy caught up with etcd. */
  caughtUp: boolean
  /** Transactions of its lost so far. */
  attempts: number
  resolve: (v: unknown) => void
  reject: (e: unknown) => void
}
/** What the manager's queue holds: a request (batched with its neighbours) or work that goes alone. */
type Job = {req?: Req; solo?: () => Promise<void>}
/** A request as its batch decided it: its answer (or refusal), given once the batch lands. */
type Decided = {req: Req; view?: RequestView; result?: unknown; refusal?: unknown}

/**
 * A batch sent and not landed yet. The next batches are decided over the copy with its writes on
 * top (ops), and go beside it only if their transaction touches none of the keys it writes, and
 * writes none of the keys it compares: etcd may apply two transactions of one manager in either
 * order, and disjoint ones commute. So a later batch never rests on a compare that an earlier
 * one's landing (or failing) changes; what it took from the earlier one's writes is only what it
 * left alone (an address or a name already taken there), which stays right if that one fails.
 * One that would touch them waits until it lands, and is then decided over what etcd holds.
 */
type Flight = {
  /** Its records as they will be. */
  readonly ops: ReadonlyMap<string, Json | null>
  /** Its transaction (what it puts and deletes: see Overlaid). */
  readonly txn: Txn
  /** The revision it committed at, once landed (until the copy shows it, it is decided over as Overlaid). */
  rev?: number
  /** Every key its transaction compares or writes; the keys it writes. */
  readonly keys: ReadonlySet<string>
  readonly writes: ReadonlySet<string>
  /** Its requests write to the node's store once it lands: nothing is decided before (they would not see it). */
  readonly barrier: boolean
}

/** Gives a landed batch's answers (or refusals), in the order its requests were decided. */
function answer(decided: Decided[]): void {
  for (const d of decided) {
    if (d.refusal !== undefined) d.req.reject(d.refusal)
    else {
      d.view!.applySideEffects()
      d.req.resolve(d.result)
    }
  }
}

/** What the pipeline asks of its manager's backend (etcd-backend.ts). */
export type PipelineHost = {
  readonly cache: EtcdCache
  readonly index: EtcdIndex
  /** The node's gossip store (what a request reads of nodes and statuses). */
  readonly local: Store
  readonly selfId: string
  /** The copy as it is, or caught up with etcd now (caughtUp); etcd's failures in one line. */
  read(caughtUp: boolean): Promise<CacheSnapshot>
  /** The manager's logic over one request's view. */
  manager(view: RequestView): Manager
  /** Sends a request's transaction; etcd's failures in one line. */
  send(txn: Txn): Promise<TxnResult>
  /** A transaction held at revision rev: its records are copied to the node's store. */
  held(ops: ReadonlyMap<string, Json | null>, rev: number): void
  /** A transaction lost a race. */
  lost(): void
}

export class RequestPipeline {
  constructor(private readonly host: PipelineHost) {}

  /**
   * Queues a request: decided in its turn with those queued beside it, over the index, each over
   * the writes of those before it, and sent as one transaction (runBatch). Batches are pipelined
   * (up to maxInFlight in flight): the next batch is decided while earlier ones are in flight,
   * over the copy with their writes on top, and sent when it touches none of their keys (see
   * Flight). Answered once its batch lands.
   */
  request<T>(fn: (m: Manager) => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.enqueue({
        req: {fn, caughtUp: false, attempts: 0, resolve: resolve as (v: unknown) => void, reject},
      })
    })
  }

  /** Queues work that goes alone: it runs in its turn, once nothing is in flight. */
  solo<T>(run: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.enqueue({solo: () => run().then(resolve, reject)})
    })
  }

  /** Most requests one transaction carries (what fits is also bounded by etcd's limit: MAX_TXN_OPS). */
  maxBatch = MAX_BATCH
  /** Most batches in flight at once (1: each batch waits for the one before it to land). */
  maxInFlight = MAX_IN_FLIGHT
  /** Transactions sent for requests (one per batch), for the tests and the bench. */
  batches = 0
  /** Requests whose batch lost a race (counted once per loss), for the bench. */
  retriedRequests = 0
  /** Batches sent while another of this manager's was in flight, and the most in flight at once (tests, bench). */
  pipelined = 0
  mostInFlight = 0
  /** Batches that waited for one in flight because they touched its keys (or could not be decided beside it). */
  blocked = 0
  /** Batches decided over a landed one the copy did not show yet (answered before the watch brought it back). */
  overUnseen = 0
  /** Time spent deciding batches (the manager's logic and the transaction's build), and waiting for their transactions, ms (bench). */
  decideMs = 0
  txnMs = 0
  private jobs: Job[] = []
  private pumping = false
  /** Most requests the next batch takes: halved from the second race lost in a row, back to maxBatch on a commit. */
  private batchLimit = MAX_BATCH
  private lostInARow = 0
  /** The batches sent and not landed yet, in the order they were sent. */
  private readonly flights = new Set<Flight>()
  /**
   * Batches landed (committed, answered) that the copy does not show yet: the next batches are
   * decided over them, and compare their keys at the revision they committed at (Overlaid), so a
   * request is answered without waiting for the watch to bring its commit back.
   */
  private readonly unseen = new Set<Flight>()
  private landing: (() => void)[] = []

  private enqueue(job: Job): void {
    this.jobs.push(job)
    if (!this.pumping) void this.pump()
  }

  /** Resolves when a batch in flight lands (answered, or its requests queued again). */
  private landed(): Promise<void> {
    return new Promise((r) => this.landing.push(r))
  }

  private async pump(): Promise<void> {
    this.pumping = true
    try {
      // Requests made in the same turn (Promise.all over creates) go in the first batch together.
      await Promise.resolve()
      while (this.jobs.length > 0) {
        const first = this.jobs[0]!
        // Alone, over a copy caught up with etcd (refusals, answers that change nothing), or after
        // a batch whose writes to the node's store wait for it: only once nothing is in flight.
        const wait =
          this.flights.size >= Math.max(1, this.maxInFlight) ||
          (this.flights.size > 0 && (first.solo !== undefined || first.req!.caughtUp || [...this.flights].some((f) => f.barrier)))
        if (wait) {
          await this.landed()
          continue
        }
        if (first.solo) {
          this.jobs.shift()
          await first.solo()
          continue
        }
        const batch: Req[] = []
        const limit = Math.max(1, Math.min(this.batchLimit, this.maxBatch))
        // Beside a batch in flight, a request that needs a caught-up copy waits for the next one.
        while (batch.length < limit && this.jobs[0]?.req && (this.flights.size === 0 || !this.jobs[0].req.caughtUp))
          batch.push(this.jobs.shift()!.req!)
        let r: {again: Req[]; blocked: boolean}
        try {
          r = await this.runBatch(batch)
        } catch (e) {
          // runBatch answers each request itself; this is a failure of its own (a bug): say it to all.
          for (const q of batch) q.reject(e)
          r = {again: [], blocked: false}
        }
        // Decided again before whatever came after them.
        this.jobs.unshift(...r.again.map((req) => ({req})))
        if (r.blocked && this.flights.size > 0) {
          this.blocked++
          await this.landed()
        }
      }
    } finally {
      this.pumping = false
    }
  }

  /**
   * Decides a batch of requests over the index, one after another, each seeing the writes of
   * those before it (and of the batches in flight), and sends what they wrote as one transaction:
   * the union of their compares and puts, against the copy they were decided over. Returns the
   * requests to decide again, and whether they wait for a batch in flight to land first.
   *
   * A request refused, or that changes nothing, is not in the transaction; its answer is given
   * only over a copy caught up with etcd (as EtcdBackend's attempt), and only once the batch has landed (it
   * may rest on a write of a request before it). A request that would take the transaction past
   * etcd's limit waits for the next batch; one whose transaction would touch a key of a batch in
   * flight waits until that one lands. When the transaction loses a race (some compare failed),
   * the copy catches up and the whole batch is decided again (a request whose name was taken
   * meanwhile is then refused, the others commit); from the second race lost in a row, each
   * halves the batch, down to one request at a time, so a conflict costs retries in proportion.
   */
  private async runBatch(batch: Req[]): Promise<{again: Req[]; blocked: boolean}> {
    const caughtUp = batch.some((r) => r.caughtUp)
    let snap: CacheSnapshot
    try {
      snap = await this.host.read(caughtUp)
    } catch (e) {
      for (const r of batch) r.reject(e)
      return {again: [], blocked: false}
    }
    const again: Req[] = []
    let blocked = false
    const decided: Decided[] = []
    const ops = new Map<string, Json | null>()
    const left = new Set<string>()
    let txn: Txn | undefined
    let barrier = false
    // The writes of the batches in flight (the copy shows them once they land), decided over as if
    // they had landed: the addresses and names they take are not taken again. And those of the
    // batches landed that the copy does not show yet, with the revision they hold in etcd.
    const flying = [...this.flights]
    const unseen = [...this.unseen].filter((f) => f.rev! > this.host.cache.revision).sort((a, b) => a.rev! - b.rev!)
    const pending = new Map<string, Json | null>()
    for (const f of [...unseen, ...flying]) for (const [k, v] of f.ops) pending.set(k, v)
    const kvs: KvView = unseen.length === 0 ? snap.kvs : new Overlaid(snap.kvs, unseen)
    if (unseen.length > 0) this.overUnseen++
    const decideStart = performance.now()
    // The transaction is built again after each request, over those before it: their JSON once.
    const memo = new TxnMemo()
    const clash = (t: Txn) =>
      flying.some((f) => t.compares.some((c) => f.writes.has(c[0])) || t.writes.some((w) => f.keys.has(w)))
    this.host.index.lend(snap.records, (ix, write, mark) => {
      for (const [k, v] of pending) write(k, v ?? undefined, snap.records.get(k))
      for (let i = 0; i < batch.length; i++) {
        const req = batch[i]!
        const undo = mark()
        const view = new RequestView(snap.records, this.host.local, this.host.selfId, ix, write, ops, pending)
        let result: unknown
        try {
          result = req.fn(this.host.manager(view))
        } catch (e) {
          undo()
          if (!isUserError(e as Error)) req.reject(e)
          else if (!caughtUp) again.push({...req, caughtUp: true})
          else decided.push({req, refusal: e})
          continue
        }
        // The rest of the batch would decide without this request's writes to the node's store
        // (they wait for the transaction): they go in the next one, once this one has landed.
        const last = () => {
          if (view.hasSideEffects) {
            again.push(...batch.slice(i + 1))
            barrier = true
          }
          return view.hasSideEffects
        }
        if (view.ops.size === 0 && view.left.size === 0) {
          if (caughtUp) decided.push({req, view, result})
          else again.push({...req, caughtUp: true})
          if (last()) break
          continue
        }
        const nextOps = new Map([...ops, ...view.ops])
        const nextLeft = new Set([...left, ...view.left])
        let t: Txn
        try {
          t = withLeft(transaction(kvs, nextOps, undefined, memo), kvs, nextLeft)
        } catch (e) {
          undo()
          // Decided over writes in flight the copy does not show yet: decided again once they land.
          if (flying.length > 0) {
            again.push(...batch.slice(i))
            blocked = true
            break
          }
          req.reject(e)
          continue
        }
        // Past etcd's limit: this request and the rest wait for the next batch (alone, one goes as it is).
        if (txn !== undefined && (t.compares.length > MAX_TXN_OPS || t.writes.length > MAX_TXN_OPS)) {
          undo()
          again.push(...batch.slice(i))
          break
        }
        // It would read or write what a batch in flight writes (or write what it reads): etcd may
        // apply the two in either order, so it waits until that one lands, and is decided again.
        if (clash(t)) {
          undo()
          again.push(...batch.slice(i))
          blocked = true
          break
        }
        for (const [k, v] of view.ops) ops.set(k, v)
        for (const id of view.left) left.add(id)
        txn = t
        decided.push({req, view, result})
        if (last()) break
      }
    })
    this.decideMs += performance.now() - decideStart
    if (txn === undefined) {
      answer(decided)
      return {again, blocked}
    }
    const written = decided.filter((d) => d.refusal === undefined && d.view!.ops.size + d.view!.left.size > 0).length
    const flight: Flight = {
      ops,
      txn,
      keys: new Set([...txn.compares.map((c) => c[0]), ...txn.writes]),
      writes: new Set(txn.writes),
      barrier,
    }
    if (this.flights.size > 0) this.pipelined++
    this.flights.add(flight)
    this.mostInFlight = Math.max(this.mostInFlight, this.flights.size)
    void this.fly(flight, txn, decided, written)
    return {again, blocked}
  }

  /**
   * Sends a decided batch and answers its requests once it lands; a batch that lost a race has its
   * requests queued again (first in line) before it counts as landed, so a request that waited on
   * its keys is decided after them.
   */
  private async fly(flight: Flight, txn: Txn, decided: Decided[], written: number): Promise<void> {
    let back: Req[] = []
    try {
      let res: TxnResult
      const sent = performance.now()
      try {
        res = await this.host.send(txn)
      } catch (e) {
        for (const d of decided) d.req.reject(e)
        return
      }
      this.txnMs += performance.now() - sent
      this.batches++
      if (res.succeeded) {
        // The next batches read this commit (read-your-writes): over the copy once it shows it,
        // over Overlaid until then.
        const rev = Number(res.header.revision)
        flight.rev = rev
        // The watch's events of this commit take its records as decided, not parsed again.
        this.host.cache.expect(rev, flight.txn.puts, flight.ops)
        this.unseen.add(flight)
        void this.host.cache.reach(rev, OWN_WRITE_WAIT_MS).then(() => this.unseen.delete(flight))
        this.batchLimit = this.maxBatch
        this.lostInARow = 0
        this.host.held(flight.ops, rev)
        answer(decided)
        return
      }
      this.host.lost()
      this.retriedRequests += written
      // Decided again whole over the caught-up copy, it mostly holds; races lost in a row halve it.
      if (++this.lostInARow >= 2) this.batchLimit = Math.max(1, Math.floor(decided.length / 2))
      // The copy first catches up with the revision etcd answered with (the winner's commit in it).
      await this.host.cache.reach(Number(res.header.revision), CATCH_UP_WAIT_MS)
      for (const d of decided) {
        const attempts = d.req.attempts + 1
        if (attempts >= MAX_ATTEMPTS)
          d.req.reject(new UserError(`the cluster state kept changing under this request (${MAX_ATTEMPTS} tries): try again`))
        else back.push({...d.req, attempts})
      }
      // Someone else committed first: decide again, after a short random pause so racers spread out.
      const worst = Math.max(0, ...back.map((r) => r.attempts))
      await new Promise((r) => setTimeout(r, Math.random() * 5 * worst))
    } catch (e) {
      // A failure of its own (a bug): said to every request of the batch.
      for (const d of decided) d.req.reject(e)
      back = []
    } finally {
      this.jobs.unshift(...back.map((req) => ({req})))
      this.flights.delete(flight)
      const waiting = this.landing
      this.landing = []
      for (const w of waiting) w()
      if (!this.pumping && this.jobs.length > 0) void this.pump()
    }
  }
}

/**
 * The copy's keys with the commits of batches landed on top that its watch has not brought yet
 * (oldest first): each key they put at the revision they committed at, each they deleted absent.
 * A transaction built over it compares what etcd holds after them, not what the copy holds before.
 */
class Overlaid implements KvView {
  private readonly top = new Map<string, CachedKv | undefined>()
  constructor(
    private readonly below: KvView,
    landed: readonly Flight[],
  ) {
    for (const f of landed) {
      for (const [k, v] of f.txn.puts) this.top.set(k, {value: v, mod: String(f.rev!)})
      for (const k of f.txn.deletes) this.top.set(k, undefined)
    }
  }

  get(key: string): CachedKv | undefined {
    return this.top.has(key) ? this.top.get(key) : this.below.get(key)
  }

  has(key: string): boolean {
    return this.top.has(key) ? this.top.get(key) !== undefined : this.below.has(key)
  }
}
