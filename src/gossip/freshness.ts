import type {Header} from './codec.js'

/**
 * Refuses sealed messages that were seen before or are too old, so a packet
 * captured on the wire cannot be played back later (say, an `updates` that
 * brings back a service whose tombstone has since been reaped).
 *
 * Two checks:
 *  - the sender's clock in the packet must be within MAX_SKEW_MS of ours.
 *    This is the guarantee that holds whatever else happened (the receiver
 *    restarted, its windows were forgotten): a packet can be played back only
 *    while it is younger than MAX_SKEW_MS, far less than the tombstone TTL
 *    (30 minutes), so it can only repeat what the store already holds or has
 *    superseded. Clocks of nodes must agree within MAX_SKEW_MS (NTP does far
 *    better).
 *  - within that, a sliding window of sequence numbers per sender and boot
 *    epoch (as IPsec and WireGuard do): a repeat, or a number that fell out
 *    of the window, is refused, so not even a recent packet is taken twice.
 *
 * The header is signed by its sender's node key (transport.ts checks it
 * before it gets here), so only a sender moves its own windows. Windows are
 * kept per (sender, epoch), and a new epoch never shadows an older one; a
 * sender's many epochs can at worst push windows out of memory (leaving the
 * clock check).
 */
export const MAX_SKEW_MS = 2 * 60_000
/** How far behind the newest sequence number a late packet may be (UDP and TCP interleave). */
export const SEQ_WINDOW = 1024
/**
 * How far one packet may move a sender's window ahead. A sender counts one per message it seals,
 * to anyone: no receiver misses 2^32 of them between two it gets. Beyond, the number is a lie
 * (headers are signed, so only by the sender itself, which would lose its own later packets).
 */
export const MAX_SEQ_JUMP = 2 ** 32
/** Windows remembered; beyond that the least recently used is forgotten (only the clock check then stands for it). */
export const MAX_WINDOWS = 4096

export type Verdict = 'fresh' | 'stale' | 'replayed'

type Window = {top: number; seen: Uint8Array}

export class Freshness {
  private readonly windows = new Map<string, Window>()

  /** Decides without remembering. */
  check(h: Header, now: number): Verdict {
    if (Math.abs(now - h.ts) > MAX_SKEW_MS) return 'stale'
    const w = this.windows.get(windowKey(h))
    if (w && h.seq - w.top > MAX_SEQ_JUMP) return 'stale'
    if (!w || h.seq > w.top) return 'fresh'
    if (w.top - h.seq >= SEQ_WINDOW) return 'stale'
    return bit(w.seen, h.seq) ? 'replayed' : 'fresh'
  }

  /** check(), and when fresh, remembers the packet so it cannot be accepted again. */
  accept(h: Header, now: number): Verdict {
    const v = this.check(h, now)
    if (v !== 'fresh') return v
    const key = windowKey(h)
    let w = this.windows.get(key)
    if (!w) {
      w = {top: h.seq, seen: new Uint8Array(SEQ_WINDOW / 8)}
    } else if (h.seq > w.top) {
      // Slots between the old top and the new one are now for numbers never seen.
      const gap = Math.min(h.seq - w.top, SEQ_WINDOW)
      for (let i = 1; i <= gap; i++) setBit(w.seen, w.top + i, false)
      w.top = h.seq
    }
    setBit(w.seen, h.seq, true)
    // Re-inserting keeps the map in least-recently-used order.
    this.windows.delete(key)
    this.windows.set(key, w)
    if (this.windows.size > MAX_WINDOWS) this.windows.delete(this.windows.keys().next().value as string)
    return 'fresh'
  }
}

function windowKey(h: Header): string {
  return `${h.epoch} ${h.from}`
}

function bit(seen: Uint8Array, seq: number): boolean {
  const i = seq % SEQ_WINDOW
  return ((seen[i >> 3] as number) & (1 << (i & 7))) !== 0
}

function setBit(seen: Uint8Array, seq: number, on: boolean): void {
  const i = seq % SEQ_WINDOW
  const m = 1 << (i & 7)
  seen[i >> 3] = on ? (seen[i >> 3] as number) | m : (seen[i >> 3] as number) & ~m
}
