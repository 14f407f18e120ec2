import {createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject} from 'node:crypto'
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
 * What the cluster identity signs when it admits a node: the node's id, key
 * and role. A node record is believed only with a certificate that verifies,
 * so a node cannot make itself a manager nor take another's id.
 */
function certText(id: string, publicKey: string, role: NodeRole): string {
  return JSON.stringify(['swarmnet node certificate 1', id, publicKey, role])
}

export function certifyNode(identity: KeyPair, id: string, publicKey: string, role: NodeRole): string {
  return signWith(identity.privateKey, certText(id, publicKey, role))
}

export function checkNodeCert(identityPublicKey: string, id: string, publicKey: string, role: NodeRole, cert: string): boolean {
  return verifyWith(identityPublicKey, certText(id, publicKey, role), cert)
}
