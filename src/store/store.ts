import {UserError} from '../model/errors.js'
import {compareVersions, isEntry, MAX_CLOCK, wins, type Entry, type Version} from './entry.js'
import type {Json} from './json.js'
import {makeDurableDir, readSnapshot, writeSnapshot} from './snapshot.js'
import {LogWriter, readLog, truncateLog, type LogStats} from './log.js'
import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import {writeFileDurably} from '../sys/durable-file.js'
import {isDesiredStateKey} from './keys.js'
import {EntryMap} from './entry-map.js'

/** A prefix that is exactly one kind's ('task/'). */
const KIND_PREFIX = /^([^/]+)\/$/

/** Where the deletion floor is kept, next to the snapshot. */
const FLOOR_FILE = 'deletion-floor'
/** Where the revision floor (the embedded revisions' deletion floor) is kept. */
const REVISION_FLOOR_FILE = 'revision-floor'

/** What a peer holds: key -> version. Anti-entropy sends what beats it. */
export type Digest = Record<string, Version>

export type ChangeOrigin = 'local' | 'remote'

/**
 * value/old are undefined when absent or deleted. origin tells gossip which
 * changes it must send on (local ones) and which it got from a peer.
 */
export type ChangeListener = (
  key: string,
  value: Json | undefined,
  old: Json | undefined,
  origin: ChangeOrigin,
  entry: Entry,
) => void

export type StoreOptions = {
  /** How long a tombstone is kept before it is reaped (NetworkDB: 30 min). */
  tombstoneTtlMs?: number
  /** How often reap() runs on its own; 0 turns the timer off. */
  reapIntervalMs?: number
  now?: () => number
  /**
   * Why a value may not be stored under a key (undefined: it may). Refused
   * values are counted in `refused` and never reach the disk or the listeners:
   * a local put throws, a merge skips the entry, open() leaves it out.
   */
  validate?: (key: string, value: Json) => string | undefined
  /** Why a key may not be held at all, tombstones included (default: any key may). */
  validateKey?: (key: string) => string | undefined
  /** The log size at which a snapshot is written and a new log begun (default 4 MiB). */
  compactBytes?: number
  /** Called once when the log cannot be written (the disk failed): the store then refuses every write. */
  onWriteFailure?: (e: Error) => void
}

export const DEFAULT_TOMBSTONE_TTL_MS = 30 * 60_000

/**
 * The replicated state of one node: last-writer-wins per key, Lamport-ordered.
 * The only source of truth on a node.
 *
 * A write applies in memory at once and is appended to the log (log.ts), which
 * group-commits off the event loop; `sync()` resolves once every write made
 * before it is on disk. Whoever acknowledges a write (the API, gossip sending
 * it on, a join answer) waits for sync() first; entries not yet durable are
 * never handed to a peer (`since` leaves them out), so a crash cannot lose a
 * version that another node already holds.
 */
export class Store {
  readonly dir: string
  readonly nodeId: string
  private readonly ttl: number
  private readonly reapEvery: number
  private readonly now: () => number
  private readonly validate: (key: string, value: Json) => string | undefined
  private readonly validateKey: (key: string) => string | undefined
  /** Keeps its bucket summary (summary.ts: what push-pull compares first) and its keys by kind on every change. */
  private readonly entries = new EntryMap()
  private readonly listeners = new Set<ChangeListener>()
  /** Indexes of the state (src/store/state-index.ts): told of a change before any other listener reads. */
  private readonly firstListeners = new Set<ChangeListener>()
  private opens = 0
  private lamport = 0
  /**
   * The highest clock of a desired-state tombstone this store has reaped. A live
   * desired-state entry at or below it, for a key held in no form here, is one
   * deleted before the tombstone went (a node away for longer than the TTL
   * brings it back): refused. Any later write of the key (a manager's, after the
   * deletion) has a higher clock, so only deleted versions are kept out. Kept in
   * its own file, written durably before the tombstones leave memory.
   */
  private floor = 0
  /**
   * The same for desired state numbered by the embedded manager (Version.erev): the highest
   * revision of a reaped desired-state tombstone. Such an entry is judged by its revision, not
   * its clock, which any node can lift to the top (a tombstone there would raise the clock
   * floor to where every later write is refused).
   */
  private efloor = 0
  /**
   * The highest embedded revision (Version.erev) this store has seen on a desired-state key,
   * its own writes' and merged ones', tombstones included: where the embedded manager's next
   * one goes from. Restored at open from the snapshot and the log.
   */
  private erevHead = 0
  /**
   * This node is the cluster's one embedded manager (src/manager/manager-role.ts): its writes of
   * desired state without an etcd revision are numbered (erev), one above every revision seen.
   */
  numberDesired = false
  private opened = false
  private reaper: NodeJS.Timeout | undefined
  private log: LogWriter | undefined
  private readonly onWriteFailure: ((e: Error) => void) | undefined
  private readonly compactBytes: number | undefined
  /** Signs this node's own writes (set by gossip: peers accept an entry only signed by its writer). */
  signer: ((e: Entry) => string) | undefined
  /** Values refused by the validator, and why the last one was. */
  refused = 0
  lastRefusal: string | undefined

  constructor(dir: string, nodeId: string, opts: StoreOptions = {}) {
    if (!nodeId) throw new UserError('a store needs a node id')
    this.dir = dir
    this.nodeId = nodeId
    this.ttl = opts.tombstoneTtlMs ?? DEFAULT_TOMBSTONE_TTL_MS
    this.reapEvery = opts.reapIntervalMs ?? 5_000
    this.now = opts.now ?? Date.now
    this.validate = opts.validate ?? (() => undefined)
    this.validateKey = opts.validateKey ?? (() => undefined)
    this.compactBytes = opts.compactBytes
    this.onWriteFailure = opts.onWriteFailure
  }

  /** Loads the durable copy: the snapshot, then its log (creating the directory if needed). */
  open(): this {
    if (this.opened) return this
    this.opens++
    makeDurableDir(this.dir)
    let snap = readSnapshot(this.dir)
    this.entries.clear()
    this.lamport = 0
    this.floor = readFloor(this.dir, FLOOR_FILE)
    this.efloor = readFloor(this.dir, REVISION_FLOOR_FILE)
    // The manager numbers above every deletion too, its tombstones reaped or not.
    this.erevHead = this.efloor
    if (snap && snap.nodeId !== this.nodeId) {
      throw new UserError(`the state in ${this.dir} belongs to node ${snap.nodeId}, not ${this.nodeId}`)
    }
    if (!snap) {
      // A new directory: the snapshot says whose it is before any log line exists.
      snap = {format: 2, nodeId: this.nodeId, clock: 0, log: 0, entries: []}
      writeSnapshot(this.dir, snap)
    }
    // A value an older version let in is left out, not fatal: the rest of the state still loads.
    for (const e of snap.entries) if (this.acceptable(e)) this.entries.set(e.key, e)
    this.lamport = snap.entries.reduce((m, e) => Math.max(m, e.version.clock), snap.clock)
    for (const e of snap.entries) this.seeRevision(e)
    const gen = snap.log ?? 0
    const replay = readLog(this.dir, gen)
    // Cut off a line torn by a crash: nothing after it was acknowledged, and appends must not follow garbage.
    if (replay.torn) truncateLog(this.dir, gen, replay.validBytes)
    for (const e of replay.entries) {
      this.lamport = Math.max(this.lamport, e.version.clock)
      this.seeRevision(e)
      if (!this.acceptable(e)) continue
      // The same version again is the same write, signed since (signOwn): the later line has the signature.
      const cur = this.entries.get(e.key)
      if (!cur || compareVersions(e.version, cur.version) >= 0) this.entries.set(e.key, e)
    }
    this.log = new LogWriter({
      dir: this.dir,
      gen,
      size: replay.validBytes,
      ...(this.compactBytes !== undefined ? {compactBytes: this.compactBytes} : {}),
      snapshot: (next) => ({format: 2, nodeId: this.nodeId, clock: this.lamport, log: next, entries: [...this.entries.values()]}),
      ...(this.onWriteFailure ? {onFailure: this.onWriteFailure} : {}),
    })
    this.opened = true
    if (this.reapEvery > 0) {
      this.reaper = setInterval(() => this.reap(), this.reapEvery)
      this.reaper.unref()
    }
    return this
  }

  /** Stops the reaper and writes what is not on disk yet (blocking: callers reopen the directory right after). */
  close(): void {
    if (this.reaper) clearInterval(this.reaper)
    this.reaper = undefined
    this.log?.closeSync()
    this.log = undefined
    this.opened = false
  }

  /** Resolves once every write made so far is on disk: acknowledge a write only after this. */
  sync(): Promise<void> {
    return this.log ? this.log.sync() : Promise.resolve()
  }

  /** The log's counters (commits, batch sizes, compactions). */
  get logStats(): LogStats | undefined {
    return this.log?.stats
  }

  /** Whether a commit is on the disk right now. */
  get committing(): boolean {
    return this.log?.busy ?? false
  }

  /** Whether the entry is on disk yet (entries not yet durable are not sent to peers). */
  isDurable(e: Entry): boolean {
    return !this.log?.undurable.has(e)
  }

  /** Bumped each time the state is loaded from disk: what was derived from it before is stale. */
  get epoch(): number {
    return this.opens
  }

  get clock(): number {
    return this.lamport
  }

  /** The highest embedded revision seen on desired state (see erevHead). */
  get desiredRevision(): number {
    return this.erevHead
  }

  /** See `floor`: desired-state versions at or below it were deleted here. */
  get deletionFloor(): number {
    return this.floor
  }

  /** See `efloor`: numbered desired-state versions at or below it were deleted here. */
  get revisionFloor(): number {
    return this.efloor
  }

  /** Whether a desired-state version, for a key held in no form here, is one deleted before its tombstone was reaped. */
  deletedBefore(v: Version): boolean {
    return v.erev !== undefined ? v.erev <= this.efloor : v.clock <= this.floor
  }

  /** The live value; undefined when absent or deleted. The cast is the caller's claim about the key's kind. */
  get<T extends Json = Json>(key: string): T | undefined {
    const e = this.entries.get(key)
    return e && e.value !== null ? (e.value as T) : undefined
  }

  /** The entry itself, tombstones included. */
  entry(key: string): Entry | undefined {
    return this.entries.get(key)
  }

  /** Live entries whose key starts with prefix, sorted by key. */
  list(prefix = ''): Entry[] {
    const out: Entry[] = []
    // A kind's prefix ('task/'): that kind's keys only, not a walk of the whole store.
    const kind = KIND_PREFIX.exec(prefix)?.[1]
    if (kind !== undefined) {
      for (const k of this.entries.keysOfKind(kind)) {
        const e = this.entries.get(k)!
        // A key that is only the kind's name ('cluster') is of the kind but not under its prefix.
        if (e.value !== null && k.length > prefix.length) out.push(e)
      }
    } else for (const e of this.entries.values()) if (e.value !== null && e.key.startsWith(prefix)) out.push(e)
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
  }

  /** The live values under prefix; see get() about the cast. */
  values<T extends Json = Json>(prefix: string): T[] {
    return this.list(prefix).map((e) => e.value as T)
  }

  /** Everything, tombstones included: what a joining node receives. */
  all(): Entry[] {
    return [...this.entries.values()]
  }

  /** rev: the etcd revision of desired state published from etcd (see Version). */
  put(key: string, value: Json, rev?: number): Entry {
    if (value === null) throw new Error('put(null) is ambiguous: use delete()')
    if (!this.acceptable({key, value})) throw new Error(`refusing to store ${this.lastRefusal}`)
    return this.writeLocal({key, value, version: this.tick(key, rev)})
  }

  /** Writes a tombstone; undefined (and no write) when there is nothing to delete. */
  delete(key: string, rev?: number): Entry | undefined {
    const cur = this.entries.get(key)
    if (!cur || cur.value === null) return undefined
    return this.writeLocal({key, value: null, version: this.tick(key, rev), deletedAt: this.now()})
  }

  /**
   * Applies the remote entries that beat what we hold, durably, and returns
   * them. Malformed entries and expired tombstones we do not need are skipped.
   * Keys in `replace` take the incoming entry whatever the versions say (gossip's
   * authority: a node record held on a revoked certificate yields to a valid one).
   */
  merge(incoming: Iterable<unknown>, replace?: ReadonlySet<string>): Entry[] {
    this.assertOpen()
    const changed: {e: Entry; old: Entry | undefined}[] = []
    let maxClock = this.lamport
    for (const x of incoming) {
      if (!isEntry(x)) continue
      if (!this.acceptable(x)) continue
      // Copy only the known fields: nothing else from a peer reaches the disk.
      const version: Version = {clock: x.version.clock, node: x.version.node}
      if (x.version.rev !== undefined) version.rev = x.version.rev
      if (x.version.erev !== undefined) version.erev = x.version.erev
      const e: Entry =
        x.value === null
          ? {key: x.key, value: null, version, deletedAt: x.deletedAt ?? this.now()}
          : {key: x.key, value: x.value, version}
      if (x.sig !== undefined) e.sig = x.sig
      maxClock = Math.max(maxClock, e.version.clock)
      const cur = this.entries.get(e.key)
      if (!wins(e.version, cur?.version) && !replace?.has(e.key)) continue
      if (e.value !== null && !cur && isDesiredStateKey(e.key) && this.deletedBefore(e.version)) {
        this.refused++
        const [what, at, floor] =
          e.version.erev !== undefined ? ['revision', e.version.erev, this.efloor] : ['clock', e.version.clock, this.floor]
        this.lastRefusal = `${e.key}: deleted before its tombstone was reaped (${what} ${at} <= ${floor})`
        continue
      }
      if (e.value === null && !cur && this.expired(e)) continue
      changed.push({e, old: cur})
      this.entries.set(e.key, e)
    }
    const oldClock = this.lamport
    const oldHead = this.erevHead
    if (maxClock > this.lamport) this.lamport = Math.min(maxClock + 1, MAX_CLOCK)
    for (const {e} of changed) this.seeRevision(e)
    if (changed.length === 0) return []
    try {
      this.log!.append(changed.map((c) => c.e))
    } catch (err) {
      for (const {e, old} of changed.reverse()) {
        if (old) this.entries.set(e.key, old)
        else this.entries.delete(e.key)
      }
      this.lamport = oldClock
      this.erevHead = oldHead
      throw err
    }
    // Indexes see the whole merge before any listener reads through them, as the entries map does.
    for (const {e, old} of changed) this.emit(e, old, 'remote', this.firstListeners)
    for (const {e, old} of changed) this.emit(e, old, 'remote', this.listeners)
    return changed.map((c) => c.e)
  }

  digest(): Digest {
    // No prototype: a key named '__proto__' must stay a plain key.
    const d = Object.create(null) as Digest
    for (const e of this.entries.values()) d[e.key] = e.version
    return d
  }

  /** The keys' versions in the given summary buckets only (summary.ts): push-pull's digest where summaries differ. */
  digestIn(buckets: Iterable<number>): Digest {
    const d = Object.create(null) as Digest
    for (const b of buckets) for (const k of this.entries.summary.keysIn(b)) d[k] = this.entries.get(k)!.version
    return d
  }

  /** The summary of everything held, tombstones included (summary.ts): a copy, SUMMARY_BYTES long. */
  summary(): Buffer {
    return this.entries.summary.bytes()
  }

  /** The keys held in one summary bucket, tombstones included. */
  keysInBucket(b: number): ReadonlySet<string> {
    return this.entries.summary.keysIn(b)
  }

  /**
   * The entries that beat (or are missing from) the peer's digest; only those on disk already.
   * buckets: only the entries in those summary buckets (the peer's digest covers only them).
   */
  since(peer: Digest, buckets?: Iterable<number>): Entry[] {
    const out: Entry[] = []
    for (const e of buckets ? this.inBuckets(buckets) : this.entries.values()) {
      if (!this.isDurable(e)) continue
      const theirs = Object.hasOwn(peer, e.key) ? peer[e.key] : undefined
      if (!theirs || compareVersions(e.version, theirs) > 0) out.push(e)
    }
    return out
  }

  /** The entries in the given summary buckets, tombstones included. */
  *inBuckets(buckets: Iterable<number>): Generator<Entry> {
    for (const b of buckets) for (const k of this.entries.summary.keysIn(b)) yield this.entries.get(k)!
  }

  /**
   * Drops live entries that were deleted elsewhere and whose tombstones are gone (gossip
   * learned it from a manager's digest and floor). Each becomes an expired tombstone of the
   * same version, logged (so a restart does not bring the value back: the later line of a
   * version wins), told to the listeners as a remote change (not spread), then reaped at once,
   * which raises this store's floor above it. Returns how many.
   */
  forget(keys: string[]): number {
    this.assertOpen()
    const changed: {e: Entry; old: Entry}[] = []
    for (const key of keys) {
      const old = this.entries.get(key)
      if (!old || old.value === null) continue
      changed.push({e: {key, value: null, version: old.version, deletedAt: this.now() - this.ttl - 1}, old})
    }
    if (changed.length === 0) return 0
    this.log!.append(changed.map((c) => c.e))
    for (const {e} of changed) this.entries.set(e.key, e)
    for (const {e, old} of changed) this.emit(e, old, 'remote', this.firstListeners)
    for (const {e, old} of changed) this.emit(e, old, 'remote', this.listeners)
    this.reap()
    return changed.length
  }

  /** Forgets tombstones older than the TTL. Returns how many were reaped. */
  reap(): number {
    if (!this.opened) return 0
    const dead: Entry[] = []
    for (const e of this.entries.values()) if (e.value === null && this.expired(e)) dead.push(e)
    if (dead.length === 0) return 0
    const desired = dead.filter((e) => isDesiredStateKey(e.key))
    const floor = desired.reduce((f, e) => Math.max(f, e.version.clock), this.floor)
    const efloor = desired.reduce((f, e) => Math.max(f, e.version.erev ?? 0), this.efloor)
    // On disk before the tombstones leave memory: a crash between must not forget the deletion.
    try {
      if (floor > this.floor) writeFileDurably(join(this.dir, FLOOR_FILE), `${floor}\n`)
      if (efloor > this.efloor) writeFileDurably(join(this.dir, REVISION_FLOOR_FILE), `${efloor}\n`)
    } catch {
      // Not written: the tombstones stay (and keep the deletions) until a reap can write it.
      return 0
    }
    this.floor = floor
    this.efloor = efloor
    // Nothing to log: a replay brings back only tombstones that are old enough to be reaped again,
    // and the next snapshot leaves them out.
    for (const e of dead) this.entries.delete(e.key)
    return dead.length
  }

  /** Returns an unsubscribe function. first: called before the other listeners (an index they read through). */
  onChange(listener: ChangeListener, opts: {first?: boolean} = {}): () => void {
    const set = opts.first ? this.firstListeners : this.listeners
    set.add(listener)
    return () => set.delete(listener)
  }

  /**
   * The version of this node's next write of key. The clock stops at MAX_CLOCK (a peer can lift
   * it there): desired state still orders by its revisions. The embedded manager numbers its
   * desired state (erev); etcd's revision (rev) is given by the caller.
   */
  private tick(key: string, rev?: number): Version {
    this.assertOpen()
    this.lamport = Math.min(this.lamport + 1, MAX_CLOCK)
    if (rev !== undefined) return {clock: this.lamport, node: this.nodeId, rev}
    if (this.numberDesired && isDesiredStateKey(key)) return {clock: this.lamport, node: this.nodeId, erev: ++this.erevHead}
    return {clock: this.lamport, node: this.nodeId}
  }

  /** An embedded revision on desired state, seen at open or in a merge: the next one goes above it. */
  private seeRevision(e: Entry): void {
    const r = e.version.erev
    if (r !== undefined && r > this.erevHead && isDesiredStateKey(e.key)) this.erevHead = r
  }

  /** Signs this node's own entries written before there was a signer (init, join); returns how many. */
  signOwn(): number {
    if (!this.signer) return 0
    const unsigned = [...this.entries.values()].filter((e) => e.version.node === this.nodeId && e.sig === undefined)
    for (const e of unsigned) e.sig = this.signer(e)
    if (unsigned.length > 0) this.log!.append(unsigned)
    return unsigned.length
  }

  private writeLocal(e: Entry): Entry {
    if (this.signer) e.sig = this.signer(e)
    const old = this.entries.get(e.key)
    this.entries.set(e.key, e)
    try {
      this.assertOpen()
      this.log!.append([e])
    } catch (err) {
      if (old) this.entries.set(e.key, old)
      else this.entries.delete(e.key)
      // This write's clock tick and revision are given back (neither reached the disk).
      this.lamport = e.version.clock - 1
      if (e.version.erev !== undefined) this.erevHead = e.version.erev - 1
      throw err
    }
    this.emit(e, old, 'local', this.firstListeners)
    this.emit(e, old, 'local', this.listeners)
    return e
  }

  /** Tombstones need only an acceptable key: a delete carries no value to misread. */
  private acceptable(e: Pick<Entry, 'key' | 'value'>): boolean {
    let why: string | undefined
    try {
      why = this.validateKey(e.key) ?? (e.value === null ? undefined : this.validate(e.key, e.value))
    } catch (err) {
      why = `validator failed: ${(err as Error).message}`
    }
    if (why === undefined) return true
    this.refused++
    this.lastRefusal = `${e.key}: ${why}`
    return false
  }

  private expired(e: Entry): boolean {
    return e.deletedAt !== undefined && this.now() - e.deletedAt > this.ttl
  }

  private emit(e: Entry, old: Entry | undefined, origin: ChangeOrigin, listeners: Set<ChangeListener>): void {
    if (listeners.size === 0) return
    const value = e.value === null ? undefined : e.value
    const oldValue = old && old.value !== null ? old.value : undefined
    for (const l of listeners) {
      try {
        l(e.key, value, oldValue, origin, e)
      } catch (err) {
        // A broken reconciler must not undo a write that is already durable.
        process.emitWarning(`store change listener failed on ${e.key}: ${(err as Error).message}`)
      }
    }
  }

  private assertOpen(): void {
    if (!this.opened) throw new Error(`store ${this.dir} is not open`)
  }
}

function readFloor(dir: string, file: string): number {
  try {
    const n = Number(readFileSync(join(dir, file), 'utf8').trim())
    return Number.isSafeInteger(n) && n > 0 ? n : 0
  } catch {
    // None yet: nothing was reaped.
    return 0
  }
}
