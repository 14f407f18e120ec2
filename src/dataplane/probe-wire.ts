// The data path's liveness probe on the wire (bpf/include/probe.h answers it in
// XDP): its format, its tag and the key the tag is made with.

import {hkdfSync} from 'node:crypto'
import {parseIpv4} from '../bpf/codecs.js'
import {siphash24} from './siphash.js'

export const PROBE_BYTES = 32
export const PROBE_REQUEST = 1
export const PROBE_REPLY = 2
const MAGIC = Buffer.from('SNLP')
const VERSION = 1
export const PROBE_KEY_BYTES = 16

/** The probe key of a cluster key: what the agent writes into sn_probe_keys under the key's id. */
export function probeKey(clusterKey: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', clusterKey, Buffer.alloc(0), 'swarmnet data-path probe', PROBE_KEY_BYTES))
}

/** The tag of a probe's first 24 bytes sent from `src` to `dst` (both IPv4 as text). */
function tag(key: Buffer, src: string, dst: string, head: Buffer): Buffer {
  return siphash24(key, Buffer.concat([parseIpv4(src), parseIpv4(dst), head.subarray(0, 8), head.subarray(8, 24)]))
}

export interface Probe {
  type: number
  keyId: number
  nonce: Buffer
}

/** A probe of `type` from `src` to `dst`, tagged with `key` (the probe key of cluster key `keyId`). */
export function encodeProbe(p: Probe, key: Buffer, src: string, dst: string): Buffer {
  if (p.nonce.length !== 16) throw new Error(`a probe nonce is 16 bytes, got ${p.nonce.length}`)
  const b = Buffer.alloc(PROBE_BYTES)
  MAGIC.copy(b, 0)
  b[4] = VERSION
  b[5] = p.type
  b[6] = p.keyId
  p.nonce.copy(b, 8)
  tag(key, src, dst, b).copy(b, 24)
  return b
}

/**
 * A probe that came from `src` to `dst`, checked with `keyFor(keyId)`; undefined when it is
 * not a probe or its tag does not check.
 */
export function decodeProbe(
  b: Buffer,
  src: string,
  dst: string,
  keyFor: (keyId: number) => Buffer | undefined,
): Probe | undefined {
  if (b.length < PROBE_BYTES || !b.subarray(0, 4).equals(MAGIC) || b[4] !== VERSION || b[7] !== 0) return undefined
  const key = keyFor(b[6])
  if (!key || !tag(key, src, dst, b).equals(b.subarray(24, 32))) return undefined
  return {type: b[5], keyId: b[6], nonce: Buffer.from(b.subarray(8, 24))}
}
