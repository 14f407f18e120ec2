import {
  createHash,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  type KeyObject,
} from 'node:crypto'
import {KEY_BYTES, openWith, sealWith} from './keyring.js'

/**
 * Sealing a secret so only one node can read it, with nothing but its
 * Ed25519 node key (already certified in its record): the key is mapped to
 * X25519 the way libsodium's crypto_sign_ed25519_{pk,sk}_to_curve25519 does
 * (the same point, in Montgomery form), an ephemeral X25519 key agrees a
 * secret with it, and HKDF of that secret keys AES-256-GCM. The sealed text
 * can then travel through gossip, which every member reads.
 */
const P = 2n ** 255n - 19n
const ED_SPKI = Buffer.from('302a300506032b6570032100', 'hex')
const X_SPKI = Buffer.from('302a300506032b656e032100', 'hex')
const X_PKCS8 = Buffer.from('302e020100300506032b656e04220420', 'hex')
const VERSION = 'swarmnet node seal 1'

function le(b: Buffer): bigint {
  return BigInt(`0x${Buffer.from(b).reverse().toString('hex') || '0'}`)
}

function toLe(n: bigint): Buffer {
  return Buffer.from(n.toString(16).padStart(64, '0'), 'hex').reverse()
}

function pow(b: bigint, e: bigint): bigint {
  let r = 1n
  b %= P
  while (e > 0n) {
    if (e & 1n) r = (r * b) % P
    b = (b * b) % P
    e >>= 1n
  }
  return r
}

/** The X25519 public key (raw, 32 bytes) of an Ed25519 SPKI key: u = (1 + y) / (1 - y). */
export function montgomeryOf(edSpkiB64: string): Buffer | undefined {
  const der = Buffer.from(edSpkiB64, 'base64')
  if (der.length !== 44 || !der.subarray(0, 12).equals(ED_SPKI)) return undefined
  const raw = Buffer.from(der.subarray(12))
  raw[31] = (raw[31] as number) & 0x7f
  const y = le(raw)
  if (y >= P || y === 1n) return undefined
  const u = ((1n + y) * pow((1n - y + P) % P, P - 2n)) % P
  return toLe(u)
}

export function xPublic(raw: Buffer): KeyObject {
  return createPublicKey({key: Buffer.concat([X_SPKI, raw]), format: 'der', type: 'spki'})
}

/** The X25519 private key of an Ed25519 private key (PKCS#8 PEM); throws on one that is not Ed25519. */
export function xPrivateOf(ed25519PrivateKeyPem: string): KeyObject {
  const seed = Buffer.from(createPrivateKey(ed25519PrivateKeyPem).export({format: 'jwk'}).d ?? '', 'base64url')
  if (seed.length !== 32) throw new Error('not an Ed25519 private key')
  // The Ed25519 secret scalar is sha512(seed)[0..32]; X25519 clamps it the same way.
  const scalar = createHash('sha512').update(seed).digest().subarray(0, 32)
  return createPrivateKey({key: Buffer.concat([X_PKCS8, scalar]), format: 'der', type: 'pkcs8'})
}

function sealKey(shared: Buffer, ephemeral: Buffer, recipient: Buffer, label: string): Buffer {
  return Buffer.from(hkdfSync('sha256', shared, Buffer.concat([ephemeral, recipient]), `${VERSION} ${label}`, KEY_BYTES))
}

/** base64 of ephemeral public key (32 bytes) + AES-GCM envelope; throws on a key that is not Ed25519. */
export function sealToNode(nodePublicKey: string, plaintext: Buffer, label: string): string {
  const recipient = montgomeryOf(nodePublicKey)
  if (!recipient) throw new Error('not an Ed25519 node key')
  const eph = generateKeyPairSync('x25519')
  const ephRaw = eph.publicKey.export({type: 'spki', format: 'der'}).subarray(12)
  const shared = diffieHellman({privateKey: eph.privateKey, publicKey: xPublic(recipient)})
  const sealed = sealWith(sealKey(shared, ephRaw, recipient, label), plaintext, 0, Buffer.from(label))
  return Buffer.concat([ephRaw, sealed]).toString('base64')
}

/** The plaintext, or undefined when it was not sealed to this key (or was tampered with). Never throws. */
export function openAsNode(nodeKey: {publicKey: string; privateKey: string}, sealed: string, label: string): Buffer | undefined {
  try {
    const recipient = montgomeryOf(nodeKey.publicKey)
    const b = Buffer.from(sealed, 'base64')
    if (!recipient || b.length < 33) return undefined
    const mine = xPrivateOf(nodeKey.privateKey)
    const ephRaw = b.subarray(0, 32)
    const shared = diffieHellman({privateKey: mine, publicKey: xPublic(ephRaw)})
    return openWith(sealKey(shared, ephRaw, recipient, label), b.subarray(32), Buffer.from(label))
  } catch {
    return undefined
  }
}
