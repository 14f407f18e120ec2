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

/**
 * `secrets/<node id>`: the secrets again, sealed to one manager, written by a
 * manager that rotated a join token so that every manager admits with the new
 * token only (gossip carries it to all, only that manager opens it).
 */
export const secretsKey = (id: string) => `secrets/${id}`
export type SecretsRecord = {nodeId: string; sealed: string}

/** One record per other manager that has a node key: what a token rotation writes. */
export function secretsFor(
  managers: {id: string; pubKey?: string}[],
  selfId: string,
  s: ManagerSecrets,
): {key: string; value: SecretsRecord}[] {
  return managers
    .filter((m) => m.id !== selfId && m.pubKey)
    .map((m) => ({key: secretsKey(m.id), value: {nodeId: m.id, sealed: sealSecretsTo(m.pubKey!, s)}}))
}

/** The tokens this manager adopts from its record: only for the identity it already holds. */
export function adoptedTokens(
  nodeKey: KeyPair,
  identityPublicKey: string | undefined,
  rec: unknown,
): {token: string; managerToken: string} | undefined {
  const sealed = typeof rec === 'object' && rec !== null ? (rec as Partial<SecretsRecord>).sealed : undefined
  const s = openSecrets(nodeKey, sealed)
  if (!s || s.identity.publicKey !== identityPublicKey) return undefined
  return {token: s.token, managerToken: s.managerToken}
}
