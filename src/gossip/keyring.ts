import {createCipheriv, createDecipheriv, createSecretKey, randomBytes, type KeyObject} from 'node:crypto'

/**
 * AES-256-GCM around every gossip packet, memberlist-style:
 *
 *   [version 1][key id 1][nonce 12][ciphertext][tag 16]
 *
 * The version and key id are authenticated (AAD, with a protocol label), so a
 * packet cannot be replayed under another protocol version or key slot.
 * Several keys can be held at once for rotation: seal with the primary, open
 * with whichever key the id names (install -> use -> remove).
 */
export const ENVELOPE_VERSION = 1
export const KEY_BYTES = 32
const NONCE_BYTES = 12
const TAG_BYTES = 16
const HEADER_BYTES = 2
export const SEAL_OVERHEAD = HEADER_BYTES + NONCE_BYTES + TAG_BYTES
const LABEL = Buffer.from('swarmnet-gossip')

export function generateKey(): Buffer {
  return randomBytes(KEY_BYTES)
}

/**
 * Random nonces, drawn from a pool of 256 filled by one randomBytes call: a call per packet cost
 * microseconds of the event loop each. Each nonce is as random, and no byte of a pool is used twice.
 */
const NONCE_POOL = 256 * NONCE_BYTES
let pool: Buffer = Buffer.alloc(0)
let poolAt = NONCE_POOL

function nextNonce(): Buffer {
  if (poolAt >= NONCE_POOL) {
    pool = randomBytes(NONCE_POOL)
    poolAt = 0
  }
  poolAt += NONCE_BYTES
  return pool.subarray(poolAt - NONCE_BYTES, poolAt)
}

/** Seals with a bare key (key id 0): for one-off channels like the join answer. */
export function sealWith(key: Buffer | KeyObject, plaintext: Buffer, keyId = 0, label: Buffer = LABEL): Buffer {
  const nonce = nextNonce()
  const header = Buffer.from([ENVELOPE_VERSION, keyId])
  const cipher = createCipheriv('aes-256-gcm', key, nonce)
  cipher.setAAD(Buffer.concat([label, header]))
  const ct = Buffer.concat([cipher.update(plaintext), cipher.final()])
  return Buffer.concat([header, nonce, ct, cipher.getAuthTag()])
}

/** Opens with a bare key; undefined for anything that does not authenticate. */
export function openWith(key: Buffer | KeyObject, packet: Buffer, label: Buffer = LABEL): Buffer | undefined {
  if (packet.length < SEAL_OVERHEAD || packet[0] !== ENVELOPE_VERSION) return undefined
  const header = packet.subarray(0, HEADER_BYTES)
  const nonce = packet.subarray(HEADER_BYTES, HEADER_BYTES + NONCE_BYTES)
  const ct = packet.subarray(HEADER_BYTES + NONCE_BYTES, packet.length - TAG_BYTES)
  const tag = packet.subarray(packet.length - TAG_BYTES)
  try {
    const d = createDecipheriv('aes-256-gcm', key, nonce)
    d.setAAD(Buffer.concat([label, header]))
    d.setAuthTag(tag)
    return Buffer.concat([d.update(ct), d.final()])
  } catch {
    return undefined
  }
}

export class Keyring {
  private readonly keys = new Map<number, Buffer>()
  /** The same keys as KeyObjects: AES-GCM then skips importing the key on every packet. */
  private readonly objects = new Map<number, KeyObject>()
  private primaryId: number
  /** Called after every install, use and remove (the gossip UDP thread keeps a copy: transport.ts). */
  private readonly listeners = new Set<() => void>()

  /** The first key is primary, with id 0 unless given. */
  constructor(primary: Buffer, primaryId = 0) {
    this.install(primaryId, primary)
    this.primaryId = primaryId
  }

  /** fn runs after every change of the keys or the primary; the returned function stops it. */
  onChange(fn: () => void): () => void {
    this.listeners.add(fn)
    return () => this.listeners.delete(fn)
  }

  private changed(): void {
    for (const fn of this.listeners) fn()
  }

  get primary(): number {
    return this.primaryId
  }

  ids(): number[] {
    return [...this.keys.keys()].sort((a, b) => a - b)
  }

  install(id: number, key: Buffer): void {
    if (!Number.isInteger(id) || id < 0 || id > 255) throw new Error(`key id ${id} is not 0-255`)
    if (key.length !== KEY_BYTES) throw new Error(`a gossip key is ${KEY_BYTES} bytes, got ${key.length}`)
    this.keys.set(id, Buffer.from(key))
    this.objects.set(id, createSecretKey(Buffer.from(key)))
    this.changed()
  }

  use(id: number): void {
    if (!this.keys.has(id)) throw new Error(`no key with id ${id} is installed`)
    this.primaryId = id
    this.changed()
  }

  remove(id: number): void {
    if (id === this.primaryId) throw new Error('the primary key cannot be removed: use another one first')
    this.keys.delete(id)
    this.objects.delete(id)
    this.changed()
  }

  has(id: number): boolean {
    return this.keys.has(id)
  }

  /** A copy of the key under id, if installed. */
  key(id: number): Buffer | undefined {
    const k = this.keys.get(id)
    return k ? Buffer.from(k) : undefined
  }

  /** Every installed key (what a node persists so that a restart keeps them all). */
  entries(): {id: number; key: Buffer}[] {
    return this.ids().map((id) => ({id, key: Buffer.from(this.keys.get(id) as Buffer)}))
  }

  /** The primary key's bytes (for handing to a joining node). */
  primaryKey(): Buffer {
    return Buffer.from(this.keys.get(this.primaryId) as Buffer)
  }

  seal(plaintext: Buffer): Buffer {
    return sealWith(this.objects.get(this.primaryId) as KeyObject, plaintext, this.primaryId)
  }

  /** Never throws: wrong key, truncated or tampered packets give undefined. */
  open(packet: Buffer): Buffer | undefined {
    if (packet.length < SEAL_OVERHEAD) return undefined
    const key = this.objects.get(packet[1] as number)
    return key ? openWith(key, packet) : undefined
  }
}
