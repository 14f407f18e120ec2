// A BPF map by file descriptor: raw bytes in, raw bytes out. Codecs
// (codecs.ts) give the bytes meaning; this file only knows sizes, and that
// per-CPU maps carry one value slot per possible CPU.

import fs from 'node:fs'
import {BpfError, E, describeErrno, errnoError} from './errors.js'
import {libc} from '../sys/libc.js'
import {SIZEOF, bpfCallAsync, libbpf} from './libbpf.js'
import {objInfoByFd} from './obj-info.js'
import {bpffsHint, isOnBpffs} from './pins.js'

/** enum bpf_map_type values we name; others are shown by number. */
export const MapType = {
  HASH: 1,
  ARRAY: 2,
  PROG_ARRAY: 3,
  PERF_EVENT_ARRAY: 4,
  PERCPU_HASH: 5,
  PERCPU_ARRAY: 6,
  STACK_TRACE: 7,
  CGROUP_ARRAY: 8,
  LRU_HASH: 9,
  LRU_PERCPU_HASH: 10,
  LPM_TRIE: 11,
  ARRAY_OF_MAPS: 12,
  HASH_OF_MAPS: 13,
  DEVMAP: 14,
  SOCKMAP: 15,
  CPUMAP: 16,
  XSKMAP: 17,
  SOCKHASH: 18,
  PERCPU_CGROUP_STORAGE: 21,
  QUEUE: 22,
  STACK: 23,
  DEVMAP_HASH: 25,
  RINGBUF: 27,
} as const

const PERCPU_TYPES = new Set<number>([
  MapType.PERCPU_HASH,
  MapType.PERCPU_ARRAY,
  MapType.LRU_PERCPU_HASH,
  MapType.PERCPU_CGROUP_STORAGE,
])

export function mapTypeName(type: number): string {
  for (const [name, v] of Object.entries(MapType)) if (v === type) return name.toLowerCase()
  return `type ${type}`
}

/** bpf_map_update_elem flags. */
export const UpdateFlags = {ANY: 0, NOEXIST: 1, EXIST: 2} as const

let possibleCpusCache: number | undefined

/**
 * Number of possible CPUs (not online ones): the kernel sizes per-CPU values
 * by this, so a buffer sized by os.cpus() could be too small.
 */
export function possibleCpus(): number {
  if (possibleCpusCache !== undefined) return possibleCpusCache
  const text = fs.readFileSync('/sys/devices/system/cpu/possible', 'utf8').trim()
  let max = -1
  for (const part of text.split(',')) {
    const [lo, hi] = part.split('-').map(Number)
    max = Math.max(max, hi ?? lo)
  }
  possibleCpusCache = max + 1
  return possibleCpusCache
}

export interface MapInfo {
  type: number
  id: number
  keySize: number
  valueSize: number
  maxEntries: number
  flags: number
  name: string
}

export function mapInfoByFd(fd: number): MapInfo {
  const info = objInfoByFd(fd, 'bpf_map_info', `read info of map fd ${fd}`)
  const nameEnd = info.indexOf(0, 24)
  return {
    type: info.readUInt32LE(0),
    id: info.readUInt32LE(4),
    keySize: info.readUInt32LE(8),
    valueSize: info.readUInt32LE(12),
    maxEntries: info.readUInt32LE(16),
    flags: info.readUInt32LE(20),
    name: info.subarray(24, nameEnd < 0 || nameEnd > 40 ? 40 : nameEnd).toString('utf8'),
  }
}

export class BpfMap {
  readonly type: number
  readonly id: number
  readonly keySize: number
  readonly valueSize: number
  readonly maxEntries: number
  readonly flags: number
  readonly name: string
  /** Values are one slot per possible CPU, each padded to 8 bytes. */
  readonly percpu: boolean
  readonly nCpus: number
  /** Bytes of a whole value as the syscall sees it (all CPU slots for per-CPU maps). */
  readonly valueBufSize: number
  #fd: number
  readonly #owned: boolean

  /**
   * Wrap an fd. `owned` maps close their fd on close(); maps of a BpfObject
   * are not owned (bpf_object__close closes them).
   */
  constructor(fd: number, opts: {owned?: boolean; name?: string} = {}) {
    const info = mapInfoByFd(fd)
    this.#fd = fd
    this.#owned = opts.owned ?? true
    this.type = info.type
    this.id = info.id
    this.keySize = info.keySize
    this.valueSize = info.valueSize
    this.maxEntries = info.maxEntries
    this.flags = info.flags
    // The kernel truncates names to 15 bytes; the object knows the full one.
    this.name = opts.name ?? info.name
    this.percpu = PERCPU_TYPES.has(info.type)
    this.nCpus = this.percpu ? possibleCpus() : 1
    this.valueBufSize = this.percpu ? roundUp8(info.valueSize) * this.nCpus : info.valueSize
  }

  /** Open a pinned map; the returned map owns its fd. */
  static openPinned(pinPath: string): BpfMap {
    const fd = libbpf().bpf_obj_get(pinPath)
    if (fd < 0) {
      if (-fd === E.ENOENT) {
        if (!isOnBpffs(pinPath)) throw new BpfError('NO_BPFFS', bpffsHint(pinPath), {errno: -fd})
        throw new BpfError('NO_MAP', `no pinned map at ${pinPath}`, {errno: -fd})
      }
      throw errnoError(`open pinned map ${pinPath}`, fd)
    }
    try {
      return new BpfMap(fd, {owned: true})
    } catch (e) {
      libc().close(fd)
      throw e
    }
  }

  get fd(): number {
    if (this.#fd < 0) throw new BpfError('BAD_ARGUMENT', `map ${this.name} is closed`)
    return this.#fd
  }

  lookup(key: Buffer): Buffer | undefined {
    this.#checkKey(key)
    const value = Buffer.alloc(this.valueBufSize)
    const rc = libbpf().bpf_map_lookup_elem(this.fd, key, value)
    if (rc === 0) return value
    if (-rc === E.ENOENT) return undefined
    throw errnoError(`lookup in map ${this.name}`, rc)
  }

  /** Per-CPU maps: the value of each possible CPU, trimmed to valueSize. */
  lookupPerCpu(key: Buffer): Buffer[] | undefined {
    const v = this.lookup(key)
    return v && this.splitPerCpu(v)
  }

  update(key: Buffer, value: Buffer, flags: number = UpdateFlags.ANY): void {
    this.#checkKey(key)
    if (value.length !== this.valueBufSize) {
      throw new BpfError(
        'BAD_ARGUMENT',
        `map ${this.name}: value is ${value.length} bytes, expected ${this.valueBufSize}` +
          (this.percpu ? ` (${this.nCpus} CPUs x ${roundUp8(this.valueSize)}; use updatePerCpu)` : ''),
      )
    }
    const rc = libbpf().bpf_map_update_elem(this.fd, key, value, flags)
    if (rc === 0) return
    if (-rc === E.E2BIG) {
      throw new BpfError('SYSCALL', `map ${this.name} is full (${this.maxEntries} entries)`, {errno: -rc})
    }
    if (-rc === E.EEXIST && flags === UpdateFlags.NOEXIST) {
      throw new BpfError('SYSCALL', `map ${this.name}: key already exists`, {errno: -rc})
    }
    throw errnoError(`update map ${this.name}`, rc)
  }

  /** Per-CPU maps: write one value per possible CPU (missing CPUs get zeros). */
  updatePerCpu(key: Buffer, values: Buffer[], flags: number = UpdateFlags.ANY): void {
    const stride = roundUp8(this.valueSize)
    const buf = Buffer.alloc(this.valueBufSize)
    if (values.length > this.nCpus) {
      throw new BpfError('BAD_ARGUMENT', `map ${this.name}: ${values.length} values for ${this.nCpus} CPUs`)
    }
    values.forEach((v, i) => {
      if (v.length !== this.valueSize) {
        throw new BpfError('BAD_ARGUMENT', `map ${this.name}: CPU ${i} value is ${v.length} bytes, expected ${this.valueSize}`)
      }
      v.copy(buf, i * stride)
    })
    this.update(key, buf, flags)
  }

  /** False when the key was not there. */
  delete(key: Buffer): boolean {
    this.#checkKey(key)
    const rc = libbpf().bpf_map_delete_elem(this.fd, key)
    if (rc === 0) return true
    if (-rc === E.ENOENT) return false
    throw errnoError(`delete from map ${this.name}`, rc)
  }

  /**
   * Write many entries: BPF_MAP_UPDATE_BATCH where the kernel has it for this
   * map type (one syscall per `batchSize` entries instead of one each), else
   * one update per entry. A batch stops at its first failing entry (the
   * kernel reports how many went in): that entry is retried alone, so its own
   * error is reported, and the batch goes on after it. Returns the failures,
   * in order; `batchSize` 0 forces the per-entry path.
   */
  updateMany(entries: ReadonlyArray<readonly [Buffer, Buffer]>, opts: {batchSize?: number} = {}): UpdateFailure[] {
    const failures: UpdateFailure[] = []
    const one = (k: Buffer, v: Buffer): void => {
      try {
        this.update(k, v)
      } catch (e) {
        failures.push({key: k, error: e as Error})
      }
    }
    // Sizes are the caller's mistake, not the map's: refused whole, before anything is written.
    for (const [k, v] of entries) {
      this.#checkKey(k)
      if (v.length !== this.valueBufSize)
        throw new BpfError('BAD_ARGUMENT', `map ${this.name}: value is ${v.length} bytes, expected ${this.valueBufSize}`)
    }
    const size = opts.batchSize ?? 4096
    let at = 0
    while (at < entries.length) {
      if (size <= 0 || batchUnsupported.has(this.type)) {
        for (; at < entries.length; at++) one(entries[at]![0], entries[at]![1])
        break
      }
      const n = Math.min(size, entries.length - at)
      const keys = Buffer.allocUnsafe(this.keySize * n)
      const values = Buffer.allocUnsafe(this.valueBufSize * n)
      for (let i = 0; i < n; i++) {
        const [k, v] = entries[at + i]!
        k.copy(keys, i * this.keySize)
        v.copy(values, i * this.valueBufSize)
      }
      const count = Buffer.alloc(4)
      count.writeUInt32LE(n)
      const rc = libbpf().bpf_map_update_batch(this.fd, keys, values, count, batchOpts())
      if (rc === 0) {
        at += n
        continue
      }
      const done = count.readUInt32LE()
      if (done === 0 && isUnsupported(-rc)) {
        batchUnsupported.add(this.type)
        continue // the per-entry path takes this batch again
      }
      at += done
      // The entry that stopped the batch, alone: its own error, then on with the rest.
      one(entries[at]![0], entries[at]![1])
      at++
    }
    return failures
  }

  /** Delete many keys, batched as updateMany is; keys that were not there are not failures. Returns how many went. */
  deleteMany(keys: readonly Buffer[], opts: {batchSize?: number} = {}): {deleted: number; failures: UpdateFailure[]} {
    const failures: UpdateFailure[] = []
    let deleted = 0
    const one = (k: Buffer): void => {
      try {
        if (this.delete(k)) deleted++
      } catch (e) {
        failures.push({key: k, error: e as Error})
      }
    }
    for (const k of keys) this.#checkKey(k)
    const size = opts.batchSize ?? 4096
    let at = 0
    while (at < keys.length) {
      if (size <= 0 || batchUnsupported.has(this.type)) {
        for (; at < keys.length; at++) one(keys[at]!)
        break
      }
      const n = Math.min(size, keys.length - at)
      const buf = Buffer.allocUnsafe(this.keySize * n)
      for (let i = 0; i < n; i++) {
        keys[at + i]!.copy(buf, i * this.keySize)
      }
      const count = Buffer.alloc(4)
      count.writeUInt32LE(n)
      const rc = libbpf().bpf_map_delete_batch(this.fd, buf, count, batchOpts())
      const done = rc === 0 ? n : count.readUInt32LE()
      if (rc !== 0 && done === 0 && isUnsupported(-rc)) {
        batchUnsupported.add(this.type)
        continue
      }
      deleted += done
      at += done
      if (rc !== 0) {
        one(keys[at]!) // a key already gone (ENOENT) stops a batch too
        at++
      }
    }
    return {deleted, failures}
  }

  /** Keys in kernel order; entries changed while iterating may be seen or not. */
  *keys(): Generator<Buffer> {
    let prev: Buffer | null = null
    for (;;) {
      const next = Buffer.alloc(this.keySize)
      const rc: number = libbpf().bpf_map_get_next_key(this.fd, prev, next)
      if (-rc === E.ENOENT) return
      if (rc < 0) throw errnoError(`iterate map ${this.name}`, rc)
      yield next
      prev = next
    }
  }

  /**
   * All entries. Uses one BPF_MAP_LOOKUP_BATCH pass where the kernel supports
   * it for this map type (consistent per bucket, far fewer syscalls), and
   * falls back to get_next_key + lookup otherwise. `batchSize` is entries
   * per syscall; 0 forces the fallback.
   */
  entries(opts: {batchSize?: number} = {}): Array<[Buffer, Buffer]> {
    const size = opts.batchSize ?? 1024
    return (size > 0 ? this.#batchEntries(size) : undefined) ?? this.#iterEntries()
  }

  /**
   * entries() with each BPF_MAP_LOOKUP_BATCH syscall on libuv's thread pool: the drift check reads
   * every map back, and a map of thousands of entries is milliseconds of kernel time per read,
   * which on a loaded host were the agent's longest event-loop stretches. The same entries, the
   * same errors; a map type without batch lookups falls back to the synchronous walk.
   */
  async entriesAsync(opts: {batchSize?: number} = {}): Promise<Array<[Buffer, Buffer]>> {
    const size = opts.batchSize ?? 1024
    let out: Array<[Buffer, Buffer]> | undefined
    if (size > 0) {
      const steps = this.#batchSteps(size)
      let step = steps.next()
      while (!step.done) {
        const c = step.value
        step = steps.next(
          await bpfCallAsync('bpf_map_lookup_batch', this.fd, c.inBatch, c.outBatch, c.keys, c.values, c.count, c.opts),
        )
      }
      out = step.value
    }
    return out ?? this.#iterEntries()
  }

  /** Split a per-CPU value buffer into one Buffer per CPU, each valueSize long. */
  splitPerCpu(value: Buffer): Buffer[] {
    if (!this.percpu) return [value]
    const stride = roundUp8(this.valueSize)
    const out: Buffer[] = []
    for (let i = 0; i < this.nCpus; i++) out.push(value.subarray(i * stride, i * stride + this.valueSize))
    return out
  }

  close(): void {
    if (this.#fd >= 0 && this.#owned) libc().close(this.#fd)
    this.#fd = -1
  }

  #checkKey(key: Buffer): void {
    if (key.length !== this.keySize) {
      throw new BpfError('BAD_ARGUMENT', `map ${this.name}: key is ${key.length} bytes, expected ${this.keySize}`)
    }
  }

  #iterEntries(): Array<[Buffer, Buffer]> {
    const out: Array<[Buffer, Buffer]> = []
    for (const k of this.keys()) {
      const v = this.lookup(k)
      // Deleted between get_next_key and lookup: it is simply gone.
      if (v) out.push([k, v])
    }
    return out
  }

  #batchEntries(batchSize: number): Array<[Buffer, Buffer]> | undefined {
    const bpf = libbpf()
    const steps = this.#batchSteps(batchSize)
    let step = steps.next()
    while (!step.done) {
      const c = step.value
      step = steps.next(bpf.bpf_map_lookup_batch(this.fd, c.inBatch, c.outBatch, c.keys, c.values, c.count, c.opts))
    }
    return step.value
  }

  /**
   * The batch read as steps: each yields the arguments of one bpf_map_lookup_batch and is given
   * its return value back, so entries() makes the calls in place and entriesAsync() off the loop
   * with one logic between them. Returns undefined when the kernel has no batch ops for this map.
   */
  *#batchSteps(batchSize: number): Generator<LookupBatchCall, Array<[Buffer, Buffer]> | undefined, number> {
    // Hash maps use a bucket index as the batch cursor, arrays the key; both
    // fit in max(keySize, 8).
    const tokenSize = Math.max(this.keySize, 8)
    let inBatch: Buffer | null = null
    let chunk = Math.max(1, Math.min(this.maxEntries, batchSize))
    const out: Array<[Buffer, Buffer]> = []
    const opts = Buffer.alloc(SIZEOF.bpf_map_batch_opts)
    opts.writeBigUInt64LE(BigInt(opts.length), 0)
    for (;;) {
      const outBatch = Buffer.alloc(tokenSize)
      const keys = Buffer.alloc(this.keySize * chunk)
      const values = Buffer.alloc(this.valueBufSize * chunk)
      const count = Buffer.alloc(4)
      count.writeUInt32LE(chunk)
      const rc: number = yield {inBatch, outBatch, keys, values, count, opts}
      const err = rc < 0 ? -rc : 0
      if (err === E.ENOSPC && chunk < this.maxEntries) {
        // One hash bucket holds more entries than `chunk`: retry larger.
        chunk = Math.min(this.maxEntries, chunk * 4)
        continue
      }
      if (err !== 0 && err !== E.ENOENT) {
        if (out.length === 0 && inBatch === null && (err === E.EINVAL || err === E.ENOTSUPP || err === E.EOPNOTSUPP)) {
          return undefined // no batch ops for this map type or kernel
        }
        throw new BpfError('SYSCALL', `batch lookup in map ${this.name}: ${describeErrno(err)}`, {errno: err})
      }
      const n = count.readUInt32LE()
      for (let i = 0; i < n; i++) {
        out.push([
          Buffer.from(keys.subarray(i * this.keySize, (i + 1) * this.keySize)),
          Buffer.from(values.subarray(i * this.valueBufSize, (i + 1) * this.valueBufSize)),
        ])
      }
      if (err === E.ENOENT) return out // ENOENT marks the end (count may still be > 0)
      inBatch = outBatch
    }
  }
}

/** The buffers of one bpf_map_lookup_batch call (the kernel writes into all but inBatch and opts). */
interface LookupBatchCall {
  inBatch: Buffer | null
  outBatch: Buffer
  keys: Buffer
  values: Buffer
  count: Buffer
  opts: Buffer
}

export interface UpdateFailure {
  key: Buffer
  error: Error
}

/** Map types whose batch update/delete the kernel refused (older kernels, or types without them): per entry from then on. */
const batchUnsupported = new Set<number>()

function isUnsupported(errno: number): boolean {
  return errno === E.EINVAL || errno === E.ENOTSUPP || errno === E.EOPNOTSUPP
}

let batchOptsBuf: Buffer | undefined

/** struct bpf_map_batch_opts {size_t sz; __u64 elem_flags; __u64 flags}: BPF_ANY for every element. */
function batchOpts(): Buffer {
  if (!batchOptsBuf) {
    batchOptsBuf = Buffer.alloc(SIZEOF.bpf_map_batch_opts)
    batchOptsBuf.writeBigUInt64LE(BigInt(batchOptsBuf.length), 0)
  }
  return batchOptsBuf
}

export function roundUp8(n: number): number {
  return (n + 7) & ~7
}
