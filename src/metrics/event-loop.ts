// How long the agent's event loop kept callbacks waiting: SWIM probe replies, the API and the
// store's commits all run on it, so a manager that holds it (placing, rendering a big list) is
// a manager its peers suspect. perf_hooks samples it; each scrape reads the window since the
// previous one and starts a new window.
import {monitorEventLoopDelay, PerformanceObserver, type IntervalHistogram} from 'node:perf_hooks'

/**
 * Seconds; 0 when the window saw no sample. gcMax/gcTotal: the longest garbage collection pause
 * of the main thread in the window and all of them together (what of a delay was the collector's).
 */
export type LoopDelayWindow = {p50: number; p99: number; max: number; gcMax: number; gcTotal: number}

export class EventLoopDelay {
  private readonly h: IntervalHistogram
  private readonly gc: PerformanceObserver
  private gcMax = 0
  private gcTotal = 0

  constructor(resolutionMs = 10) {
    this.h = monitorEventLoopDelay({resolution: resolutionMs})
    this.h.enable()
    this.gc = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        this.gcMax = Math.max(this.gcMax, e.duration)
        this.gcTotal += e.duration
      }
    })
    this.gc.observe({entryTypes: ['gc']})
  }

  /** The delays seen since the last call (or the start), then a new window. */
  window(): LoopDelayWindow {
    const seen = this.h.count > 0
    const s = (ns: number) => (seen ? ns / 1e9 : 0)
    const w = {
      p50: s(this.h.percentile(50)),
      p99: s(this.h.percentile(99)),
      max: s(this.h.max),
      gcMax: this.gcMax / 1000,
      gcTotal: this.gcTotal / 1000,
    }
    this.h.reset()
    this.gcMax = 0
    this.gcTotal = 0
    return w
  }

  stop(): void {
    this.h.disable()
    this.gc.disconnect()
  }
}
