// SipHash-2-4 (Aumasson and Bernstein), 64-bit output: the keyed hash the
// data path's liveness probe is tagged with, here as bpf/include/probe.h has it.
// BigInt is slow but a probe is a few per second per node.

const MASK = (1n << 64n) - 1n

function rotl(x: bigint, b: bigint): bigint {
  return ((x << b) | (x >> (64n - b))) & MASK
}

/** SipHash-2-4 of `msg` under the 16-byte `key`, as the 8 bytes it is sent as (little-endian). */
export function siphash24(key: Buffer, msg: Buffer): Buffer {
  if (key.length !== 16) throw new Error(`a SipHash key is 16 bytes, got ${key.length}`)
  const k0 = key.readBigUInt64LE(0)
  const k1 = key.readBigUInt64LE(8)
  let v0 = k0 ^ 0x736f6d6570736575n
  let v1 = k1 ^ 0x646f72616e646f6dn
  let v2 = k0 ^ 0x6c7967656e657261n
  let v3 = k1 ^ 0x7465646279746573n
  const round = (): void => {
    v0 = (v0 + v1) & MASK
    v1 = rotl(v1, 13n) ^ v0
    v0 = rotl(v0, 32n)
    v2 = (v2 + v3) & MASK
    v3 = rotl(v3, 16n) ^ v2
    v0 = (v0 + v3) & MASK
    v3 = rotl(v3, 21n) ^ v0
    v2 = (v2 + v1) & MASK
    v1 = rotl(v1, 17n) ^ v2
    v2 = rotl(v2, 32n)
  }
  const compress = (m: bigint): void => {
    v3 ^= m
    round()
    round()
    v0 ^= m
  }
  const full = msg.length - (msg.length % 8)
  for (let i = 0; i < full; i += 8) compress(msg.readBigUInt64LE(i))
  const last = Buffer.alloc(8)
  msg.copy(last, 0, full)
  last[7] = msg.length & 0xff
  compress(last.readBigUInt64LE(0))
  v2 ^= 0xffn
  for (let i = 0; i < 4; i++) round()
  const out = Buffer.alloc(8)
  out.writeBigUInt64LE(v0 ^ v1 ^ v2 ^ v3)
  return out
}
