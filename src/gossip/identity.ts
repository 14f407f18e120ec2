import {createHash, generateKeyPairSync} from 'node:crypto'

/**
 * The cluster's identity: an Ed25519 key pair made at init, standing in for
 * Swarm's root CA. Its public half is what a join token's digest pins, so a
 * joiner can tell it reached the cluster its token names.
 */
export type ClusterIdentity = {
  /** SPKI DER, base64: shared freely. */
  publicKey: string
  /** PKCS#8 PEM: stays on managers. */
  privateKey: string
}

export function generateIdentity(): ClusterIdentity {
  const {publicKey, privateKey} = generateKeyPairSync('ed25519')
  return {
    publicKey: publicKey.export({type: 'spki', format: 'der'}).toString('base64'),
    privateKey: privateKey.export({type: 'pkcs8', format: 'pem'}).toString(),
  }
}

/** sha256 of the public key, as Swarm digests its root CA certificate. */
export function identityHash(publicKey: string): Buffer {
  return createHash('sha256').update(Buffer.from(publicKey, 'base64')).digest()
}
