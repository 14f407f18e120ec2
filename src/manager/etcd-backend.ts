// Desired state in etcd: every manager may serve a request. One request is
// one run of the manager's own logic over the manager's copy of etcd (the
// request view, etcd-request-view.ts, over etcd-cache.ts: one read of the prefix,
// then a watch; its questions answered by the manager's one index,
// etcd-index.ts), then one transaction that writes what it decided and claims
// its allocations (etcd-transaction.ts over etcd-keys.ts). The transaction
// holds only if nothing it relied on changed; otherwise it is decided again
// once the copy has caught up, so racing managers never get the same address.
// Requests that queue on a manager go as one transaction, several in flight at
// once (etcd-pipeline.ts); the leader's placement pass and role changes go
// alone, in their turn (attempt, roleAttempt here). What a manager commits is
// copied into its gossip store, and the leader publishes all of etcd into it
// (etcd-mirror.ts), so workers, which never talk to etcd, converge on it.
//
// This file puts those together behind DesiredBackend.
import type {Etcd3, Namespace} from 'etcd3'
import {UserError, isUserError} from '../model/errors.js'
import {NOBODY_DOWN, type MembershipView} from '../membership/view.js'
import type {Json} from '../store/json.js'
import type {Store} from '../store/store.js'
import type {NodeRole} from '../model/types.js'
import type {DesiredBackend, RoleBook, RoleDecision, WriteOptions} from './backend.js'
import {ALLOC, LEADER, ROLES, ROLE_GUARD, STATE, rolesOf} from './etcd-keys.js'
import {CATCH_UP_WAIT_MS, EtcdCache, OWN_WRITE_WAIT_MS, type CacheSnapshot, type CachedKv} from './etcd-cache.js'
import {EtcdIndex} from './etcd-index.js'
import {GossipMirror} from './etcd-mirror.js'
import {RequestPipeline} from './etcd-pipeline.js'
import {RequestView} from './etcd-request-view.js'
import {MAX_ATTEMPTS, commit, transaction, withLeft, type Txn, type TxnResult} from './etcd-transaction.js'
import {etcdCall} from './etcd-unavailable.js'
import {Manager} from './manager.js'
import type {RolePublisher} from './roles.js'

export {leftOf, rolesOf} from './etcd-keys.js'
export {transaction} from './etcd-transaction.js'
export {EtcdUnavailableError} from './etcd-unavailable.js'

/** What one range read of the prefix found: key (without the prefix) -> value and mod revision. */
type Snapshot = ReadonlyMap<string, CachedKv>

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
  /** The manager's queue: requests batched and pipelined, solo work in its turn (etcd-pipeline.ts). */
  private readonly pipeline: RequestPipeline
  /** Copies commits into the node's gossip store, and publishes etcd into it (etcd-mirror.ts). */
  private readonly gossip: GossipMirror

  constructor(private readonly opts: EtcdBackendOptions) {
    this.ns = opts.client.namespace(opts.prefix)
    this.cache = new EtcdCache(this.ns, opts.log)
    this.index = new EtcdIndex(this.cache, opts.local)
    this.gossip = new GossipMirror(
      opts.local,
      opts.selfId,
      {
        current: () => this.read(true),
        revision: async () => Number((await this.etcd('read', () => this.ns.get(LEADER).exec())).header.revision),
        roleGuard: async () => (await this.etcd('read', () => this.ns.get(ROLE_GUARD).exec())).kvs[0]?.mod_revision ?? '0',
      },
      opts.log,
    )
    this.pipeline = new RequestPipeline({
      cache: this.cache,
      index: this.index,
      local: opts.local,
      selfId: opts.selfId,
      read: (caughtUp) => this.read(caughtUp),
      manager: (view) => this.manager(view),
      send: (txn) => this.send(txn),
      held: (ops, rev) => this.held(ops, rev),
      lost: () => void this.retries++,
    })
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
   * Requests of one manager are decided one after another and sent by group commit, pipelined
   * (etcd-pipeline.ts). The leader's placement pass and role changes go alone, in their turn,
   * once nothing is in flight.
   */
  write<T>(fn: (m: Manager) => T, wopts: WriteOptions = {}): Promise<T> {
    if (wopts.asLeader) return this.pipeline.solo(() => this.attempt(fn, wopts))
    return this.pipeline.request(fn)
  }

  /** Most requests one transaction carries (what fits is also bounded by etcd's limit: MAX_TXN_OPS). */
  get maxBatch(): number {
    return this.pipeline.maxBatch
  }
  set maxBatch(n: number) {
    this.pipeline.maxBatch = n
  }
  /** Most batches in flight at once (1: each batch waits for the one before it to land). */
  get maxInFlight(): number {
    return this.pipeline.maxInFlight
  }
  set maxInFlight(n: number) {
    this.pipeline.maxInFlight = n
  }
  /** The pipeline's counts (etcd-pipeline.ts), for the tests and the bench. */
  get batches(): number {
    return this.pipeline.batches
  }
  get retriedRequests(): number {
    return this.pipeline.retriedRequests
  }
  get pipelined(): number {
    return this.pipeline.pipelined
  }
  get mostInFlight(): number {
    return this.pipeline.mostInFlight
  }
  get blocked(): number {
    return this.pipeline.blocked
  }
  get overUnseen(): number {
    return this.pipeline.overUnseen
  }
  /** Time the pipeline spent deciding batches, and waiting for their transactions, ms. */
  get decideMs(): number {
    return this.pipeline.decideMs
  }
  get txnMs(): number {
    return this.pipeline.txnMs
  }

  /** One request alone (the leader's placement pass): decided and sent until its transaction holds. */
  private async attempt<T>(fn: (m: Manager) => T, wopts: WriteOptions): Promise<T> {
    // Decided first over the copy as it is, without asking etcd where it is (a round trip): a
    // copy behind etcd makes the transaction fail its compares and the request is decided again
    // once caught up, never a wrong write. A refusal, or an answer that changes nothing, is only
    // given over a copy caught up with etcd as it was when that attempt began (a service just
    // removed on another manager is gone, a network just created there is found).
    // The leader's placement pass mostly changes nothing: it catches up first rather than decide twice.
    let caughtUp = wopts.asLeader === true
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const snap = await this.read(caughtUp)
      let decided: {view: RequestView; result: T}
      try {
        // The manager's logic runs over the shared index, its writes on top until it returns.
        decided = this.index.lend(snap.records, (ix, write) => {
          const view = new RequestView(snap.records, this.opts.local, this.opts.selfId, ix, write)
          const result = fn(this.manager(view))
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
      const res = await this.send(ops)
      if (res.succeeded) {
        // The next read sees this commit (read-your-writes).
        await this.cache.reach(Number(res.header.revision), OWN_WRITE_WAIT_MS)
        this.held(view.ops, Number(res.header.revision))
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
    return this.pipeline.solo(() => this.roleAttempt(decide))
  }

  private async roleAttempt<T>(decide: (roles: RoleBook) => RoleDecision<T>): Promise<T> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const snap = await this.read(true)
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

  /** The leader's publication of etcd's desired state and roles to gossip (etcd-mirror.ts). */
  mirror(pub?: RolePublisher): Promise<{changed: number; problem?: string}> {
    return this.gossip.mirror(pub)
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

  /** One range read of the whole prefix, now (not the copy). */
  private async snapshot(): Promise<Snapshot> {
    const r = await this.ns.getAll().prefix('').exec()
    const snap = new Map<string, CachedKv>()
    for (const kv of r.kvs) snap.set(kv.key.toString(), {value: kv.value.toString(), mod: kv.mod_revision})
    return snap
  }

  /** The copy as it is, or caught up with etcd as it is now (cache.current()). */
  private read(caughtUp: boolean): Promise<CacheSnapshot> {
    return this.etcd('read', () => (caughtUp ? this.cache.current() : this.cache.snapshot()))
  }

  /** The manager's logic over one request's view. */
  private manager(view: RequestView): Manager {
    return new Manager(view, this.opts.selfId, this.opts.membership ?? NOBODY_DOWN, {
      addressStart: this.opts.addressStart ?? addressStart(this.opts.selfId),
    })
  }

  /** Sends a request's transaction (after the tests' beforeCommit). */
  private async send(txn: Txn): Promise<TxnResult> {
    await this.opts.beforeCommit?.('request')
    return this.etcd('write', () => commit(this.ns, txn))
  }

  /** A request's transaction held at rev: read-your-writes on this node. */
  private held(ops: ReadonlyMap<string, Json | null>, rev: number): void {
    this.commits++
    this.gossip.copy(ops, rev)
  }

  /** etcd's own failures become one line naming the endpoints; the request's own refusals pass through. */
  private etcd<T>(what: string, call: () => Promise<T>): Promise<T> {
    return etcdCall(this.opts.endpoints, what, call)
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
