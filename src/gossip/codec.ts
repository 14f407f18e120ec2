import {isEntry, isVersion, type Entry} from '../store/entry.js'
import {isSwimMessage, type SwimMessage} from '../membership/messages.js'
import type {Digest} from '../store/store.js'
import {SUMMARY_BYTES} from '../store/summary.js'
import {isKeyDirective, type KeyDirective} from './rotation.js'

/**
 * The messages nodes exchange inside the sealed envelope, as JSON. Everything
 * that arrives is checked field by field: one bad field drops the whole
 * message (and the caller counts it); nothing malformed reaches the store.
 *
 * Every message carries a header the transport stamps when it seals: the
 * sender, its boot epoch, a sequence number and its wall-clock time, so a
 * receiver can refuse a packet it has seen before or one that is too old
 * (see freshness.ts).
 */
export type Header = {
  from: string
  /** The sender's boot epoch (ms): increases at every start of the sender. */
  epoch: number
  /** Per sender and epoch, one more for every message sealed. */
  seq: number
  /** The sender's clock when it sealed (ms). */
  ts: number
  /** 1: the sender reads messages authenticated by a pair key (transport.ts); absent: signatures only (an older version). */
  mac?: 1
  /** 1: the sender answers push-pull by summaries (`pushpull-sum`, gossip.ts); absent: full digests only (an older version). */
  sum?: 1
}

export type UpdatesBody = {t: 'updates'; entries: Entry[]}
/** Anti-entropy, TCP: req carries the digest; resp carries what beats it plus the responder's digest; the requester closes with 'updates'. */
/**
 * Both are sent in chunks (gossip.ts, DIGEST_CHUNK keys or entries each); `last: false` says more
 * of the same kind follow (absent: true). The requester's closing 'updates' come in chunks too,
 * until it closes the connection.
 */
/**
 * `floor`: the sender's deletion floor (Store.deletionFloor), `efloor` its revision floor
 * (Store.revisionFloor, for desired state the embedded manager numbered). From a manager, with
 * its whole digest, they tell the receiver which desired state it holds was deleted and reaped
 * meanwhile.
 */
export type PushPullRequestBody = {t: 'pushpull-req'; digest: Digest; last?: boolean; floor?: number; efloor?: number}
export type PushPullResponseBody = {
  t: 'pushpull-resp'
  digest: Digest
  entries: Entry[]
  last?: boolean
  floor?: number
  efloor?: number
}
/**
 * Anti-entropy by summaries (src/store/summary.ts), TCP: the requester's first message carries its
 * summary (SUMMARY_BYTES, base64), the responder answers with its own; where they differ, the
 * exchange goes on as pushpull-req/-resp with digests and entries of those buckets only.
 */
export type PushPullSummaryBody = {t: 'pushpull-sum'; sums: string}
export type PingBody = {t: 'ping'; n: number}
export type AckBody = {t: 'ack'; n: number}
/** First frame of every sealed TCP connection: small, so the peer authenticates us before it reads anything big. */
export type OpenBody = {t: 'open'}
/** Failure detection (src/membership/): probes, acks and the rumours they carry. */
export type SwimBody = {t: 'swim'; swim: SwimMessage}

/** Key rotation (rotation.ts): the manager's signed directive, and a node's signed ack of its generation. */
export type KeysBody = {t: 'keys'; keys: KeyDirective}
/** hash: keyHash of what the node holds under the directive's key id (rotation.ts). */
/** id: the key id the acked directive installs (-1: none), hash: of the bytes the node holds under it (rotation.ts keyHash). */
export type KeysAckBody = {t: 'keys-ack'; gen: number; by: string; id: number; hash: string; sig: string}

export type Body =
  | UpdatesBody
  | PushPullRequestBody
  | PushPullResponseBody
  | PushPullSummaryBody
  | PingBody
  | AckBody
  | OpenBody
  | SwimBody
  | KeysBody
  | KeysAckBody
export type Message = Body & Header

const MAX_ENTRIES = 100_000
const MAX_ID = 128

export function encodeMessage(m: Message): Buffer {
  return Buffer.from(JSON.stringify(m))
}

/** undefined for anything that is not exactly one of the messages above. */
export function decodeMessage(buf: Buffer): Message | undefined {
  const x = parseJsonObject(buf)
  if (!x || !isId(x.from) || !isCount(x.epoch) || !isCount(x.seq) || !isCount(x.ts)) return undefined
  if (x.mac !== undefined && x.mac !== 1) return undefined
  if (x.sum !== undefined && x.sum !== 1) return undefined
  const h: Header = {
    from: x.from,
    epoch: x.epoch,
    seq: x.seq,
    ts: x.ts,
    ...(x.mac === 1 ? {mac: 1 as const} : {}),
    ...(x.sum === 1 ? {sum: 1 as const} : {}),
  }
  switch (x.t) {
    case 'updates':
      return isEntryList(x.entries) ? {t: 'updates', ...h, entries: x.entries} : undefined
    case 'pushpull-req':
      if (x.last !== undefined && typeof x.last !== 'boolean') return undefined
      if (x.floor !== undefined && !isCount(x.floor)) return undefined
      if (x.efloor !== undefined && !isCount(x.efloor)) return undefined
      return isDigest(x.digest)
        ? {
            t: 'pushpull-req',
            ...h,
            digest: x.digest,
            ...(x.last !== undefined ? {last: x.last} : {}),
            ...(x.floor !== undefined ? {floor: x.floor} : {}),
            ...(x.efloor !== undefined ? {efloor: x.efloor} : {}),
          }
        : undefined
    case 'pushpull-resp':
      if (x.last !== undefined && typeof x.last !== 'boolean') return undefined
      if (x.floor !== undefined && !isCount(x.floor)) return undefined
      if (x.efloor !== undefined && !isCount(x.efloor)) return undefined
      return isDigest(x.digest) && isEntryList(x.entries)
        ? {
            t: 'pushpull-resp',
            ...h,
            digest: x.digest,
            entries: x.entries,
            ...(x.last !== undefined ? {last: x.last} : {}),
            ...(x.floor !== undefined ? {floor: x.floor} : {}),
            ...(x.efloor !== undefined ? {efloor: x.efloor} : {}),
          }
        : undefined
    case 'pushpull-sum':
      return isSummary(x.sums) ? {t: 'pushpull-sum', ...h, sums: x.sums} : undefined
    case 'ping':
    case 'ack':
      return isCount(x.n) ? {t: x.t, ...h, n: x.n} : undefined
    case 'open':
      return {t: 'open', ...h}
    case 'swim':
      return isSwimMessage(x.swim) ? {t: 'swim', ...h, swim: x.swim} : undefined
    case 'keys':
      return isKeyDirective(x.keys) ? {t: 'keys', ...h, keys: x.keys} : undefined
    case 'keys-ack':
      return isCount(x.gen) &&
        isId(x.by) &&
        typeof x.id === 'number' &&
        Number.isInteger(x.id) &&
        x.id >= -1 &&
        x.id <= 255 &&
        typeof x.hash === 'string' &&
        x.hash.length <= 64 &&
        typeof x.sig === 'string' &&
        x.sig.length <= 256
        ? {t: 'keys-ack', ...h, gen: x.gen, by: x.by, id: x.id, hash: x.hash, sig: x.sig}
        : undefined
    default:
      return undefined
  }
}

export function parseJsonObject(buf: Buffer): Record<string, unknown> | undefined {
  let x: unknown
  try {
    x = JSON.parse(buf.toString('utf8'))
  } catch {
    return undefined
  }
  return typeof x === 'object' && x !== null && !Array.isArray(x) ? (x as Record<string, unknown>) : undefined
}

export function isId(x: unknown): x is string {
  return typeof x === 'string' && x.length > 0 && x.length <= MAX_ID
}

function isCount(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0
}

export function isEntryList(x: unknown): x is Entry[] {
  return Array.isArray(x) && x.length <= MAX_ENTRIES && x.every(isEntry)
}

export function isDigest(x: unknown): x is Digest {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return false
  const values = Object.values(x)
  return values.length <= MAX_ENTRIES && values.every(isVersion)
}

const SUMMARY_BASE64 = Math.ceil(SUMMARY_BYTES / 3) * 4

/** A summary: exactly SUMMARY_BYTES in canonical base64 (any other length or alphabet is malformed). */
export function isSummary(x: unknown): x is string {
  return typeof x === 'string' && x.length === SUMMARY_BASE64 && Buffer.from(x, 'base64').toString('base64') === x
}
