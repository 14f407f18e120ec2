/**
 * Lifeguard's local health awareness: a node that misses acks, gets no nacks
 * from the helpers it asked, or has to refute suspicions of itself is more
 * likely slow itself than surrounded by dead peers. Its score rises, and
 * every probe interval and timeout is multiplied by score + 1: it probes
 * less aggressively instead of accusing others. Good probes bring it down.
 */
export class Awareness {
  private s = 0

  constructor(private readonly max: number) {}

  get score(): number {
    return this.s
  }

  /** The factor timers are scaled by: 1 when healthy. */
  get multiplier(): number {
    return this.s + 1
  }

  apply(delta: number): void {
    this.s = Math.min(this.max, Math.max(0, this.s + delta))
  }
}
