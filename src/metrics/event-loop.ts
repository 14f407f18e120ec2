// How long the agent's event loop kept callbacks waiting: SWIM probe replies, the API and the
// store's commits all run on it, so a manager that holds it (placing, rendering a big list) is
// a manager its peers suspect. perf_hooks samples it; each scrape reads the window since the
// previous one and starts a new window.
import {constants, monitorEventLoopDelay, PerformanceObserver, type IntervalHistogram} from 'node:perf_hooks'
import {getHeapStatistics} from 'node:v8'
import {LoopStallTracer, describeStall, type StallWindow} from './loop-stalls.js'

/**
 * Seconds; 0 when the window saw no sample. gcMax/gcTotal: the longest garbage collection pause
 * of the main thread in the window and all of them together (what of a delay was the collector's).
 */
export type LoopDelayWindow = {p50: number; p99: number; max: number; gcMax: number; gcTotal: number; stalls?: StallWindow}

export class EventLoopDelay {
  private readonly h: IntervalHistogram
  private readonly gc: PerformanceObserver
  private gcMax = 0
  private gcTotal = 0
  private readonly stalls: LoopStallTracer | undefined

  /**
   * onLongGc: told of every collection pause of longMs or more (the agent logs them: which kind, how big the heap).
   * onLongStall: with it, stalls of 50 ms or more are split into ran / waited for a CPU / off CPU
   * (loop-stalls.ts) and each of stallLogMs (200) or more is told in a line.
   */
  constructor(
    resolutionMs = 10,
    opts: {longMs?: number; onLongGc?: (what: string) => void; onLongStall?: (what: string) => void; stallLogMs?: number} = {},
  ) {
    this.h = monitorEventLoopDelay({resolution: resolutionMs})
    this.h.enable()
    const onLongStall = opts.onLongStall
    this.stalls = onLongStall
      ? new LoopStallTracer({logMs: opts.stallLogMs ?? 200, onStall: (s) => onLongStall(describeStall(s))})
      : undefined
    const longMs = opts.longMs ?? 50
    this.gc = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        this.gcMax = Math.max(this.gcMax, e.duration)
        this.gcTotal += e.duration
        if (opts.onLongGc && e.duration >= longMs) opts.onLongGc(describeGc(e.duration, (e.detail as {kind?: number})?.kind))
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
      ...(this.stalls ? {stalls: this.stalls.window()} : {}),
    }
    this.h.reset()
    this.gcMax = 0
    this.gcTotal = 0
    return w
  }

  stop(): void {
    this.h.disable()
    this.gc.disconnect()
    this.stalls?.stop()
  }
}

const GC_KINDS: [number, string][] = [
  [constants.NODE_PERFORMANCE_GC_MAJOR, 'major'],
  [constants.NODE_PERFORMANCE_GC_MINOR, 'minor'],
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL, 'incremental'],
  [constants.NODE_PERFORMANCE_GC_WEAKCB, 'weak callbacks'],
]

/** "gc: major pause 212 ms, heap 143 of 180 MiB" */
export function describeGc(ms: number, kind: number | undefined): string {
  const h = getHeapStatistics()
  const mib = (n: number) => Math.round(n / 2 ** 20)
  const what = GC_KINDS.filter(([k]) => kind !== undefined && (kind & k) !== 0).map(([, n]) => n)
  return `gc: ${what.join('+') || 'unknown'} pause ${Math.round(ms)} ms, heap ${mib(h.used_heap_size)} of ${mib(h.total_heap_size)} MiB`
}
