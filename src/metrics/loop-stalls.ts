// What a long event loop delay was made of (issue 24): the main thread running (JavaScript, or a
// synchronous call the kernel served on its CPU), waiting for a CPU while runnable (a loaded
// machine: load 100 on 2 cores), or off the CPU without being runnable (blocked in a syscall or
// a page fault, or simply the idle part of the tick). A timer ticks every `intervalMs`; at each
// tick the main thread's own scheduler counters (/proc/thread-self/schedstat: time on a CPU,
// time runnable on a run queue) are read, and a tick that came `thresholdMs` or more late is a
// stall whose wall time is split by the counters' growth over it.
import {closeSync, openSync, readSync} from 'node:fs'
import {performance} from 'node:perf_hooks'

/** One stall, in ms: how late the tick came, and the ticks' whole gap split in ran / waited / off CPU. */
export interface LoopStall {
  delayMs: number
  ranMs: number
  waitedMs: number
  offCpuMs: number
}

/** Over a window: the longest stall, how many there were, and the sums of their parts (ms). */
export interface StallWindow {
  longest: LoopStall | undefined
  count: number
  delayMs: number
  ranMs: number
  waitedMs: number
  offCpuMs: number
}

/** "loop: stall 812 ms: ran 120 ms, waited for a CPU 650 ms, off CPU 62 ms" (the bench reads these lines). */
export function describeStall(s: LoopStall): string {
  const r = Math.round
  return `loop: stall ${r(s.delayMs)} ms: ran ${r(s.ranMs)} ms, waited for a CPU ${r(s.waitedMs)} ms, off CPU ${r(s.offCpuMs)} ms`
}

/** The calling thread's schedstat: ns on a CPU, ns runnable and waiting; undefined where the kernel has none. */
export class ThreadSchedstat {
  private readonly fd: number | undefined
  private readonly buf = Buffer.alloc(96)

  constructor() {
    try {
      // thread-self resolves at open: the thread that constructs this is the one read after.
      this.fd = openSync('/proc/thread-self/schedstat', 'r')
    } catch {
      this.fd = undefined
    }
  }

  read(): {runNs: number; waitNs: number} | undefined {
    if (this.fd === undefined) return undefined
    try {
      const n = readSync(this.fd, this.buf, 0, this.buf.length, 0)
      const [run, wait] = this.buf.toString('latin1', 0, n).split(' ')
      return {runNs: Number(run), waitNs: Number(wait)}
    } catch {
      return undefined
    }
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd)
  }
}

const emptyWindow = (): StallWindow => ({longest: undefined, count: 0, delayMs: 0, ranMs: 0, waitedMs: 0, offCpuMs: 0})

export class LoopStallTracer {
  private readonly sched = new ThreadSchedstat()
  private readonly timer: NodeJS.Timeout
  private lastAt = performance.now()
  private last = this.sched.read()
  private win = emptyWindow()

  /** onStall: told of every stall of `logMs` or more (the agent logs them). Construct on the main thread. */
  constructor(
    private readonly opts: {intervalMs?: number; thresholdMs?: number; logMs?: number; onStall?: (s: LoopStall) => void} = {},
  ) {
    this.timer = setInterval(() => this.tick(), opts.intervalMs ?? 20)
    this.timer.unref()
  }

  private tick(): void {
    const now = performance.now()
    const cur = this.sched.read()
    const gap = now - this.lastAt
    const delay = gap - (this.opts.intervalMs ?? 20)
    if (delay >= (this.opts.thresholdMs ?? 50)) {
      const ranMs = cur && this.last ? (cur.runNs - this.last.runNs) / 1e6 : 0
      const waitedMs = cur && this.last ? (cur.waitNs - this.last.waitNs) / 1e6 : 0
      const s: LoopStall = {delayMs: delay, ranMs, waitedMs, offCpuMs: Math.max(0, gap - ranMs - waitedMs)}
      const w = this.win
      w.count++
      w.delayMs += s.delayMs
      w.ranMs += s.ranMs
      w.waitedMs += s.waitedMs
      w.offCpuMs += s.offCpuMs
      if (!w.longest || s.delayMs > w.longest.delayMs) w.longest = s
      if (s.delayMs >= (this.opts.logMs ?? 200)) this.opts.onStall?.(s)
    }
    this.lastAt = now
    this.last = cur
  }

  /** The stalls since the previous call (or the start), then a new window. */
  window(): StallWindow {
    const w = this.win
    this.win = emptyWindow()
    return w
  }

  stop(): void {
    clearInterval(this.timer)
    this.sched.close()
  }
}
