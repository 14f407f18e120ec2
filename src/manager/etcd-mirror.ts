// etcd's desired state copied into the node's gossip store (issue 24). Gossip is how the state
// reaches every node, workers included (they never talk to etcd): a manager copies what it
// committed into its own store at once (copy: read-your-writes on this node), and the leader
// publishes all of etcd into it each pass (mirror), so the nodes converge on etcd's state
// whichever manager wrote it, and whatever gossip held against it; entries carry the etcd
// revision (Version.rev: replicas order by it, not by clock).
import type {Entry} from '../store/entry.js'
import type {Json} from '../store/json.js'
import type {Store} from '../store/store.js'
import type {NodeRecord} from '../model/types.js'
import {isDesiredKey} from './backend.js'
import type {CacheSnapshot} from './etcd-cache.js'
import {ROLE_GUARD, STATE, leftOf, rolesOf} from './etcd-keys.js'
import {applyRoleChange, rolesToPublish, type RolePublisher} from './roles.js'

/** What the leader's publication reads of etcd (each read's failure said in one line). */
export type MirrorReads = {
  /** The copy, caught up with etcd as it is now. */
  current(): Promise<CacheSnapshot>
  /** The revision etcd is at now. */
  revision(): Promise<number>
  /** The mod revision guard/roles has in etcd now ('0': never written). */
  roleGuard(): Promise<string>
}

export class GossipMirror {
  constructor(
    /** The node's gossip store. */
    private readonly local: Store,
    private readonly selfId: string,
    private readonly reads: MirrorReads,
    private readonly log?: (m: string) => void,
  ) {}

  /** Read-your-writes on this node: what this manager committed is in its store before the answer goes. */
  copy(ops: ReadonlyMap<string, Json | null>, rev: number): void {
    // Every key of one transaction has its revision as mod revision: the version carries it.
    for (const [k, v] of ops) {
      if (v === null) this.local.delete(k, rev)
      else {
        // A new record (a create's) is put without comparing: two JSON.stringify of nothing to compare.
        const have = this.local.get(k)
        if (have === undefined || (have !== v && JSON.stringify(have) !== JSON.stringify(v))) this.put(k, v, rev)
      }
    }
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
    const snap = await this.reads.current()
    const local = this.local
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
    if (differ.some(([k]) => stale(k).rev > snap.revision)) head = await this.reads.revision()
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
      } else if (this.put(k, v, at)) changed++
    }
    if (!pub) return {changed}
    const publish = () =>
      rolesToPublish(local.values<NodeRecord>('node/'), rolesOf(snap.kvs), leftOf(snap.kvs), this.selfId, pub, Date.now())
    let {changes, problem} = publish()
    if (changes.length > 0) {
      const guard = snap.kvs.get(ROLE_GUARD)?.mod ?? '0'
      const now = await this.reads.roleGuard()
      // A role change committed since the copy: its manager is writing its record now; the next pass judges.
      if (now !== guard) return {changed, ...(problem ? {problem} : {})}
      // Decided again over the records as they are after the read (a node may have rewritten its own).
      ;({changes, problem} = publish())
      for (const ch of changes) {
        applyRoleChange(local, ch)
        const what = ch.record.state === 'left' ? 'removed' : `a ${ch.record.role}`
        this.log?.(`etcd: node ${ch.record.name} is ${what} in etcd: its record published again`)
        changed++
      }
    }
    return problem === undefined ? {changed} : {changed, problem}
  }

  private put(k: string, v: Json, rev: number): boolean {
    try {
      this.local.put(k, v, rev)
      return true
    } catch (e) {
      // A record this version cannot store stays in etcd; the node's store keeps what it had.
      this.log?.(`etcd: ${k} not copied to the gossip store: ${(e as Error).message}`)
      return false
    }
  }
}
