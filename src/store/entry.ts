import type {Json} from './json.js'

/**
 * One key of the replicated state. A Lamport clock orders writes; the writer's
 * node id breaks ties, so every node picks the same winner (last writer wins).
 * Desired state published from etcd also carries the etcd revision it was read at
 * (rev): such versions are ordered by revision first, so a replica keeps the newest
 * state of the authority whatever the writers' clocks say (a version without rev
 * counts as revision 0: it loses to any published from etcd).
 *
 * A cluster without etcd numbers its desired state too: the one (embedded) manager
 * stamps each write of a desired-state key with erev, from a counter of its own that
 * no other node's writes advance (Store.numberDesired). Versions are ordered by rev,
 * then erev, then clock: a worker that pushes every clock up (its own soft state
 * lifts them) cannot make the manager's later writes lose, and anything published
 * from etcd (migrate-store) still beats every embedded revision. Only a manager's
 * entry may carry erev (src/gossip/authority.ts).
 */
export type Version = {clock: number; node: string; rev?: number; erev?: number}

/** The highest clock a store gives: at it, later writes order by revision alone (a clock must stay a safe integer). */
export const MAX_CLOCK = Number.MAX_SAFE_INTEGER

export type Entry = {
  /** Kind and id, like 'network/<id>' (see keys.ts). */
  key: string
  /** null is a tombstone: deleted, kept so the delete wins over older writes. */
  value: Json | null
  version: Version
  /**
   * Tombstones only: when the delete was made (epoch ms, the deleter's clock).
   * It travels with the tombstone so every node reaps it at the same time and
   * an expired delete cannot bounce between nodes forever (moby libnetwork#1944).
   */
  deletedAt?: number
  /** The writer's Ed25519 signature over signedText(): peers believe an entry only from its writer. */
  sig?: string
}

/** What a writer signs: everything that decides the entry's effect. */
export function signedText(e: Entry): string {
  const text = ['swarmnet entry 1', e.key, e.value, e.version.clock, e.version.node, e.deletedAt ?? null]
  // Signed only when present, so signatures of entries without it read as before.
  if (e.version.rev !== undefined) text.push(e.version.rev)
  // Likewise, tagged: an entry with rev and one with erev never sign the same text.
  if (e.version.erev !== undefined) text.push('erev', e.version.erev)
  return JSON.stringify(text)
}

/** Negative when a is older than b, 0 when the same write, positive when newer. */
export function compareVersions(a: Version, b: Version): number {
  const ra = a.rev ?? 0
  const rb = b.rev ?? 0
  if (ra !== rb) return ra - rb
  const ea = a.erev ?? 0
  const eb = b.erev ?? 0
  if (ea !== eb) return ea - eb
  if (a.clock !== b.clock) return a.clock - b.clock
  return a.node < b.node ? -1 : a.node > b.node ? 1 : 0
}

/** Whether `incoming` should replace `current` (absent = anything wins). */
export function wins(incoming: Version, current: Version | undefined): boolean {
  return current === undefined || compareVersions(incoming, current) > 0
}

export function isTombstone(e: Entry): boolean {
  return e.value === null
}

/** Shape check for entries read from disk or the wire. */
export function isEntry(x: unknown): x is Entry {
  if (typeof x !== 'object' || x === null) return false
  const e = x as Record<string, unknown>
  return (
    typeof e.key === 'string' &&
    e.key.length > 0 &&
    e.key.length <= 512 &&
    'value' in e &&
    isVersion(e.version) &&
    (e.deletedAt === undefined || (typeof e.deletedAt === 'number' && Number.isFinite(e.deletedAt))) &&
    (e.sig === undefined || (typeof e.sig === 'string' && e.sig.length <= 128))
  )
}

export function isVersion(x: unknown): x is Version {
  if (typeof x !== 'object' || x === null) return false
  const v = x as Record<string, unknown>
  return (
    typeof v.clock === 'number' &&
    Number.isSafeInteger(v.clock) &&
    v.clock >= 0 &&
    typeof v.node === 'string' &&
    v.node.length > 0 &&
    v.node.length <= 128 &&
    (v.rev === undefined || (typeof v.rev === 'number' && Number.isSafeInteger(v.rev) && v.rev > 0)) &&
    (v.erev === undefined || (typeof v.erev === 'number' && Number.isSafeInteger(v.erev) && v.erev > 0))
  )
}
