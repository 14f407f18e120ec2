/**
 * Restarts tasks whose process has exited. It only knows pids, so a restarted agent adopts the
 * tasks that kept running simply by watching their pids again.
 */
import {isAlive, pidExists, procStat} from '../sys/proc.js'

export type SupervisorEvent =
  | {type: 'exited'; taskId: string; pid: number}
  | {type: 'restarted'; taskId: string; pid: number; restarts: number}
  | {type: 'restart-failed'; taskId: string; error: Error; restarts: number}

export interface SupervisorOptions {
  pollMs?: number
  /** First delay before a restart; doubles per consecutive failure. */
  baseBackoffMs?: number
  maxBackoffMs?: number
  /** A process that ran this long resets the backoff. */
  stableMs?: number
  onEvent?: (e: SupervisorEvent) => void
}

/** Starts the task again; resolves to the new pid. */
export type RestartFn = () => Promise<number>

interface Watched {
  taskId: string
  pid: number
  /** Guards against the pid being reused by an unrelated process. */
  startTime: number | undefined
  restart: RestartFn
  restarts: number
  consecutive: number
  startedAt: number
  /** Set while dead: when the next restart attempt is due. */
  retryAt?: number
  busy: boolean
  /** Polls since the last full check (the start time read from /proc). */
  sinceFull: number
}

/**
 * Every poll asks kill(pid, 0); every FULL_CHECK_EVERY-th reads /proc/<pid>/stat as well. A
 * thousand tasks' stat files read twice a second held a node's event loop for tens of ms each
 * time. What only the full check sees (a zombie, a pid reused by another process) is caught
 * within FULL_CHECK_EVERY polls; a process that is gone is seen at the next one, as before.
 */
export const FULL_CHECK_EVERY = 10

export interface WatchedTask {
  taskId: string
  pid: number
  restarts: number
}

export class Supervisor {
  private readonly tasks = new Map<string, Watched>()
  private timer: NodeJS.Timeout | undefined
  private readonly pollMs: number
  private readonly baseBackoffMs: number
  private readonly maxBackoffMs: number
  private readonly stableMs: number
  private readonly onEvent: (e: SupervisorEvent) => void

  constructor(opts: SupervisorOptions = {}) {
    this.pollMs = opts.pollMs ?? 500
    this.baseBackoffMs = opts.baseBackoffMs ?? 250
    this.maxBackoffMs = opts.maxBackoffMs ?? 5000
    this.stableMs = opts.stableMs ?? 10_000
    this.onEvent = opts.onEvent ?? (() => undefined)
  }

  /**
   * Watches a task; also how a restarted agent adopts a pid that is already running.
   * restarts carries over a count the agent kept in the store.
   */
  watch(taskId: string, pid: number, restart: RestartFn, restarts = 0): void {
    this.tasks.set(taskId, {
      taskId,
      pid,
      startTime: procStat(pid)?.startTime,
      restart,
      restarts,
      consecutive: 0,
      startedAt: Date.now(),
      busy: false,
      sinceFull: FULL_CHECK_EVERY, // the first poll checks in full
    })
  }

  /** Stops watching (call before stopping a task on purpose, or it comes back). */
  unwatch(taskId: string): void {
    this.tasks.delete(taskId)
  }

  list(): WatchedTask[] {
    return [...this.tasks.values()].map(({taskId, pid, restarts}) => ({taskId, pid, restarts}))
  }

  start(): void {
    if (this.timer) return
    this.timer = setInterval(() => this.poll(), this.pollMs)
    this.timer.unref() // the supervisor alone must not keep a process alive
  }

  stop(): void {
    clearInterval(this.timer)
    this.timer = undefined
  }

  private backoff(consecutive: number): number {
    return Math.min(this.baseBackoffMs * 2 ** consecutive, this.maxBackoffMs)
  }

  /** One pass; public so tests and the agent can force a check. */
  poll(): void {
    const now = Date.now()
    for (const w of this.tasks.values()) {
      if (w.busy) continue
      if (w.retryAt === undefined) {
        if (this.alive(w)) {
          if (now - w.startedAt >= this.stableMs) w.consecutive = 0
          continue
        }
        this.onEvent({type: 'exited', taskId: w.taskId, pid: w.pid})
        // A process that crashed soon after starting backs off; one that ran a while restarts soon.
        if (now - w.startedAt >= this.stableMs) w.consecutive = 0
        w.retryAt = now + this.backoff(w.consecutive)
      }
      if (now >= w.retryAt) void this.restartOne(w)
    }
  }

  private alive(w: Watched): boolean {
    if (w.sinceFull + 1 < FULL_CHECK_EVERY && pidExists(w.pid)) {
      w.sinceFull += 1
      return true
    }
    w.sinceFull = 0
    return isAlive(w.pid, w.startTime)
  }

  private async restartOne(w: Watched): Promise<void> {
    w.busy = true
    w.restarts += 1
    w.consecutive += 1
    try {
      const pid = await w.restart()
      if (this.tasks.get(w.taskId) !== w) return // unwatched meanwhile
      w.pid = pid
      w.startTime = procStat(pid)?.startTime
      w.startedAt = Date.now()
      w.sinceFull = FULL_CHECK_EVERY
      w.retryAt = undefined
      this.onEvent({type: 'restarted', taskId: w.taskId, pid, restarts: w.restarts})
    } catch (e) {
      w.retryAt = Date.now() + this.backoff(w.consecutive)
      const error = e instanceof Error ? e : new Error(String(e))
      this.onEvent({type: 'restart-failed', taskId: w.taskId, error, restarts: w.restarts})
    } finally {
      w.busy = false
    }
  }
}
