import * as fs from 'node:fs'
import * as path from 'node:path'
import {UserError} from '../model/errors.js'
import {isEntry, type Entry} from './entry.js'
import {syncDir, writeFileDurably} from '../sys/durable-file.js'

/**
 * The store's snapshot: the whole state at one point, one JSON file, written
 * whole (temp file, fsync, rename, fsync the directory) so that it is always
 * one complete version. Writes between snapshots go to the log it names
 * (format 2, `log`: the generation of log.N that follows it; log.ts). Format 1
 * (no log: the file was rewritten on every write) is still read.
 */
export type Snapshot = {
  format: 1 | 2
  nodeId: string
  clock: number
  /** The log generation whose entries come after this snapshot. */
  log?: number
  entries: Entry[]
}

export const SNAPSHOT_FILE = 'state.json'

export function readSnapshot(dir: string): Snapshot | undefined {
  const file = path.join(dir, SNAPSHOT_FILE)
  let text: string
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new UserError(`cannot read the state file ${file}: ${(e as Error).message}`)
  }
  let data: unknown
  try {
    data = JSON.parse(text)
  } catch (e) {
    throw new UserError(
      `the state file ${file} is corrupt (not valid JSON: ${(e as Error).message}); move it away to start empty`,
    )
  }
  const problem = snapshotProblem(data)
  if (problem) throw new UserError(`the state file ${file} is corrupt (${problem}); move it away to start empty`)
  return data as Snapshot
}

function snapshotProblem(x: unknown): string | undefined {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return 'not an object'
  const s = x as Record<string, unknown>
  if (s.format !== 1 && s.format !== 2) return `unknown format ${JSON.stringify(s.format)}`
  if (s.format === 2 && (typeof s.log !== 'number' || !Number.isSafeInteger(s.log) || s.log < 0)) return 'bad log generation'
  if (typeof s.nodeId !== 'string') return 'no node id'
  if (typeof s.clock !== 'number' || !Number.isSafeInteger(s.clock) || s.clock < 0) return 'bad clock'
  if (!Array.isArray(s.entries)) return 'no entries'
  const bad = s.entries.findIndex((e) => !isEntry(e))
  if (bad >= 0) return `entry #${bad} is malformed`
  return undefined
}

export function writeSnapshot(dir: string, snap: Snapshot): void {
  writeFileDurably(path.join(dir, SNAPSHOT_FILE), JSON.stringify(snap))
}

/** Makes dir (and its parents) and syncs the directories that hold the new entries, so they survive a crash too. */
export function makeDurableDir(dir: string): void {
  const first = fs.mkdirSync(dir, {recursive: true, mode: 0o700})
  if (first === undefined) return
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    syncDir(path.dirname(d))
    if (d === path.resolve(first)) break
  }
}
