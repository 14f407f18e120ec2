import * as fs from 'node:fs'
import * as fsp from 'node:fs/promises'
import * as path from 'node:path'
import {crc32} from 'node:zlib'
import {isEntry, type Entry} from './entry.js'
import {SNAPSHOT_FILE, type Snapshot} from './snapshot.js'
import {syncDir} from '../sys/durable-file.js'

/**
 * The store's write-ahead log: one line per entry, `crc32hex json\n`, appended
 * and group-committed. Writes queue in memory; one commit at a time writes
 * everything queued in one write and one fdatasync, on libuv's thread pool,
 * so the event loop (probe replies, the API) never waits for the disk; what
 * queued meanwhile goes in the next commit. sync() resolves once everything
 * appended before it is on disk: that is when a write may be acknowledged.
 *
 * Replay merges entries last-writer-wins by version, so a line written twice,
 * or two batches landing in either order, give the same state (for the same
 * version, the later line wins: it is the same write, signed since). A torn or corrupt line (a crash mid-write) ends the log: it and what
 * follows are cut off at open, since nothing after it was acknowledged.
 *
 * Compaction: when the log passes compactBytes, a new log (next generation)
 * is created, a snapshot of the whole in-memory state naming that generation
 * is written (temp, fsync, rename, fsync of the directory), and the old log
 * is removed. A crash at any point leaves either the old snapshot and its log
 * or the new snapshot and its (maybe empty) log.
 */
export const logFile = (gen: number) => `log.${gen}`

export const DEFAULT_COMPACT_BYTES = 4 * 1024 * 1024

export function logLine(e: Entry): string {
  const json = JSON.stringify(e)
  return `${crc32(json).toString(16).padStart(8, '0')} ${json}\n`
}

export type Replay = {entries: Entry[]; validBytes: number; torn: boolean}

/** Reads a log: every whole, intact line up to the first one that is not. */
export function readLog(dir: string, gen: number): Replay {
  let buf: Buffer
  try {
    buf = fs.readFileSync(path.join(dir, logFile(gen)))
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {entries: [], validBytes: 0, torn: false}
    throw e
  }
  const entries: Entry[] = []
  let off = 0
  while (off < buf.length) {
    const nl = buf.indexOf(0x0a, off)
    if (nl < 0) break
    const line = buf.subarray(off, nl).toString('utf8')
    const e = parseLine(line)
    if (!e) break
    entries.push(e)
    off = nl + 1
  }
  return {entries, validBytes: off, torn: off < buf.length}
}

function parseLine(line: string): Entry | undefined {
  if (line.length < 10 || line[8] !== ' ') return undefined
  const json = line.slice(9)
  if (crc32(json).toString(16).padStart(8, '0') !== line.slice(0, 8)) return undefined
  try {
    const x: unknown = JSON.parse(json)
    return isEntry(x) ? x : undefined
  } catch {
    return undefined
  }
}

export type LogStats = {
  /** Entries appended, commits (one write + one fdatasync each), bytes written, compactions done. */
  appended: number
  commits: number
  bytes: number
  compactions: number
  /** The largest number of entries one commit carried. */
  largestBatch: number
}

export type LogWriterOptions = {
  dir: string
  gen: number
  /** Bytes of the open log already (after a replay). */
  size: number
  compactBytes?: number
  /** The whole state now, for a snapshot naming log generation `gen`. */
  snapshot: (gen: number) => Snapshot
  /** Called once, when a commit fails: the log takes no more writes from then on. */
  onFailure?: (e: Error) => void
}

export class LogWriter {
  readonly stats: LogStats = {appended: 0, commits: 0, bytes: 0, compactions: 0, largestBatch: 0}
  private gen: number
  private fd: number
  private size: number
  private readonly compactBytes: number
  private queue: {line: string; e: Entry}[] = []
  /** Entries appended but not yet on disk: nothing sends them to a peer before they are. */
  readonly undurable = new Set<Entry>()
  private appendedSeq = 0
  private durableSeq = 0
  private waiters: {seq: number; resolve: () => void; reject: (e: Error) => void}[] = []
  private committing: Promise<void> | undefined
  private failed: Error | undefined
  private closed = false
  /** The next generation's log while a compaction is under way. */
  private nextFd: number | undefined

  constructor(private readonly o: LogWriterOptions) {
    this.gen = o.gen
    this.size = o.size
    this.compactBytes = o.compactBytes ?? DEFAULT_COMPACT_BYTES
    this.fd = openLog(o.dir, o.gen)
  }

  get generation(): number {
    return this.gen
  }

  /** Whether a commit is on the disk right now (tests: the event loop runs meanwhile). */
  get busy(): boolean {
    return this.committing !== undefined
  }

  /** Queues entries; throws only when an earlier commit failed (the store is then read-only). */
  append(entries: Entry[]): void {
    if (this.failed) throw new Error(`the store's log cannot be written: ${this.failed.message}`)
    if (this.closed) throw new Error('the store is closed')
    for (const e of entries) {
      this.queue.push({line: logLine(e), e})
      this.undurable.add(e)
    }
    this.appendedSeq += entries.length
    this.stats.appended += entries.length
    this.kick()
  }

  /** Resolves once everything appended so far is on disk; rejects if that cannot be. */
  sync(): Promise<void> {
    if (this.failed) return Promise.reject(this.failed)
    if (this.durableSeq >= this.appendedSeq) return Promise.resolve()
    return new Promise((resolve, reject) => this.waiters.push({seq: this.appendedSeq, resolve, reject}))
  }

  /** At close: waits for the commit under way, then writes the rest synchronously. */
  async close(): Promise<void> {
    if (this.closed) return
    await this.committing?.catch(() => undefined)
    this.closeSync()
  }

  /**
   * Writes everything not yet durable with blocking calls, and closes (tests
   * and shutdown paths that cannot wait). A commit under way may land too:
   * its lines are then written twice, which replay does not mind. During a
   * compaction they go to both logs, so whichever one the snapshot names
   * holds them.
   */
  closeSync(): void {
    if (this.closed) return
    this.closed = true
    if (!this.failed && this.undurable.size > 0) {
      const data = Buffer.from([...this.undurable].map(logLine).join(''))
      for (const fd of [this.fd, this.nextFd]) {
        if (fd === undefined) continue
        for (let off = 0; off < data.length;) off += fs.writeSync(fd, data, off, data.length - off)
        fs.fdatasyncSync(fd)
      }
      this.queue = []
      this.undurable.clear()
      this.durableSeq = this.appendedSeq
      for (const w of this.waiters) w.resolve()
      this.waiters = []
    }
    if (!this.committing) fs.closeSync(this.fd)
  }

  private kick(): void {
    if (this.committing || this.queue.length === 0) return
    this.committing = this.pump().finally(() => {
      this.committing = undefined
      if (this.closed) {
        fs.closeSync(this.fd)
        return
      }
      this.kick()
    })
  }

  private async pump(): Promise<void> {
    try {
      // Starts once the running code is done: the writes it makes together (a manager's commit
      // copied into the store, a merge) go in one write and one fdatasync, not the first alone.
      await null
      while (this.queue.length > 0 && !this.failed) {
        const batch = this.queue
        this.queue = []
        const data = Buffer.from(batch.map((b) => b.line).join(''))
        await writeAll(this.fd, data)
        await fdatasync(this.fd)
        this.size += data.length
        this.stats.commits++
        this.stats.bytes += data.length
        this.stats.largestBatch = Math.max(this.stats.largestBatch, batch.length)
        this.done(batch)
        if (this.size >= this.compactBytes && !this.closed) await this.compact()
      }
    } catch (e) {
      this.failed = e as Error
      for (const w of this.waiters) w.reject(this.failed)
      this.waiters = []
      this.o.onFailure?.(this.failed)
    }
  }

  private done(batch: {e: Entry}[]): void {
    for (const b of batch) this.undurable.delete(b.e)
    this.durableSeq = Math.min(this.appendedSeq, this.durableSeq + batch.length)
    const left: typeof this.waiters = []
    for (const w of this.waiters) w.seq <= this.durableSeq ? w.resolve() : left.push(w)
    this.waiters = left
  }

  /** New log generation, a snapshot naming it, then the old log goes (see the class comment for the order). */
  private async compact(): Promise<void> {
    const dir = this.o.dir
    const next = this.gen + 1
    const fd = openLog(dir, next)
    this.nextFd = fd
    const snap = this.o.snapshot(next)
    const file = path.join(dir, SNAPSHOT_FILE)
    const tmp = `${file}.tmp`
    const fh = await fsp.open(tmp, 'w', 0o600)
    try {
      await fh.writeFile(JSON.stringify(snap))
      await fh.sync()
    } finally {
      await fh.close()
    }
    if (this.closed) {
      // Closed meanwhile (and maybe reopened by another store): leave the old snapshot and log as they are.
      this.nextFd = undefined
      fs.closeSync(fd)
      await fsp.rm(tmp, {force: true})
      await fsp.rm(path.join(dir, logFile(next)), {force: true})
      return
    }
    await fsp.rename(tmp, file)
    await syncDirAsync(dir)
    const old = this.fd
    const oldGen = this.gen
    this.fd = fd
    this.nextFd = undefined
    this.gen = next
    this.size = 0
    fs.closeSync(old)
    await fsp.rm(path.join(dir, logFile(oldGen)), {force: true})
    await syncDirAsync(dir)
    this.stats.compactions++
  }
}

/** Opens (creating) a log for appending; a new file's name is made durable at once. */
function openLog(dir: string, gen: number): number {
  const file = path.join(dir, logFile(gen))
  const existed = fs.existsSync(file)
  const fd = fs.openSync(file, 'a', 0o600)
  if (!existed) {
    fs.fsyncSync(fd)
    syncDir(dir)
  }
  return fd
}

/** Cuts a torn tail off (at open, before anything is appended after it). */
export function truncateLog(dir: string, gen: number, validBytes: number): void {
  const fd = fs.openSync(path.join(dir, logFile(gen)), 'r+')
  try {
    fs.ftruncateSync(fd, validBytes)
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
}

function writeAll(fd: number, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (off: number) => {
      if (off >= data.length) return resolve()
      fs.write(fd, data, off, data.length - off, null, (err, n) => (err ? reject(err) : step(off + n)))
    }
    step(0)
  })
}

function fdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())))
}

async function syncDirAsync(dir: string): Promise<void> {
  const fh = await fsp.open(dir, 'r')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}
