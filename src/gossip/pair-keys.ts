import {
  createHash,
  createHmac,
  createPublicKey,
  createSecretKey,
  diffieHellman,
  hkdfSync,
  timingSafeEqual,
  type KeyObject,
} from 'node:crypto'
import {montgomeryOf, xPrivateOf, xPublic} from './node-seal.js'

/**
 * A key per ordered pair of nodes, agreed with nothing but their certified node keys, so that
 * a message between two nodes that know each other is authenticated by an HMAC (a few
 * microseconds) instead of an Ed25519 signature and its check (~80 and ~160 us on the lab VM,
 * every message, on the agent's event loop: what held a busy manager past SWIM's probe timeout).
 *
 * Both ends read their Ed25519 node keys as X25519 (node-seal.ts) and agree a secret once
 * (static-static Diffie-Hellman: only the two holders of the private keys can compute it); HKDF
 * turns it into one key per direction, bound to both ids and both public keys:
 *
 *   K(a -> b) = HKDF-SHA256(X25519(a, b), info = label | sha256([a.id, a.key, b.id, b.key]))
 *
 * So what a MACs for b is attributable to a (b did not make it, and no third node can), it is
 * refused by any other receiver (the key names b), and it cannot be reflected back to a as if b
 * had said it (the other direction's key). The receiver judges the sender as it judges a
 * signature: by the certified, unrevoked key of the node the header names, looked up for every
 * message (transport.ts), so a revoked certificate or a new key takes effect at once; a key
 * derived for a certificate's public key is cached under that key, which a new key never reuses.
 */
export const MAC_BYTES = 32
const LABEL = 'swarmnet gossip pair key 1'
/** Pairs kept; past it the cache starts again (a peer that floods ids costs derivations, not memory). */
const CACHE = 4096

export class PairKeys {
  /** This node's public key (SPKI DER, base64), as its certificate names it. */
  readonly publicKey: string
  private readonly mine: KeyObject
  /** A KeyObject, not bytes: HMAC then skips importing the key on every message. */
  private readonly keys = new Map<string, KeyObject | null>()
  /** Pair keys derived so far (tests, the bench): each costs one X25519 and one HKDF. */
  derived = 0

  constructor(
    private readonly selfId: string,
    privateKeyPem: string,
  ) {
    this.publicKey = createPublicKey(privateKeyPem).export({type: 'spki', format: 'der'}).toString('base64')
    this.mine = xPrivateOf(privateKeyPem)
  }

  /** The MAC of what this node sends to `to`, whose certified key is `toKey`; undefined when no key can be agreed with it. */
  mac(to: string, toKey: string, data: Buffer): Buffer | undefined {
    const k = this.key(true, to, toKey)
    return k ? createHmac('sha256', k).update(data).digest() : undefined
  }

  /** Whether `mac` is what `from`, whose certified key is `fromKey`, would send this node for `data`. Never throws. */
  check(from: string, fromKey: string, data: Buffer, mac: Buffer): boolean {
    const k = mac.length === MAC_BYTES ? this.key(false, from, fromKey) : undefined
    return k !== undefined && timingSafeEqual(createHmac('sha256', k).update(data).digest(), mac)
  }

  private key(outbound: boolean, peer: string, peerKey: string): KeyObject | undefined {
    const memo = `${outbound ? '>' : '<'} ${peer} ${peerKey}`
    let k = this.keys.get(memo)
    if (k === undefined) {
      k = this.derive(outbound, peer, peerKey)
      if (this.keys.size >= CACHE) this.keys.clear()
      this.keys.set(memo, k)
    }
    return k ?? undefined
  }

  private derive(outbound: boolean, peer: string, peerKey: string): KeyObject | null {
    // A peer speaking as this node is no pair (its own packets reflected back to it).
    if (peer === this.selfId) return null
    const u = montgomeryOf(peerKey)
    if (!u) return null
    let shared: Buffer
    try {
      shared = diffieHellman({privateKey: this.mine, publicKey: xPublic(u)})
    } catch {
      return null
    }
    // A low-order point gives a secret anyone can compute: no pair key with such a key.
    if (shared.every((b) => b === 0)) return null
    this.derived++
    const [from, fromKey, to, toKey] = outbound
      ? [this.selfId, this.publicKey, peer, peerKey]
      : [peer, peerKey, this.selfId, this.publicKey]
    const binding = createHash('sha256')
      .update(JSON.stringify([from, fromKey, to, toKey]))
      .digest()
    return createSecretKey(
      Buffer.from(hkdfSync('sha256', shared, Buffer.alloc(0), Buffer.concat([Buffer.from(LABEL), binding]), 32)),
    )
  }
}
