import type {Cancel, Clock} from './clock.js'

/**
 * Lifeguard's suspicion timer: it starts at max and shrinks toward min as
 * independent confirmations (other members suspecting the same incarnation)
 * arrive, on a log scale, reaching min at k confirmations:
 *   timeout(c) = max(min, max - (max - min) * log(c + 1) / log(k + 1))
 * A suspect that many members cannot reach is declared dead fast; one that a
 * single slow member suspects has time to refute.
 */
export class Suspicion {
  private readonly confirmers = new Set<string>()
  private cancel: Cancel | undefined
  private readonly start: number

  constructor(
    private readonly clock: Clock,
    /** Who raised it: its confirmation is not an independent one. */
    from: string,
    private readonly k: number,
    private readonly minMs: number,
    private readonly maxMs: number,
    private readonly onTimeout: () => void,
  ) {
    this.start = clock.now()
    this.confirmers.add(from)
    this.arm(k < 1 ? minMs : maxMs)
  }

  /** The timeout after c independent confirmations. */
  static timeout(c: number, k: number, minMs: number, maxMs: number): number {
    if (k < 1) return minMs
    const frac = Math.log(c + 1) / Math.log(k + 1)
    return Math.max(minMs, Math.floor(maxMs - (maxMs - minMs) * frac))
  }

  get confirmations(): number {
    return this.confirmers.size - 1
  }

  /** A new suspecter shortens the timer; the same one twice does not. Returns whether it counted. */
  confirm(from: string): boolean {
    if (this.confirmations >= this.k || this.confirmers.has(from)) return false
    this.confirmers.add(from)
    const total = Suspicion.timeout(this.confirmations, this.k, this.minMs, this.maxMs)
    const left = this.start + total - this.clock.now()
    this.cancel?.()
    this.arm(Math.max(0, left))
    return true
  }

  stop(): void {
    this.cancel?.()
    this.cancel = undefined
  }

  private arm(ms: number): void {
    this.cancel = this.clock.after(ms, () => {
      this.cancel = undefined
      this.onTimeout()
    })
  }
}

/** memberlist's scaling: the minimum grows with the log of the cluster's size. */
export function suspicionMinMs(mult: number, n: number, probeIntervalMs: number): number {
  return Math.floor(mult * Math.max(1, Math.log10(Math.max(1, n))) * probeIntervalMs)
}
