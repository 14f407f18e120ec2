import type {NodeRecord} from '../model/types.js'
import {keyOf} from '../store/keys.js'
import {certSerial} from './identity.js'

/**
 * The revocation list: one key per revoked certificate, `revoked/<serial>`,
 * written by a manager when a node's certificate stops being true (a role
 * change reissues it, `node rm` ends it). A set of keys, not a list in one
 * record: two managers revoking at once both win (one last-writer-wins record
 * would keep one of the two), and a revocation is never deleted (the authority
 * refuses its tombstone), so no clock or reaping brings a certificate back.
 */
export type Revocation = {serial: string; nodeId: string; at: number}

export const revokedKey = (serial: string) => keyOf('revoked', serial)

/** The revocation of the certificate a node record carries; undefined when it carries none. */
export function revocationOf(r: NodeRecord, at: number): {key: string; value: Revocation} | undefined {
  if (!r.cert) return undefined
  const serial = certSerial(r.cert)
  return {key: revokedKey(serial), value: {serial, nodeId: r.id, at}}
}
