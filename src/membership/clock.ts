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
    // fn runs once what has arrived meanwhile is read: a timer that comes due while the loop is
    // held would otherwise run before the datagrams waiting in the socket (libuv runs timers
    // before it polls), and judge a probe failed whose ack is there, or a suspicion unrefuted
    // whose refutation is. setImmediate runs after the poll phase that reads them.
    let imm: NodeJS.Immediate | undefined
    // The immediate is not unref'd: Node polls without a timeout while only unref'd immediates
    // wait, so such an immediate ran only when something else woke the loop (a gossip round or a
    // probe came up to a second late on a quiet node). It keeps the loop for one turn at most.
    const t = setTimeout(() => {
      imm = setImmediate(fn)
    }, ms)
    // Probe timers must never keep a stopping agent alive.
    t.unref()
    return () => {
      clearTimeout(t)
      if (imm) clearImmediate(imm)
    }
  },
}
