// Maglev consistent hashing (Eisenbud et al., NSDI 2016, section 3.4): the
// lookup table a service's VIP flows are hashed into. Every node builds the
// table from the same inputs with the same hash, so every node picks the same
// backend for the same 5-tuple without talking to the others.
import {createHash} from 'node:crypto'

/** The value of every slot of a service that has no backends. */
export const MAGLEV_EMPTY = 0xffffffff

/** Table entries per backend at least: the paper's M >= 100 x N keeps each backend within 1% of M/N. */
export const MAGLEV_SLOTS_PER_BACKEND = 100

/**
 * The smallest prime >= 100 x max(1, backends): M must be prime so every skip is coprime with it.
 * The small-disruption property holds only between tables of the same M: a new M reshuffles every
 * slot, so a service's M should change only when its backends outgrow it (see maglevTier).
 */
export function maglevSize(backends: number): number {
  if (!Number.isInteger(backends) || backends < 0) throw new RangeError(`invalid backend count ${backends}`)
  let m = MAGLEV_SLOTS_PER_BACKEND * Math.max(1, backends)
  while (!isPrime(m)) m++
  return m
}

/** A table size that does not follow every change of scale: what a service's table is built over. */
export interface MaglevTier {
  /** Backends the tier holds at 100 slots each or more: 10, 20, 40, ... */
  capacity: number
  /** The largest prime <= 1024 x capacity / 10: whole chunks of 256 slots, M >= 100 x capacity. */
  size: number
}

/**
 * The tier of a service of `scale` backends. Scaling within a tier keeps M,
 * so the table keeps its other slots; only crossing a tier (10 -> 11, 20 ->
 * 21, ...) builds a table of a new size, whose new flows hash afresh
 * (established ones keep their backend through connection tracking).
 */
export function maglevTier(scale: number): MaglevTier {
  if (!Number.isInteger(scale) || scale < 0) throw new RangeError(`invalid backend count ${scale}`)
  let capacity = 10
  while (capacity < scale) capacity *= 2
  let size = (capacity / 10) * 1024
  while (!isPrime(size)) size--
  if (size < MAGLEV_SLOTS_PER_BACKEND * capacity) throw new RangeError(`no prime tier for ${scale} backends`)
  return {capacity, size}
}

/**
 * The lookup table: slot -> index into backendKeys. The keys are sorted before
 * the fill (so the table names the same backend in each slot whatever order
 * the caller lists them in), and each slot holds the index of that key in the
 * caller's array. offset = h('offset:'+key) mod M, skip = h('skip:'+key) mod
 * (M-1) + 1, where h is the first 8 bytes of SHA-256, big-endian: two
 * independent hashes, fixed here so every node and every version agree.
 */
export function maglevTable(backendKeys: readonly string[], size: number): Uint32Array {
  if (!Number.isInteger(size) || size < 2 || !isPrime(size)) throw new RangeError(`Maglev table size ${size} is not a prime`)
  const table = new Uint32Array(size).fill(MAGLEV_EMPTY)
  const n = backendKeys.length
  if (n === 0) return table
  if (n > size) throw new RangeError(`${n} backends do not fit a table of ${size}`)
  if (new Set(backendKeys).size !== n) throw new RangeError('backend keys must be distinct')

  const order = backendKeys.map((key, index) => ({key, index})).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
  const m = BigInt(size)
  const index = Uint32Array.from(order, (b) => b.index)
  const skip = Uint32Array.from(order, (b) => Number(hash64('skip:' + b.key) % (m - 1n)) + 1)
  // pos[i]: where backend i is in its permutation (offset + j*skip) mod M, walked one skip at a time.
  const pos = Uint32Array.from(order, (b) => Number(hash64('offset:' + b.key) % m))
  let filled = 0
  for (;;) {
    for (let i = 0; i < n; i++) {
      let c = pos[i]!
      const s = skip[i]!
      while (table[c] !== MAGLEV_EMPTY) {
        c += s
        if (c >= size) c -= size
      }
      table[c] = index[i]!
      c += s
      pos[i] = c >= size ? c - size : c
      if (++filled === size) return table
    }
  }
}

/** One backend of lbTable: its own key, and the key of the universe it holds (none: it only takes orphaned slots). */
export interface LbTableBackend {
  key: string
  owns?: string
}

// The Maglev fill over a universe is the same for every service of one tier: built once.
const universeCache = new Map<string, Uint32Array>()
const UNIVERSE_CACHE_MAX = 64

/**
 * A service's table, stable under removal: Maglev over a fixed universe of
 * keys (a replicated service's task slots 1..capacity, a global service's
 * nodes), so a full service has Maglev's even spread; each slot goes to the
 * backend that holds its universe key, and a slot whose key nobody holds
 * (a slot not scaled to, a task that is not running) goes by rendezvous
 * hashing (highest hash of (slot, backend key)) to one of the backends there
 * are. Removing a backend then moves exactly its own slots: every other slot
 * is either held by a backend still there or won by a rendezvous that still
 * has the same winner. Adding one takes its key's slots and about 1/N of the
 * orphaned ones. Returns slot -> index into `backends` (MAGLEV_EMPTY: none).
 */
export function lbTable(universe: readonly string[], size: number, backends: readonly LbTableBackend[]): Uint32Array {
  const n = backends.length
  if (n === 0) return new Uint32Array(size).fill(MAGLEV_EMPTY)
  const cacheKey = `${size}|${universe.join('\n')}`
  let base = universeCache.get(cacheKey)
  if (!base) {
    base = maglevTable(universe, size)
    if (universeCache.size >= UNIVERSE_CACHE_MAX) universeCache.delete(universeCache.keys().next().value!)
    universeCache.set(cacheKey, base)
  }
  const holder = new Int32Array(universe.length).fill(-1)
  const at = new Map(universe.map((k, i) => [k, i]))
  // Sorted by key, so two backends claiming one universe key resolve alike on every node (the lower key holds it).
  const order = backends.map((b, i) => ({b, i})).sort((x, y) => (x.b.key < y.b.key ? -1 : x.b.key > y.b.key ? 1 : 0))
  for (const {b, i} of order) {
    const u = b.owns === undefined ? undefined : at.get(b.owns)
    if (u !== undefined && holder[u] === -1) holder[u] = i
  }
  const weight = Uint32Array.from(order, ({b}) => hash32(b.key))
  const index = Uint32Array.from(order, ({i}) => i)
  const table = new Uint32Array(size)
  for (let s = 0; s < size; s++) {
    const u = base[s]!
    const h = u === MAGLEV_EMPTY ? -1 : holder[u]!
    if (h >= 0) {
      table[s] = h
      continue
    }
    let best = 0
    let bestScore = -1
    const salt = Math.imul(s + 1, 0x9e3779b9)
    for (let i = 0; i < n; i++) {
      const score = fmix32((weight[i]! ^ salt) >>> 0)
      if (score > bestScore) {
        bestScore = score
        best = i
      }
    }
    table[s] = index[best]!
  }
  return table
}

/** The universe of a replicated service of `capacity` slots: the keys its tasks' slot numbers hold. */
export function slotUniverse(capacity: number): string[] {
  return Array.from({length: capacity}, (_, i) => slotKey(i + 1))
}

export function slotKey(slot: number): string {
  return `slot${slot}`
}

/** murmur3's finaliser: an unsigned 32-bit result. */
function fmix32(h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** FNV-1a over the UTF-16 code units, then murmur3's finaliser: cheap, fixed, and well spread. */
function hash32(text: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193)
  return fmix32(h >>> 0)
}

function hash64(text: string): bigint {
  return createHash('sha256').update(text).digest().readBigUInt64BE(0)
}

function isPrime(n: number): boolean {
  if (n < 2) return false
  if (n % 2 === 0) return n === 2
  for (let d = 3; d * d <= n; d += 2) if (n % d === 0) return false
  return true
}
