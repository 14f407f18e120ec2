import {randomBytes} from 'node:crypto'
import {UserError} from '../model/errors.js'
import {identityHash} from './identity.js'

/**
 * Join tokens in Swarm's format (swarmkit ca/config.go GenerateJoinToken):
 *
 *   SWMTKN-1-<digest: sha256 of the cluster identity, base36, 50 chars>-<secret: 16 random bytes, base36, 25 chars>
 *
 * The digest is public (it pins the cluster); the secret is what proves the
 * right to join, and never crosses the wire (see join.ts).
 */
const PREFIX = 'SWMTKN'
const VERSION = '1'
const DIGEST_CHARS = 50
const SECRET_CHARS = 25
const SECRET_BYTES = 16
const FORMAT = /^SWMTKN-1-([0-9a-z]{50})-([0-9a-z]{25})$/

export type JoinToken = {digest: string; secret: string; text: string}

export function base36(bytes: Buffer, width: number): string {
  const n = bytes.length === 0 ? 0n : BigInt(`0x${bytes.toString('hex')}`)
  return n.toString(36).padStart(width, '0')
}

export function tokenDigest(identityPublicKey: string): string {
  return base36(identityHash(identityPublicKey), DIGEST_CHARS)
}

export function generateToken(identityPublicKey: string): JoinToken {
  return makeToken(tokenDigest(identityPublicKey), base36(randomBytes(SECRET_BYTES), SECRET_CHARS))
}

/** A new secret for the same cluster: the old token stops working for new joins. */
export function rotateToken(old: JoinToken | string): JoinToken {
  const t = typeof old === 'string' ? parseToken(old) : old
  return makeToken(t.digest, base36(randomBytes(SECRET_BYTES), SECRET_CHARS))
}

export function parseToken(text: string): JoinToken {
  const s = text.trim()
  const m = FORMAT.exec(s)
  if (m) return makeToken(m[1] as string, m[2] as string)
  const parts = s.split('-')
  if (parts[0] !== PREFIX) throw new UserError(`invalid join token: it must start with ${PREFIX}-${VERSION}-`)
  if (parts[1] !== VERSION)
    throw new UserError(`invalid join token: unsupported version '${parts[1] ?? ''}' (expected ${VERSION})`)
  if (parts.length !== 4) throw new UserError(`invalid join token: expected ${PREFIX}-${VERSION}-<digest>-<secret>`)
  if (!/^[0-9a-z]{50}$/.test(parts[2] as string))
    throw new UserError(`invalid join token: the digest must be ${DIGEST_CHARS} base36 characters`)
  throw new UserError(`invalid join token: the secret must be ${SECRET_CHARS} base36 characters`)
}

/** Whether a token was issued for the cluster with this identity. */
export function tokenMatchesIdentity(token: JoinToken, identityPublicKey: string): boolean {
  return token.digest === tokenDigest(identityPublicKey)
}

function makeToken(digest: string, secret: string): JoinToken {
  return {digest, secret, text: `${PREFIX}-${VERSION}-${digest}-${secret}`}
}
