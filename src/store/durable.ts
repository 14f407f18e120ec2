import {compareVersions, type Entry} from './entry.js'
import {readLog} from './log.js'
import {readSnapshot, type Snapshot} from './snapshot.js'

/**
 * What a store directory holds on disk, read without opening the store (no
 * writer, nothing repaired): the snapshot with its log replayed over it, as
 * Store.open would load it. For readers in other processes (inspect lb, tests).
 */
export function readDurableState(dir: string): Snapshot | undefined {
  const snap = readSnapshot(dir)
  if (!snap) return undefined
  const byKey = new Map<string, Entry>(snap.entries.map((e) => [e.key, e]))
  let clock = snap.clock
  for (const e of readLog(dir, snap.log ?? 0).entries) {
    clock = Math.max(clock, e.version.clock)
    const cur = byKey.get(e.key)
    if (!cur || compareVersions(e.version, cur.version) >= 0) byKey.set(e.key, e)
  }
  return {...snap, clock, entries: [...byKey.values()]}
}
