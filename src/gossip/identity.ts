import {
  createHash,
  createPrivateKey,
  randomBytes,
  createPublicKey,
  generateKeyPairSync,
  sign,
  verify,
  type KeyObject,
} from 'node:crypto'
import type {NodeRole} from '../model/types.js'

/**
 * Ed25519 key pairs: the cluster's identity, made at init, standing in for
 * Swarm's root CA (a join token's digest pins its public half), and one key
 * pair per node, whose public half the manager certifies at join.
 */
export type KeyPair = {
  /** SPKI DER, base64: shared freely. */
  publicKey: string
  /** PKCS#8 PEM: never leaves its node. */
  privateKey: string
}
export type ClusterIdentity = KeyPair

export function generateIdentity(): KeyPair {
  const {publicKey, privateKey} = generateKeyPairSync('ed25519')
  return {
    publicKey: publicKey.export({type: 'spki', format: 'der'}).toString('base64'),
    privateKey: privateKey.export({type: 'pkcs8', format: 'pem'}).toString(),
  }
}

export const generateNodeKey = generateIdentity

/** sha256 of the public key, as Swarm digests its root CA certificate. */
export function identityHash(publicKey: string): Buffer {
  return createHash('sha256').update(Buffer.from(publicKey, 'base64')).digest()
}

// Parsing a key costs more than using it: keep the ones in use.
const publicKeys = new Map<string, KeyObject | null>()
const privateKeys = new Map<string, KeyObject>()
const KEY_CACHE = 4096

function publicKeyOf(b64: string): KeyObject | undefined {
  let k = publicKeys.get(b64)
  if (k === undefined) {
    try {
      k = createPublicKey({key: Buffer.from(b64, 'base64'), format: 'der', type: 'spki'})
      if (k.asymmetricKeyType !== 'ed25519') k = null
    } catch {
      k = null
    }
    if (publicKeys.size >= KEY_CACHE) publicKeys.clear()
    publicKeys.set(b64, k)
  }
  return k ?? undefined
}

/** Ed25519 signature, base64. */
export function signWith(privateKeyPem: string, data: Buffer | string): string {
  let k = privateKeys.get(privateKeyPem)
  if (!k) {
    k = createPrivateKey(privateKeyPem)
    if (privateKeys.size >= 16) privateKeys.clear()
    privateKeys.set(privateKeyPem, k)
  }
  return sign(null, Buffer.from(data), k).toString('base64')
}

/** Ed25519 signature of raw bytes (64 bytes): what signs every sealed message (transport.ts). */
export function signBytes(privateKeyPem: string, data: Buffer): Buffer {
  let k = privateKeys.get(privateKeyPem)
  if (!k) {
    k = createPrivateKey(privateKeyPem)
    if (privateKeys.size >= 16) privateKeys.clear()
    privateKeys.set(privateKeyPem, k)
  }
  return sign(null, data, k)
}

/** Never throws: a malformed key or signature is simply not valid. */
export function verifyBytes(publicKey: string, data: Buffer, signature: Buffer): boolean {
  const k = publicKeyOf(publicKey)
  if (!k || signature.length !== 64) return false
  try {
    return verify(null, data, k, signature)
  } catch {
    return false
  }
}

/** Never throws: a malformed key or signature is simply not valid. */
export function verifyWith(publicKey: string, data: Buffer | string, signature: string): boolean {
  const k = publicKeyOf(publicKey)
  if (!k || typeof signature !== 'string' || signature.length > 128) return false
  const sig = Buffer.from(signature, 'base64')
  // Node's decoder skips what follows the padding: only the canonical text is the signature.
  if (sig.length !== 64 || sig.toString('base64') !== signature) return false
  try {
    return verify(null, Buffer.from(data), k, sig)
  } catch {
    return false
  }
}

/**
 * What the cluster identity signs when it admits a node: the node's id, key,
 * role and a serial. A node record is believed only with a certificate that
 * verifies, so a node cannot make itself a manager nor take another's id; the
 * serial names this one certificate, so it can be revoked (a demoted manager's
 * manager certificate, a removed node's) while a new one for the same node,
 * key and role is not (Ed25519 signs deterministically: without the serial a
 * re-promotion would reissue the revoked certificate byte for byte).
 */
function certText(id: string, publicKey: string, role: NodeRole, serial?: string): string {
  return serial === undefined
    ? JSON.stringify(['swarmnet node certificate 1', id, publicKey, role])
    : JSON.stringify(['swarmnet node certificate 2', id, publicKey, role, serial])
}

/** 128 random bits in hex: serials need no coordination between the managers that issue them. */
const SERIAL = /^[0-9a-f]{32}$/

/** A certificate: `<serial>.<signature>` (a certificate of before serials is the signature alone). */
export function certifyNode(identity: KeyPair, id: string, publicKey: string, role: NodeRole): string {
  const serial = randomBytes(16).toString('hex')
  return `${serial}.${signWith(identity.privateKey, certText(id, publicKey, role, serial))}`
}

/**
 * The certificate's serial: what a revocation names. A certificate made before
 * serials is named by its hash (it was issued once per id, key and role).
 */
export function certSerial(cert: string): string {
  const dot = cert.indexOf('.')
  return dot === 32 ? cert.slice(0, 32) : createHash('sha256').update(cert).digest('hex').slice(0, 32)
}

export function checkNodeCert(identityPublicKey: string, id: string, publicKey: string, role: NodeRole, cert: string): boolean {
  if (typeof cert !== 'string') return false
  const dot = cert.indexOf('.')
  if (dot < 0) return verifyWith(identityPublicKey, certText(id, publicKey, role), cert)
  const serial = cert.slice(0, dot)
  return SERIAL.test(serial) && verifyWith(identityPublicKey, certText(id, publicKey, role, serial), cert.slice(dot + 1))
}
