import type {Header} from './codec.js'

/**
 * Refuses sealed messages that were seen before or are too old, so a packet
 * captured on the wire cannot be played back later (say, an `updates` that
 * brings back a service whose tombstone has since been reaped).
 *
 * Two checks, because each covers the other's blind spot:
 *  - a sliding window of sequence numbers per sender and boot epoch (as in
 *    IPsec and WireGuard): a repeat, or a number that fell out of the window,
 *    is refused. A sender that restarts gets a larger epoch, which resets
 *    the window; an older epoch is refused.
 *  - the sender's clock in the packet must be within MAX_SKEW_MS of ours. The
 *    window lives in memory, so after a restart of the receiver only this
 *    check stands: a replay must then be younger than MAX_SKEW_MS, which is
 *    far shorter than the tombstone TTL (30 minutes), so it can only repeat
 *    something the receiver already holds. Clocks of nodes must agree within
 *    MAX_SKEW_MS (any NTP does far better).
 */
export const MAX_SKEW_MS = 2 * 60_000
/** How far behind the newest sequence number a late packet may be (UDP and TCP interleave). */
export const SEQ_WINDOW = 1024
/** Senders remembered; beyond that the least recently heard is forgotten (only the clock check then stands for it). */
export const MAX_SENDERS = 4096

export type Verdict = 'fresh' | 'stale' | 'replayed'

type Window = {epoch: number; top: number; seen: Uint8Array}

export class Freshness {
  private readonly senders = new Map<string, Window>()

  /** Decides without remembering (cheap checks run before the costly ones). */
  check(h: Header, now: number): Verdict {
    if (Math.abs(now - h.ts) > MAX_SKEW_MS) return 'stale'
    const w = this.senders.get(h.from)
    if (!w || h.epoch > w.epoch) return 'fresh'
    if (h.epoch < w.epoch) return 'stale'
    if (h.seq > w.top) return 'fresh'
    if (w.top - h.seq >= SEQ_WINDOW) return 'stale'
    return bit(w.seen, h.seq) ? 'replayed' : 'fresh'
  }

  /** check(), and when fresh, remembers the packet so it cannot be accepted again. */
  accept(h: Header, now: number): Verdict {
    const v = this.check(h, now)
    if (v !== 'fresh') return v
    let w = this.senders.get(h.from)
    if (!w || h.epoch > w.epoch) {
      w = {epoch: h.epoch, top: h.seq, seen: new Uint8Array(SEQ_WINDOW / 8)}
    } else if (h.seq > w.top) {
      // Slots between the old top and the new one are now for numbers never seen.
      const gap = Math.min(h.seq - w.top, SEQ_WINDOW)
      for (let i = 1; i <= gap; i++) setBit(w.seen, w.top + i, false)
      w.top = h.seq
    }
    setBit(w.seen, h.seq, true)
    // Re-inserting keeps the map in least-recently-heard order.
    this.senders.delete(h.from)
    this.senders.set(h.from, w)
    if (this.senders.size > MAX_SENDERS) this.senders.delete(this.senders.keys().next().value as string)
    return 'fresh'
  }
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
