import {isEntry, isVersion, type Entry} from '../store/entry.js'
import type {Digest} from '../store/store.js'

/**
 * The messages nodes exchange inside the sealed envelope, as JSON. Everything
 * that arrives is checked field by field: one bad field drops the whole
 * message (and the caller counts it); nothing malformed reaches the store.
 */
export type UpdatesMessage = {t: 'updates'; from: string; entries: Entry[]}
/** Anti-entropy, TCP: req carries the digest; resp carries what beats it plus the responder's digest; the requester closes with 'updates'. */
export type PushPullRequest = {t: 'pushpull-req'; from: string; digest: Digest}
export type PushPullResponse = {t: 'pushpull-resp'; from: string; digest: Digest; entries: Entry[]}
export type PingMessage = {t: 'ping'; from: string; seq: number}
export type AckMessage = {t: 'ack'; from: string; seq: number}

export type Message = UpdatesMessage | PushPullRequest | PushPullResponse | PingMessage | AckMessage

const MAX_ENTRIES = 100_000
const MAX_ID = 128

export function encodeMessage(m: Message): Buffer {
  return Buffer.from(JSON.stringify(m))
}

/** undefined for anything that is not exactly one of the messages above. */
export function decodeMessage(buf: Buffer): Message | undefined {
  const x = parseJsonObject(buf)
  if (!x || !isId(x.from)) return undefined
  switch (x.t) {
    case 'updates':
      return isEntryList(x.entries) ? {t: 'updates', from: x.from, entries: x.entries} : undefined
    case 'pushpull-req':
      return isDigest(x.digest) ? {t: 'pushpull-req', from: x.from, digest: x.digest} : undefined
    case 'pushpull-resp':
      return isDigest(x.digest) && isEntryList(x.entries)
        ? {t: 'pushpull-resp', from: x.from, digest: x.digest, entries: x.entries}
        : undefined
    case 'ping':
    case 'ack':
      return isSeq(x.seq) ? {t: x.t, from: x.from, seq: x.seq} : undefined
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

function isSeq(x: unknown): x is number {
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
