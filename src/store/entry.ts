import type {Json} from './json.js'

/**
 * One key of the replicated state. A Lamport clock orders writes; the writer's
 * node id breaks ties, so every node picks the same winner (last writer wins).
 */
export type Version = {clock: number; node: string}

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
  return JSON.stringify(['swarmnet entry 1', e.key, e.value, e.version.clock, e.version.node, e.deletedAt ?? null])
}

/** Negative when a is older than b, 0 when the same write, positive when newer. */
export function compareVersions(a: Version, b: Version): number {
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
    v.node.length <= 128
  )
}
