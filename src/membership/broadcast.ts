import type {Update} from './messages.js'

/**
 * Sends of one piece of news by one node, in all, in a cluster of n nodes: about mult * log10(n),
 * enough for an epidemic to reach everyone with high probability, and no more. SWIM's rumours
 * (here) and gossip's entries (src/gossip/fanout.ts) are both bounded by it.
 */
export function retransmitLimit(mult: number, n: number): number {
  return mult * Math.max(1, Math.ceil(Math.log10(n + 1)))
}

/**
 * Updates waiting to be piggybacked, each sent a bounded number of times
 * (about mult * log10(n) : enough for an epidemic to reach everyone with high
 * probability, and no more). A newer rumour about a member replaces the older
 * one: only the latest is worth spreading. The least sent go first, the newest
 * of those first.
 */
export class BroadcastQueue {
  private readonly q = new Map<string, {u: Update; sent: number; n: number}>()
  private pushed = 0

  constructor(private readonly mult: number) {}

  get size(): number {
    return this.q.size
  }

  static readonly limit = retransmitLimit

  push(u: Update): void {
    this.q.delete(u.id)
    this.q.set(u.id, {u, sent: 0, n: ++this.pushed})
  }

  /** Up to max updates (and about maxBytes of JSON) for one message, counting each as sent once more. */
  take(max: number, n: number, maxBytes = Infinity): Update[] {
    if (this.q.size === 0) return []
    const limit = BroadcastQueue.limit(this.mult, n)
    // Least sent first; among those, the newest (fresh news must not wait behind a backlog).
    const items = [...this.q.values()].sort((a, b) => a.sent - b.sent || b.n - a.n)
    const out: Update[] = []
    let bytes = 0
    for (const it of items) {
      if (out.length >= max) break
      const size = JSON.stringify(it.u).length + 1
      if (out.length > 0 && bytes + size > maxBytes) break
      bytes += size
      out.push(it.u)
      if (++it.sent >= limit) this.q.delete(it.u.id)
    }
    return out
  }
}
