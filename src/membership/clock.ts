/**
 * Time as the membership protocol sees it: the real clock in the agent, a
 * fake one in unit tests and in the 1,000-node simulation, so the same code
 * runs in both.
 */
export type Cancel = () => void

export interface Clock {
  now(): number
  /** Runs fn once after ms; the returned function cancels it. */
  after(ms: number, fn: () => void): Cancel
}

export const realClock: Clock = {
  now: () => Date.now(),
  after(ms, fn) {
    const t = setTimeout(fn, ms)
    // Probe timers must never keep a stopping agent alive.
    t.unref()
    return () => clearTimeout(t)
  },
}
