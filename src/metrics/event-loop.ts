// How long the agent's event loop kept callbacks waiting: SWIM probe replies, the API and the
// store's commits all run on it, so a manager that holds it (placing, rendering a big list) is
// a manager its peers suspect. perf_hooks samples it; each scrape reads the window since the
// previous one and starts a new window.
import {monitorEventLoopDelay, type IntervalHistogram} from 'node:perf_hooks'

/** Seconds; 0 when the window saw no sample. */
export type LoopDelayWindow = {p50: number; p99: number; max: number}

export class EventLoopDelay {
  private readonly h: IntervalHistogram

  constructor(resolutionMs = 10) {
    this.h = monitorEventLoopDelay({resolution: resolutionMs})
    this.h.enable()
  }

  /** The delays seen since the last call (or the start), then a new window. */
  window(): LoopDelayWindow {
    const seen = this.h.count > 0
    const s = (ns: number) => (seen ? ns / 1e9 : 0)
    const w = {p50: s(this.h.percentile(50)), p99: s(this.h.percentile(99)), max: s(this.h.max)}
    this.h.reset()
    return w
  }

  stop(): void {
    this.h.disable()
  }
}
