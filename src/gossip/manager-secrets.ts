import {createPrivateKey, createPublicKey} from 'node:crypto'
import type {KeyPair} from './identity.js'
import {openAsNode, sealToNode} from './node-seal.js'
import {parseToken, tokenMatchesIdentity} from './token.js'

/**
 * What a manager needs to do all a manager does (admit joins, certify roles):
 * the cluster identity's key pair and the join tokens. The first manager makes
 * them at init; every other manager gets them when it becomes one, either in
 * the sealed join answer (join --manager) or sealed to its node key in its
 * promotion record (node promote), and forgets them when demoted.
 */
export type ManagerSecrets = {identity: KeyPair; token: string; managerToken: string}

const LABEL = 'swarmnet manager secrets'

/** Whole and consistent (the tokens name this identity, the private half matches the public one), or undefined. */
export function checkManagerSecrets(x: unknown): ManagerSecrets | undefined {
  if (typeof x !== 'object' || x === null) return undefined
  const s = x as Record<string, unknown>
  const id = s.identity as Record<string, unknown> | undefined
  if (typeof id !== 'object' || id === null || typeof id.publicKey !== 'string' || typeof id.privateKey !== 'string')
    return undefined
  if (typeof s.token !== 'string' || typeof s.managerToken !== 'string') return undefined
  try {
    const pub = createPublicKey(createPrivateKey(id.privateKey)).export({type: 'spki', format: 'der'}).toString('base64')
    if (pub !== id.publicKey) return undefined
    if (!tokenMatchesIdentity(parseToken(s.token), pub) || !tokenMatchesIdentity(parseToken(s.managerToken), pub))
      return undefined
  } catch {
    return undefined
  }
  return {identity: {publicKey: id.publicKey, privateKey: id.privateKey}, token: s.token, managerToken: s.managerToken}
}

export function sealSecretsTo(nodePublicKey: string, s: ManagerSecrets): string {
  return sealToNode(nodePublicKey, Buffer.from(JSON.stringify(s)), LABEL)
}

/** The secrets, when sealed to this node key and whole; never throws. */
export function openSecrets(nodeKey: KeyPair, sealed: unknown): ManagerSecrets | undefined {
  if (typeof sealed !== 'string' || sealed.length > 16384) return undefined
  const plain = openAsNode(nodeKey, sealed, LABEL)
  if (!plain) return undefined
  try {
    return checkManagerSecrets(JSON.parse(plain.toString()))
  } catch {
    return undefined
  }
}
