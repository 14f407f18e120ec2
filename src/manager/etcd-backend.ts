// Desired state in etcd: every manager may serve a request. One request is
// one run of the manager's own logic over the manager's copy of etcd (the
// request view over etcd-cache.ts: one read of the prefix, then a watch; its
// questions answered by the manager's one index, etcd-index.ts), then
// one transaction that writes what it decided and claims its allocations
// (etcd-keys.ts). The transaction holds only if nothing it relied on changed:
// each record it writes, each network its records name and each allocation it
// takes or frees is at the revision it read. Otherwise it is decided again once
// the copy has caught up, so racing managers never get the same address.
// Requests that queue on a manager are decided one after another and go as
// one transaction (group commit: runBatch); its next batch may go while earlier
// ones are in flight if it touches none of their keys (pipelining: Flight), and
// a batch is answered when it lands (until the copy shows it: Overlaid).
//
// The gossip store keeps carrying the state to every node, workers included
// (they never talk to etcd): a manager copies what it committed into its own
// store at once, and the leader publishes all of etcd into it (mirror()), so
// the nodes converge on etcd's state whichever manager wrote it, and whatever
// gossip held against it; entries carry the etcd revision (Version.rev).
import type {Etcd3, IOperation, Namespace} from 'etcd3'
import {UserError, isUserError} from '../model/errors.js'
import {NOBODY_DOWN, type MembershipView} from '../membership/view.js'
import type {Entry} from '../store/entry.js'
import type {Json} from '../store/json.js'
import type {Store} from '../store/store.js'
import type {NodeRecord, NodeRole} from '../model/types.js'
import {
  isDesiredKey,
  type DesiredBackend,
  type DesiredStore,
  type RoleBook,
  type RoleDecision,
  type WriteOptions,
} from './backend.js'
import {ALLOC, HOST_PORT, LEADER, NETWORK_GUARD, ROLES, ROLE_GUARD, STATE, allocationsOf, hostPortsOf} from './etcd-keys.js'
import {EtcdCache, type CachedKv} from './etcd-cache.js'
import {EtcdIndex, type Write} from './etcd-index.js'
import {Manager} from './manager.js'
import {applyRoleChange, rolesToPublish, type RolePublisher} from './roles.js'
import type {IndexSource, StateIndex} from '../store/state-index.js'

/** What one range read of the prefix found (or the copy holds): key (without the prefix) -> value and mod revision. */
type Snapshot = ReadonlyMap<string, CachedKv>

/** How long a commit waits for the copy to show it (then the copy is read again); a batch's answer does not wait for it. */
const OWN_WRITE_WAIT_MS = 2000
/**
 * How long a request waits for the copy to reach the revision etcd is at when it begins (then the
 * copy is read again: a revision made by writes outside the prefix never shows in its watch).
 */
const CATCH_UP_WAIT_MS = 200

const MAX_ATTEMPTS = 30

/**
 * etcd refuses a transaction with more comparisons, or more operations in a branch, than its
 * --max-txn-ops (128 by default): a batch stops below it.
 */
const MAX_TXN_OPS = 128
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

export type EtcdBackendOptions = {
  client: Etcd3
  prefix: string
  /** The node's gossip store: what the manager reads of nodes and statuses, and where committed state is copied. */
  local: Store
  selfId: string
  membership?: MembershipView
  /** Named in the one-line error when etcd cannot be reached. */
  endpoints: string[]
  /** Where in a subnet this manager searches for free addresses (a fraction); default: its own part, from its id. */
  addressStart?: number
  /** The leader's claim (see etcd-leader.ts): placement commits only while it holds. */
  leaderRevision?: () => string | undefined
  log?: (m: string) => void
  /**
   * For the tests of racing writes: awaited between a request's decision and its transaction, so
   * a barrier can release two managers' transactions at the same instant.
   */
  beforeCommit?: (what: 'request' | 'role') => Promise<void>
}

export class EtcdBackend implements DesiredBackend {
  readonly kind = 'etcd' as const
  readonly ns: Namespace
  /** Transactions that lost a race and were decided again (for the benchmark and info). */
  retries = 0
  commits = 0
  /** The copy of the prefix requests and mirror() read (started by the first of them). */
  readonly cache: EtcdCache

  /** The index requests decide over, kept from the copy's watch and the node's store (etcd-index.ts). */
  readonly index: EtcdIndex

  constructor(private readonly opts: EtcdBackendOptions) {
    this.ns = opts.client.namespace(opts.prefix)
    this.cache = new EtcdCache(this.ns, opts.log)
    this.index = new EtcdIndex(this.cache, opts.local)
  }

  /** Stops the copy's watch (before the client is closed). */
  close(): void {
    this.index.close()
    this.cache.close()
  }

  /** The node's gossip store this manager copies etcd's state into. */
  get local(): Store {
    return this.opts.local
  }

  /**
   * Requests of one manager are decided one after another (all reading the same state, they would
   * pick the same next address and all but one lose; between managers, etcd decides), and sent
   * by group commit: the requests queued when the manager turns to them are decided one after
   * another over the index, each over the writes of those before it, and sent as one transaction
   * (runBatch). Batches are pipelined (up to maxInFlight in flight): the next batch is decided
   * while earlier ones are in flight, over the copy with their writes on top, and sent when it
   * touches none of their keys (see Flight). The leader's placement pass and role changes go
   * alone, in their turn, once nothing is in flight.
   */
  write<T>(fn: (m: Manager) => T, wopts: WriteOptions = {}): Promise<T> {
    if (wopts.asLeader) return this.solo(() => this.attempt(fn, wopts))
    return new Promise<T>((resolve, reject) => {
      this.enqueue({
        req: {fn, caughtUp: false, attempts: 0, resolve: resolve as (v: unknown) => void, reject},
      })
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

  private solo<T>(run: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.enqueue({solo: () => run().then(resolve, reject)})
    })
  }

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
   * only over a copy caught up with etcd (as attempt's), and only once the batch has landed (it
   * may rest on a write of a request before it). A request that would take the transaction past
   * etcd's limit waits for the next batch; one whose transaction would touch a key of a batch in
   * flight waits until that one lands. When the transaction loses a race (some compare failed),
   * the copy catches up and the whole batch is decided again (a request whose name was taken
   * meanwhile is then refused, the others commit); from the second race lost in a row, each
   * halves the batch, down to one request at a time, so a conflict costs retries in proportion.
   */
  private async runBatch(batch: Req[]): Promise<{again: Req[]; blocked: boolean}> {
    const caughtUp = batch.some((r) => r.caughtUp)
    let snap: Awaited<ReturnType<EtcdCache['snapshot']>>
    try {
      snap = await this.etcd('read', () => (caughtUp ? this.current() : this.cache.snapshot()))
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
    const unseen = [...this.unseen].filter((f) => f.rev! > this.cache.revision).sort((a, b) => a.rev! - b.rev!)
    const pending = new Map<string, Json | null>()
    for (const f of [...unseen, ...flying]) for (const [k, v] of f.ops) pending.set(k, v)
    const kvs: KvView = unseen.length === 0 ? snap.kvs : new Overlaid(snap.kvs, unseen)
    if (unseen.length > 0) this.overUnseen++
    const clash = (t: Txn) =>
      flying.some((f) => t.compares.some((c) => f.writes.has(c[0])) || t.writes.some((w) => f.keys.has(w)))
    this.index.lend(snap.records, (ix, write, mark) => {
      for (const [k, v] of pending) write(k, v ?? undefined, snap.records.get(k))
      for (let i = 0; i < batch.length; i++) {
        const req = batch[i]!
        const undo = mark()
        const view = new RequestView(snap.records, this.opts.local, this.opts.selfId, ix, write, ops, pending)
        let result: unknown
        try {
          result = req.fn(
            new Manager(view, this.opts.selfId, this.opts.membership ?? NOBODY_DOWN, {
              addressStart: this.opts.addressStart ?? addressStart(this.opts.selfId),
            }),
          )
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
          t = withLeft(transaction(kvs, nextOps, undefined), kvs, nextLeft)
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
      let res: Awaited<ReturnType<typeof commit>>
      try {
        await this.opts.beforeCommit?.('request')
        res = await this.etcd('write', () => commit(this.ns, txn))
      } catch (e) {
        for (const d of decided) d.req.reject(e)
        return
      }
      this.batches++
      if (res.succeeded) {
        // The next batches read this commit (read-your-writes): over the copy once it shows it,
        // over Overlaid until then.
        const rev = Number(res.header.revision)
        flight.rev = rev
        this.unseen.add(flight)
        void this.cache.reach(rev, OWN_WRITE_WAIT_MS).then(() => this.unseen.delete(flight))
        this.commits++
        this.batchLimit = this.maxBatch
        this.lostInARow = 0
        this.copyLocal(flight.ops, rev)
        answer(decided)
        return
      }
      this.retries++
      this.retriedRequests += written
      // Decided again whole over the caught-up copy, it mostly holds; races lost in a row halve it.
      if (++this.lostInARow >= 2) this.batchLimit = Math.max(1, Math.floor(decided.length / 2))
      // The copy first catches up with the revision etcd answered with (the winner's commit in it).
      await this.cache.reach(Number(res.header.revision), CATCH_UP_WAIT_MS)
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

  private async attempt<T>(fn: (m: Manager) => T, wopts: WriteOptions): Promise<T> {
    // Decided first over the copy as it is, without asking etcd where it is (a round trip): a
    // copy behind etcd makes the transaction fail its compares and the request is decided again
    // once caught up, never a wrong write. A refusal, or an answer that changes nothing, is only
    // given over a copy caught up with etcd as it was when that attempt began (a service just
    // removed on another manager is gone, a network just created there is found).
    // The leader's placement pass mostly changes nothing: it catches up first rather than decide twice.
    let caughtUp = wopts.asLeader === true
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const snap = await this.etcd('read', () => (caughtUp ? this.current() : this.cache.snapshot()))
      let decided: {view: RequestView; result: T}
      try {
        // The manager's logic runs over the shared index, its writes on top until it returns.
        decided = this.index.lend(snap.records, (ix, write) => {
          const view = new RequestView(snap.records, this.opts.local, this.opts.selfId, ix, write)
          const result = fn(
            new Manager(view, this.opts.selfId, this.opts.membership ?? NOBODY_DOWN, {
              addressStart: this.opts.addressStart ?? addressStart(this.opts.selfId),
            }),
          )
          return {view, result}
        })
      } catch (e) {
        if (caughtUp || !isUserError(e as Error)) throw e
        caughtUp = true
        continue
      }
      const {view, result} = decided
      if (view.ops.size === 0 && view.left.size === 0) {
        if (!caughtUp) {
          caughtUp = true
          continue
        }
        view.applySideEffects()
        return result
      }
      let guard: string | undefined
      if (wopts.asLeader) {
        guard = this.opts.leaderRevision?.()
        if (guard === undefined) throw new UserError('this manager is no longer the leader: placement is left to the new one')
      }
      const ops = withLeft(transaction(snap.kvs, view.ops, guard), snap.kvs, view.left)
      await this.opts.beforeCommit?.('request')
      const res = await this.etcd('write', () => commit(this.ns, ops))
      if (res.succeeded) {
        // The next read sees this commit (read-your-writes).
        await this.cache.reach(Number(res.header.revision), OWN_WRITE_WAIT_MS)
        this.commits++
        this.copyLocal(view.ops, Number(res.header.revision))
        view.applySideEffects()
        return result
      }
      this.retries++
      if (wopts.asLeader && guard !== undefined && !(await this.stillLeader(guard)))
        throw new UserError('this manager is no longer the leader: placement is left to the new one')
      // The copy first catches up with the revision etcd answered with (the winner's commit in it).
      await this.cache.reach(Number(res.header.revision), CATCH_UP_WAIT_MS)
      // Someone else committed first: decide again, after a short random pause so racers spread out.
      await new Promise((r) => setTimeout(r, Math.random() * 5 * (attempt + 1)))
    }
    throw new UserError(`the cluster state kept changing under this request (${MAX_ATTEMPTS} tries): try again`)
  }

  /**
   * A role change as one transaction: decided over the roles in etcd (roles/), committed only if no
   * other role change came in between (guard/roles at the revision read), else decided again over
   * the roles as they are then. Two managers demoting each other: the second one decides again,
   * sees the first demotion and is refused (last manager, or no longer a manager itself).
   * The node's gossip record follows (decision.apply) once etcd holds the change.
   */
  changeRole<T>(decide: (roles: RoleBook) => RoleDecision<T>): Promise<T> {
    return this.solo(() => this.roleAttempt(decide))
  }

  private async roleAttempt<T>(decide: (roles: RoleBook) => RoleDecision<T>): Promise<T> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const snap = await this.etcd('read', () => this.current())
      const d = decide(rolesOf(snap.kvs))
      await this.opts.beforeCommit?.('role')
      const guard = snap.kvs.get(ROLE_GUARD)?.mod ?? 0
      const res = await this.etcd('write', () =>
        this.ns
          .if(ROLE_GUARD, 'Mod', '==', guard)
          .then(this.ns.put(ROLES + d.nodeId).value(d.role), this.ns.put(ROLE_GUARD).value(String(Date.now())))
          .commit(),
      )
      if (res.succeeded) {
        await this.cache.reach(Number(res.header.revision), OWN_WRITE_WAIT_MS)
        this.commits++
        return d.apply()
      }
      // Another role change came first: the next read (caught up with etcd) shows it.
      this.retries++
    }
    throw new UserError(`the roles kept changing under this request (${MAX_ATTEMPTS} tries): try again`)
  }

  /**
   * The leader's publication of etcd's desired state to gossip, from the copy at one revision:
   * every record whose gossip entry lacks or contradicts etcd is written again, with the etcd
   * revision in its version (Version.rev: replicas order by it, not by clock), every desired
   * record etcd no longer holds is deleted, and every role etcd holds (roles/) that a node's
   * record contradicts is published as its role change (with pub). Returns how many keys changed.
   *
   * A gossip entry newer than the copy (a commit another manager just copied to its store) is
   * left alone: the next pass reads a copy that holds it. Unless it claims a revision etcd has not
   * reached (forged, or left by a writer that lied): then it is replaced, with a revision above it.
   * A role is published only while no role change came after the copy (guard/roles unchanged).
   */
  async mirror(pub?: RolePublisher): Promise<{changed: number; problem?: string}> {
    const snap = await this.etcd('read', () => this.current())
    const local = this.opts.local
    const want = snap.records
    const stale = (key: string): {entry: Entry | undefined; rev: number} => {
      const entry = local.entry(key)
      return {entry, rev: entry?.version.rev ?? 0}
    }
    // Keys whose gossip entry differs from the copy: [key, the revision etcd holds it at (0: absent)].
    const differ: [string, number][] = []
    for (const [k, v] of want) {
      const {entry} = stale(k)
      if (entry?.value !== null && entry !== undefined && JSON.stringify(entry.value) === JSON.stringify(v)) continue
      differ.push([k, Number(snap.kvs.get(STATE + k)!.mod)])
    }
    for (const e of local.list('')) if (isDesiredKey(e.key) && !want.has(e.key)) differ.push([e.key, 0])
    let head = snap.revision
    if (differ.some(([k]) => stale(k).rev > snap.revision))
      head = Number((await this.etcd('read', () => this.ns.get(LEADER).exec())).header.revision)
    let changed = 0
    for (const [k, mod] of differ) {
      const {entry, rev} = stale(k)
      // Newer than the copy and within what etcd has reached: a commit the next pass will hold.
      if (rev > snap.revision && rev <= head) continue
      // The revision etcd holds the record at (for a deletion: the copy's), above any entry it replaces.
      const at = Math.max(mod === 0 ? snap.revision : mod, rev + 1)
      const v = want.get(k)
      if (v === undefined) {
        if (entry?.value !== null && local.delete(k, at)) changed++
      } else if (this.putLocal(k, v, at)) changed++
    }
    if (!pub) return {changed}
    const publish = () =>
      rolesToPublish(local.values<NodeRecord>('node/'), rolesOf(snap.kvs), leftOf(snap.kvs), this.opts.selfId, pub, Date.now())
    let {changes, problem} = publish()
    if (changes.length > 0) {
      const guard = snap.kvs.get(ROLE_GUARD)?.mod ?? '0'
      const now = (await this.etcd('read', () => this.ns.get(ROLE_GUARD).exec())).kvs[0]?.mod_revision ?? '0'
      // A role change committed since the copy: its manager is writing its record now; the next pass judges.
      if (now !== guard) return {changed, ...(problem ? {problem} : {})}
      // Decided again over the records as they are after the read (a node may have rewritten its own).
      ;({changes, problem} = publish())
      for (const ch of changes) {
        applyRoleChange(local, ch)
        const what = ch.record.state === 'left' ? 'removed' : `a ${ch.record.role}`
        this.opts.log?.(`etcd: node ${ch.record.name} is ${what} in etcd: its record published again`)
        changed++
      }
    }
    return problem === undefined ? {changed} : {changed, problem}
  }

  /**
   * Whether etcd still counts this manager as one (roles/<id> neither worker nor left), from the
   * copy. A leader it does not stands aside: its own record is for another leader to publish.
   */
  async countsAsManager(): Promise<boolean> {
    const role = (await this.cache.snapshot()).kvs.get(ROLES + this.opts.selfId)?.value
    return role !== 'worker' && role !== 'left'
  }

  /** The records in etcd, read now (for migrate-store's check and the tests). */
  async records(): Promise<Map<string, Json>> {
    const snap = await this.etcd('read', () => this.snapshot())
    const out = new Map<string, Json>()
    for (const [k, v] of snap) if (k.startsWith(STATE)) out.set(k.slice(STATE.length), JSON.parse(v.value) as Json)
    return out
  }

  /** The roles set by role changes, read now (for the tests). */
  async roles(): Promise<Map<string, NodeRole>> {
    return rolesOf(await this.etcd('read', () => this.snapshot()))
  }

  /** Every allocation key and the record holding it. */
  async allocations(): Promise<Map<string, string>> {
    const snap = await this.etcd('read', () => this.snapshot())
    const out = new Map<string, string>()
    for (const [k, v] of snap) if (k.startsWith(ALLOC)) out.set(k.slice(ALLOC.length), v.value)
    return out
  }

  /**
   * Writes records as they are (migration from the embedded store): all in one transaction,
   * with their allocations, and only into an empty prefix.
   */
  async importRecords(records: {key: string; value: Json}[]): Promise<void> {
    const snap = await this.etcd('read', () => this.snapshot())
    if ([...snap.keys()].some((k) => k.startsWith(STATE)))
      throw new UserError(`etcd already holds a cluster's state under ${this.opts.prefix}: nothing was changed`)
    const ops = transaction(snap, new Map(records.map((r) => [r.key, r.value])), undefined)
    if (records.length === 0) return
    const res = await this.etcd('write', () => commit(this.ns, ops))
    if (!res.succeeded) throw new UserError('etcd changed during the migration: nothing was changed, try again')
  }

  private async stillLeader(rev: string): Promise<boolean> {
    const r = await this.etcd('read', () => this.ns.get(LEADER).exec())
    return r.kvs[0]?.create_revision === rev
  }

  /**
   * The copy, caught up with etcd as it is now: a request sees every commit made before it began,
   * whichever manager made it (a network just created on another manager is there). One read of
   * one key tells the revision etcd is at; the watch brings the copy there.
   */
  private async current() {
    const r = await this.ns.get(LEADER).exec()
    await this.cache.reach(Number(r.header.revision), CATCH_UP_WAIT_MS)
    return this.cache.snapshot()
  }

  /** One range read of the whole prefix, now (not the copy). */
  private async snapshot(): Promise<Snapshot> {
    const r = await this.ns.getAll().prefix('').exec()
    const snap = new Map<string, CachedKv>()
    for (const kv of r.kvs) snap.set(kv.key.toString(), {value: kv.value.toString(), mod: kv.mod_revision})
    return snap
  }

  /** Read-your-writes on this node: what this manager committed is in its store before the answer goes. */
  private copyLocal(ops: ReadonlyMap<string, Json | null>, rev: number): void {
    // Every key of one transaction has its revision as mod revision: the version carries it.
    for (const [k, v] of ops) {
      if (v === null) this.opts.local.delete(k, rev)
      else if (JSON.stringify(this.opts.local.get(k)) !== JSON.stringify(v)) this.putLocal(k, v, rev)
    }
  }

  private putLocal(k: string, v: Json, rev: number): boolean {
    try {
      this.opts.local.put(k, v, rev)
      return true
    } catch (e) {
      // A record this version cannot store stays in etcd; the node's store keeps what it had.
      this.opts.log?.(`etcd: ${k} not copied to the gossip store: ${(e as Error).message}`)
      return false
    }
  }

  /** etcd's own failures become one line naming the endpoints; the request's own refusals pass through. */
  private async etcd<T>(what: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call()
    } catch (e) {
      if (isUserError(e as Error)) throw e
      const raw = ((e as Error).message ?? String(e)).split('\n')[0]!
      // etcd3 stops calling hosts that keep failing (its circuit breaker): say what that means.
      const msg = /circuit breaker/i.test(raw)
        ? 'no member answers (calls suspended after repeated failures)'
        : /ECONNREFUSED/.test(raw)
          ? 'no member answers (connection refused)'
          : /UNAVAILABLE|No connection established/.test(raw)
            ? 'no member answers'
            : /DEADLINE_EXCEEDED|deadline/i.test(raw)
              ? 'no answer in time'
              : raw
      throw new EtcdUnavailableError(`etcd at ${this.opts.endpoints.join(',')} cannot ${what} the cluster state: ${msg}`)
    }
  }
}

/**
 * Where this manager searches a subnet for free addresses: its own part, from its node id. Managers
 * that all took the lowest free address would all pick the same one, and all but one retry.
 */
export function addressStart(selfId: string): number {
  let h = 2166136261
  for (let i = 0; i < selfId.length; i++) h = Math.imul(h ^ selfId.charCodeAt(i), 16777619) >>> 0
  return (h % 1024) / 1024
}

/** The roles set in etcd by role changes (roles/<node id>). */
export function rolesOf(kvs: ReadonlyMap<string, CachedKv>): Map<string, NodeRole> {
  const out = new Map<string, NodeRole>()
  for (const [k, v] of kvs)
    if (k.startsWith(ROLES) && (v.value === 'manager' || v.value === 'worker')) out.set(k.slice(ROLES.length), v.value)
  return out
}

/** The nodes removed in etcd (roles/<node id> = left: final). */
export function leftOf(kvs: ReadonlyMap<string, CachedKv>): Set<string> {
  const out = new Set<string>()
  for (const [k, v] of kvs) if (k.startsWith(ROLES) && v.value === 'left') out.add(k.slice(ROLES.length))
  return out
}

/**
 * A request's transaction with the nodes it removes: roles/<id> = left, serialized with the role
 * changes by guard/roles (compared and bumped), so a removal and a promotion are taken in order.
 */
function withLeft(t: Txn, kvs: KvView, left: ReadonlySet<string>): Txn {
  if (left.size === 0) return t
  return txnOf(
    [...t.compares, [ROLE_GUARD, 'Mod', '==', kvs.get(ROLE_GUARD)?.mod ?? 0]],
    [...t.puts, ...[...left].map((id): [string, string] => [ROLES + id, 'left']), [ROLE_GUARD, String(Date.now())]],
    t.deletes,
  )
}

/** etcd could not be reached or answered with an error: the request changed nothing. */
export class EtcdUnavailableError extends UserError {}

type Compare = [string, 'Mod' | 'Create', '==', string | number]
/** A transaction: what it compares, what it puts and deletes (writes: the keys of both), and the operations that do it. */
type Txn = {
  compares: Compare[]
  puts: [string, string][]
  deletes: string[]
  writes: string[]
  then: (ns: Namespace) => IOperation[]
}

/** The reads a transaction is built from: the copy's keys, or the copy with landed commits on top (Overlaid). */
type KvView = Pick<ReadonlyMap<string, CachedKv>, 'get' | 'has'>

/** Builds a transaction from its compares, puts and deletes. */
function txnOf(compares: Compare[], puts: [string, string][], deletes: string[]): Txn {
  return {
    compares,
    puts,
    deletes,
    writes: [...puts.map(([k]) => k), ...deletes],
    then: (ns) => [...puts.map(([k, v]) => ns.put(k).value(v)), ...deletes.map((k) => ns.delete().key(k))],
  }
}

function commit(ns: Namespace, t: Txn) {
  // etcd3's builder takes one comparison per call: the first in if(), the others in and().
  let b = ns.if(...t.compares[0]!)
  for (const c of t.compares.slice(1)) b = b.and(...c)
  return b.then(...t.then(ns)).commit()
}

/**
 * The transaction for a request's writes, against what it read: compares (each record and
 * allocation touched is at its read revision) and operations (the records, their allocations).
 */
export function transaction(snap: KvView, ops: Map<string, Json | null>, leaderRevision: string | undefined): Txn {
  const compares: Compare[] = []
  const mod = (k: string) => snap.get(k)?.mod ?? 0
  const puts: [string, string][] = []
  const deletes: string[] = []
  const claimed = new Map<string, string>()
  const freed = new Set<string>()
  const watchedNets = new Set<string>()
  let networksChange = false
  for (const [key, value] of ops) {
    const sk = STATE + key
    compares.push([sk, 'Mod', '==', mod(sk)])
    const before = snap.get(sk)
    const old = before ? (JSON.parse(before.value) as Json) : undefined
    for (const a of allocationsOf(key, old)) freed.add(a)
    for (const a of allocationsOf(key, value)) {
      // Two records of one transaction (a batch's requests) never hold one address, name or port.
      const other = claimed.get(a)
      if (other !== undefined && other !== key) throw new Error(`internal: ${a} is given to both ${other} and ${key}`)
      claimed.set(a, key)
    }
    if (value === null) deletes.push(sk)
    else puts.push([sk, JSON.stringify(value)])
    if (key.startsWith('network/') || key === 'cluster') networksChange = true
    // A record that names networks holds only while they exist as read.
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      const v = value as Record<string, unknown>
      if (Array.isArray(v.networks)) for (const n of v.networks) if (typeof n === 'string') watchedNets.add(n)
      if (typeof v.networkId === 'string') watchedNets.add(v.networkId)
      if (Array.isArray(v.attachments))
        for (const a of v.attachments as {networkId?: unknown}[])
          if (typeof a.networkId === 'string') watchedNets.add(a.networkId)
    }
  }
  for (const n of watchedNets) {
    const sk = `${STATE}network/${n}`
    if (!ops.has(`network/${n}`)) compares.push([sk, 'Mod', '==', mod(sk)])
  }
  for (const [a, owner] of claimed) {
    const ak = ALLOC + a
    const held = snap.get(ak)?.value
    if (held === owner) {
      freed.delete(a)
      continue
    }
    // A host-mode port's key is taken over by an ingress port decided over a state with no host-mode use of it.
    if (held !== undefined && held !== HOST_PORT && !freed.has(a) && !ops.has(held))
      throw new Error(`internal: ${a} is held by ${held} in etcd, yet ${owner} was given it`)
    freed.delete(a)
    compares.push([ak, 'Mod', '==', mod(ak)])
    puts.push([ak, owner])
  }
  // Host-mode ports: each one a task written here may hold on its node, or that a service newly
  // publishes, is rewritten (see etcd-keys.ts): any other transaction that does the same, or
  // claims the number for ingress, read it at another revision and is decided again.
  for (const a of hostPortsTouched(snap, ops)) {
    const ak = ALLOC + a
    const held = snap.get(ak)?.value
    if (claimed.has(a)) throw new Error(`internal: ${a} is given both in ingress and in host mode`)
    if (held !== undefined && held !== HOST_PORT && !freed.has(a) && !ops.has(held))
      throw new Error(`internal: ${a} is held by ${held} in etcd, yet host mode was given it`)
    freed.delete(a)
    compares.push([ak, 'Mod', '==', mod(ak)])
    puts.push([ak, HOST_PORT])
  }
  for (const a of freed) {
    const ak = ALLOC + a
    if (!snap.has(ak)) continue
    compares.push([ak, 'Mod', '==', mod(ak)])
    deletes.push(ak)
  }
  if (networksChange) {
    compares.push([NETWORK_GUARD, 'Mod', '==', mod(NETWORK_GUARD)])
    puts.push([NETWORK_GUARD, String(Date.now())])
  }
  if (leaderRevision !== undefined) compares.push([LEADER, 'Create', '==', leaderRevision])
  return txnOf(compares, puts, deletes)
}

/**
 * The host-mode port keys a transaction's writes touch: the host ports of the service (as it will
 * be) of each task written, and those a service publishes that it did not. A task removed frees its
 * node's port: a racer that read it held was only kept from that node, so removals rewrite nothing.
 * A host-mode port, once published, keeps its key (HOST_PORT names no owner to free it with).
 */
function hostPortsTouched(snap: KvView, ops: Map<string, Json | null>): Set<string> {
  const out = new Set<string>()
  const read = (k: string): Json | undefined => {
    const v = snap.get(STATE + k)?.value
    return v === undefined ? undefined : (JSON.parse(v) as Json)
  }
  const services = new Map<string, string[]>()
  const hostPortsOfService = (id: string): string[] => {
    let ports = services.get(id)
    if (ports === undefined) {
      const k = `service/${id}`
      ports = hostPortsOf(ops.has(k) ? ops.get(k) : read(k))
      services.set(id, ports)
    }
    return ports
  }
  for (const [key, value] of ops) {
    if (value === null) continue
    if (key.startsWith('task/')) {
      const sid = (value as {serviceId?: unknown}).serviceId
      if (typeof sid === 'string') for (const a of hostPortsOfService(sid)) out.add(a)
    } else if (key.startsWith('service/')) {
      const before = new Set(hostPortsOf(read(key)))
      for (const a of hostPortsOf(value)) if (!before.has(a)) out.add(a)
    }
  }
  return out
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

/**
 * What the manager sees during one request: desired state as read from etcd, with the
 * request's own writes on top; nodes and statuses from the node's gossip store. Writes to
 * desired keys are collected for the transaction; the rest (a node marked left, a status
 * removed) is gossip's and happens once the transaction has held.
 */
class RequestView implements DesiredStore, IndexSource {
  readonly ops = new Map<string, Json | null>()
  /** Nodes the request removes (node rm): written to roles/ in its transaction. */
  readonly left = new Set<string>()
  private readonly sideEffects: (() => void)[] = []
  /** Told of each desired write as the store tells its own. */
  private readonly listeners = new Set<(key: string, value: Json | undefined, old: Json | undefined) => void>()

  constructor(
    /** The copy's records, as they are while the request's logic runs (it runs without a pause: they do not change). */
    private readonly state: ReadonlyMap<string, Json>,
    private readonly local: Store,
    private readonly selfId: string,
    /** The manager's shared index, lent to this request (etcd-index.ts): its writes go on it through write. */
    private readonly index: StateIndex,
    private readonly write: Write,
    /** The writes of the requests decided before this one in its batch (their records as they will be). */
    private readonly below: ReadonlyMap<string, Json | null> = new Map(),
    /** The writes of this manager's batches in flight (their records as they will be once they land). */
    private readonly pending: ReadonlyMap<string, Json | null> = new Map(),
  ) {}

  /** The manager's index (state-index.ts's indexOf asks): not one built per request. */
  ownIndex(): StateIndex {
    return this.index
  }

  get<T extends Json = Json>(key: string): T | undefined {
    if (!isDesiredKey(key)) return this.local.get<T>(key)
    if (this.ops.has(key)) return (this.ops.get(key) ?? undefined) as T | undefined
    if (this.below.has(key)) return (this.below.get(key) ?? undefined) as T | undefined
    if (this.pending.has(key)) return (this.pending.get(key) ?? undefined) as T | undefined
    return this.state.get(key) as T | undefined
  }

  values<T extends Json = Json>(prefix: string): T[] {
    if (!isDesiredKey(prefix)) return this.local.values<T>(prefix)
    const keys = new Set(
      [...this.state.keys(), ...this.pending.keys(), ...this.below.keys(), ...this.ops.keys()].filter((k) =>
        k.startsWith(prefix),
      ),
    )
    return [...keys]
      .sort()
      .map((k) => this.get<T>(k))
      .filter((v): v is T => v !== undefined)
  }

  /** Desired state as read with the request's writes on top, and the rest as the node's store holds it. */
  list(prefix = ''): {key: string; value: Json | null}[] {
    const out: {key: string; value: Json | null}[] = this.local.list(prefix).filter((e) => !isDesiredKey(e.key))
    for (const k of new Set([...this.state.keys(), ...this.pending.keys(), ...this.below.keys(), ...this.ops.keys()])) {
      const v = k.startsWith(prefix) ? this.get(k) : undefined
      if (v !== undefined) out.push({key: k, value: v})
    }
    return out
  }

  onChange(listener: (key: string, value: Json | undefined, old: Json | undefined) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  put(key: string, value: Json): Entry {
    if (isDesiredKey(key)) {
      const old = this.get(key)
      this.ops.set(key, value)
      this.write(key, value, old)
      for (const l of this.listeners) l(key, value, old)
    } else {
      // node rm: etcd holds it too (roles/<id> = left), so the leader publishes it if this manager dies first.
      const n = key.startsWith('node/') ? (value as Partial<NodeRecord>) : undefined
      if (n?.state === 'left' && typeof n.id === 'string') this.left.add(n.id)
      this.sideEffects.push(() => this.local.put(key, value))
    }
    return {key, value, version: {clock: 0, node: this.selfId}}
  }

  delete(key: string): Entry | undefined {
    if (isDesiredKey(key)) {
      const old = this.get(key)
      if (old === undefined) return undefined
      this.ops.set(key, null)
      this.write(key, undefined, old)
      for (const l of this.listeners) l(key, undefined, old)
    } else {
      if (this.local.get(key) === undefined) return undefined
      this.sideEffects.push(() => this.local.delete(key))
    }
    return {key, value: null, version: {clock: 0, node: this.selfId}}
  }

  /** Writes to the node's store wait for the transaction: a request after this one would not see them. */
  get hasSideEffects(): boolean {
    return this.sideEffects.length > 0 || this.left.size > 0
  }

  applySideEffects(): void {
    for (const f of this.sideEffects) f()
  }
}
