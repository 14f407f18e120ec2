import {createHash} from 'node:crypto'
import type {Entry, Version} from './entry.js'

/**
 * A summary of what a store holds, for anti-entropy (src/gossip/gossip.ts): keys are hashed
 * into SUMMARY_BUCKETS buckets, and each bucket is the XOR of a 128-bit hash of every
 * (key, version) it holds. Two stores whose bucket agrees hold the same versions of the same
 * keys in it (short of a SHA-256 collision on 128 bits), so push-pull exchanges digests only
 * for the buckets that differ: nothing but the summaries when the stores agree. Kept up to
 * date on every change of the store (entry-map.ts), never recomputed by a walk.
 */
export const SUMMARY_BUCKETS = 1024
/** Bytes of each bucket's hash (a truncated SHA-256). */
export const SUMMARY_HASH_BYTES = 16
/** Bytes of a whole summary: what push-pull sends (base64) and checks the length of. */
export const SUMMARY_BYTES = SUMMARY_BUCKETS * SUMMARY_HASH_BYTES

const WORDS = SUMMARY_HASH_BYTES / 4

/**
 * The bucket of a key: FNV-1a over its UTF-16 code units. Part of the protocol (both ends must
 * agree), not a defence: a writer who crowds one bucket makes that bucket's digest as long as the
 * whole one was before this summary, no longer.
 */
export function bucketOf(key: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return (h >>> 0) % SUMMARY_BUCKETS
}

/**
 * What a bucket sums for one entry: the key and the version as compareVersions reads it (an
 * absent rev or erev is 0), not the value or the signature: two stores agree on a key exactly
 * when their digests would (the same version is the same write).
 */
export function versionHash(key: string, v: Version): Buffer {
  // createHash, not crypto.hash: that one is Node 20.12+, and package.json allows any Node 20.
  return createHash('sha256')
    .update(JSON.stringify(['swarmnet summary 1', key, v.clock, v.node, v.rev ?? 0, v.erev ?? 0]))
    .digest()
}

export class Summary {
  private readonly sums = new Int32Array(SUMMARY_BUCKETS * WORDS)
  private readonly keys: Set<string>[] = Array.from({length: SUMMARY_BUCKETS}, () => new Set<string>())

  add(key: string, v: Version): void {
    const b = bucketOf(key)
    this.keys[b]!.add(key)
    this.xor(b, versionHash(key, v))
  }

  remove(key: string, v: Version): void {
    const b = bucketOf(key)
    this.keys[b]!.delete(key)
    this.xor(b, versionHash(key, v))
  }

  clear(): void {
    this.sums.fill(0)
    for (const s of this.keys) s.clear()
  }

  /** The keys held in bucket b. */
  keysIn(b: number): ReadonlySet<string> {
    return this.keys[b]!
  }

  /** A copy of the bucket hashes, SUMMARY_BYTES long. */
  bytes(): Buffer {
    return Buffer.from(this.sums.buffer.slice(0))
  }

  private xor(b: number, h: Buffer): void {
    const at = b * WORDS
    for (let i = 0; i < WORDS; i++) this.sums[at + i]! ^= h.readInt32LE(i * 4)
  }
}

/** XORs the hash of (key, version) out of (or into) a summary's bytes (push-pull leaves out what it does not offer). */
export function toggle(sums: Buffer, key: string, v: Version): void {
  const at = bucketOf(key) * SUMMARY_HASH_BYTES
  const h = versionHash(key, v)
  for (let i = 0; i < SUMMARY_HASH_BYTES; i++) sums[at + i]! ^= h[i]!
}

/** The summary of some entries computed from scratch (tests compare the kept one with it). */
export function summaryOf(entries: Iterable<Entry>): Buffer {
  const s = new Summary()
  for (const e of entries) s.add(e.key, e.version)
  return s.bytes()
}

/** The buckets in which two summaries differ, ascending. */
export function differingBuckets(a: Buffer, b: Buffer): number[] {
  const out: number[] = []
  for (let i = 0; i < SUMMARY_BUCKETS; i++) {
    const at = i * SUMMARY_HASH_BYTES
    if (a.compare(b, at, at + SUMMARY_HASH_BYTES, at, at + SUMMARY_HASH_BYTES) !== 0) out.push(i)
  }
  return out
}
