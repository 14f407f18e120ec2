// The flow hash that picks a VIP flow's Maglev slot: the same function as
// sn_lb_hash in bpf/include/nat.h (murmur3's block step and finaliser over
// host-order words, fixed seed), so a table built here and a slot picked
// there agree on every node. A BPF test holds the two together.
import {parseIpv4} from '../model/ipv4.js'

const SEED = 0x736e6c62

const rol = (x: number, r: number): number => ((x << r) | (x >>> (32 - r))) >>> 0

function mix(h: number, k: number): number {
  k = Math.imul(k, 0xcc9e2d51)
  k = rol(k >>> 0, 15)
  k = Math.imul(k, 0x1b873593)
  h = (h ^ k) >>> 0
  h = rol(h, 13)
  return (Math.imul(h, 5) + 0xe6546b64) >>> 0
}

export function lbFlowHash(src: string, dst: string, sport: number, dport: number, proto: number): number {
  let h = SEED
  h = mix(h, parseIpv4(src))
  h = mix(h, parseIpv4(dst))
  h = mix(h, ((sport << 16) | dport) >>> 0)
  h = mix(h, proto)
  h = (h ^ 16) >>> 0
  h = (h ^ (h >>> 16)) >>> 0
  h = Math.imul(h, 0x85ebca6b) >>> 0
  h = (h ^ (h >>> 13)) >>> 0
  h = Math.imul(h, 0xc2b2ae35) >>> 0
  return (h ^ (h >>> 16)) >>> 0
}

/** The Maglev slot of a flow in a table of `size` slots. */
export function lbSlot(src: string, dst: string, sport: number, dport: number, proto: number, size: number): number {
  return lbFlowHash(src, dst, sport, dport, proto) % size
}
