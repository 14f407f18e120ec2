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
 * slot, so a service's M should change only when its backends outgrow it.
 */
export function maglevSize(backends: number): number {
  if (!Number.isInteger(backends) || backends < 0) throw new RangeError(`invalid backend count ${backends}`)
  let m = MAGLEV_SLOTS_PER_BACKEND * Math.max(1, backends)
  while (!isPrime(m)) m++
  return m
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
  const offset = order.map((b) => Number(hash64('offset:' + b.key) % m))
  const skip = order.map((b) => Number(hash64('skip:' + b.key) % (m - 1n)) + 1)
  // pos[i]: where backend i is in its permutation (offset + j*skip) mod M, walked one skip at a time.
  const pos = [...offset]
  let filled = 0
  for (;;) {
    for (let i = 0; i < n; i++) {
      let c = pos[i]!
      while (table[c] !== MAGLEV_EMPTY) c = (c + skip[i]!) % size
      table[c] = order[i]!.index
      pos[i] = (c + skip[i]!) % size
      if (++filled === size) return table
    }
  }
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
