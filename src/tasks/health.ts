/**
 * Health checks, with Docker's flags and semantics: --health-cmd runs inside the task (as `task
 * exec` does: its namespaces, cgroup and user) through /bin/sh -c, every --health-interval, and
 * fails when it exits non-zero or outlasts --health-timeout. A task is 'starting' until its first
 * success, 'healthy' after a success, 'unhealthy' after --health-retries failures in a row;
 * failures within --health-start-period do not count. The node that runs the task writes its
 * health into the task's status; a task is a backend and a DNS answer only when healthy
 * (src/dataplane/desired.ts isServing), so it leaves them when unhealthy and comes back when
 * healthy again. (Swarm would also replace an unhealthy task; swarmnet keeps it, out of the load
 * balancer, until it recovers or the service changes.)
 */
import {launch} from '../sys/exec.js'
import {UserError} from '../model/errors.js'
import {parseDuration} from '../model/duration.js'
import type {HealthSpec, Service, TaskHealth} from '../model/types.js'

/** Docker's defaults. */
export const HEALTH_DEFAULTS = {intervalMs: 30_000, timeoutMs: 30_000, retries: 3, startPeriodMs: 0}
/** The least interval a check may have (Docker refuses less than 1 ms; a check every millisecond is no check). */
const MIN_INTERVAL_MS = 100
const MAX_MS = 24 * 3_600_000

export type HealthRequest = {
  healthCmd?: string
  healthInterval?: string
  healthTimeout?: string
  healthRetries?: number
  healthStartPeriod?: string
  noHealthcheck?: boolean
}

/** What a service spec keeps of the --health-* flags: checked, in stored form; undefined = no check. */
export function healthSpec(req: HealthRequest): HealthSpec | undefined {
  const timing =
    req.healthInterval !== undefined ||
    req.healthTimeout !== undefined ||
    req.healthRetries !== undefined ||
    req.healthStartPeriod !== undefined
  if (req.noHealthcheck) {
    if (req.healthCmd !== undefined || timing) throw new UserError('--no-healthcheck conflicts with --health-* options')
    return undefined
  }
  if (req.healthCmd === undefined) {
    if (timing)
      throw new UserError('--health-interval, --health-timeout, --health-retries and --health-start-period need --health-cmd')
    return undefined
  }
  if (req.healthCmd.trim() === '') throw new UserError('--health-cmd is empty')
  const ms = (v: string | undefined, flag: string, dflt: number, min: number) => {
    if (v === undefined) return dflt
    const n = parseDuration(v, flag)
    if (n < min || n > MAX_MS) throw new UserError(`invalid ${flag} '${v}': from ${min} ms to 24h`)
    return n
  }
  const retries = req.healthRetries ?? HEALTH_DEFAULTS.retries
  if (!Number.isInteger(retries) || retries < 1 || retries > 1000)
    throw new UserError(`invalid --health-retries '${String(req.healthRetries)}': a whole number from 1 to 1000`)
  return {
    cmd: req.healthCmd,
    intervalMs: ms(req.healthInterval, '--health-interval', HEALTH_DEFAULTS.intervalMs, MIN_INTERVAL_MS),
    timeoutMs: ms(req.healthTimeout, '--health-timeout', HEALTH_DEFAULTS.timeoutMs, MIN_INTERVAL_MS),
    retries,
    startPeriodMs: ms(req.healthStartPeriod, '--health-start-period', HEALTH_DEFAULTS.startPeriodMs, 0),
  }
}

/** Why a stored service's health check is malformed (a value gossiped in), or undefined. */
export function healthSpecProblem(r: Record<string, unknown>): string | undefined {
  if (r.healthcheck === undefined) return undefined
  const h = r.healthcheck as Record<string, unknown>
  if (typeof h !== 'object' || h === null || Array.isArray(h)) return "'healthcheck' is not an object"
  if (typeof h.cmd !== 'string' || h.cmd === '') return "'healthcheck.cmd' is not a command"
  for (const k of ['intervalMs', 'timeoutMs', 'retries', 'startPeriodMs'])
    if (!Number.isSafeInteger(h[k]) || (h[k] as number) < 0 || (h[k] as number) > MAX_MS) return `'healthcheck.${k}' is malformed`
  if ((h.intervalMs as number) < MIN_INTERVAL_MS || (h.timeoutMs as number) < MIN_INTERVAL_MS || (h.retries as number) < 1)
    return "'healthcheck' is malformed"
  return undefined
}

/** One check's outcome folded into the task's health (Docker's rules, see the top of this file). */
export function nextHealth(
  cur: {health: TaskHealth; failures: number},
  ok: boolean,
  spec: HealthSpec,
  inStartPeriod: boolean,
): {health: TaskHealth; failures: number} {
  if (ok) return {health: 'healthy', failures: 0}
  if (inStartPeriod && cur.health === 'starting') return cur
  const failures = cur.failures + 1
  return {health: failures >= spec.retries ? 'unhealthy' : cur.health, failures}
}

type Watched = {
  spec: HealthSpec
  startedAt: number
  health: TaskHealth
  failures: number
  timer: NodeJS.Timeout
  running: boolean
}

/**
 * Runs the checks of this node's tasks. argvOf gives the command line that runs argv inside the
 * task (src/tasks/exec.ts taskExecArgv); report is told every change of a task's health.
 */
export class HealthChecker {
  private readonly tasks = new Map<string, Watched>()

  constructor(
    private readonly o: {
      argvOf: (taskId: string, argv: string[]) => string[]
      report: (taskId: string, health: TaskHealth, output: string) => void
    },
  ) {}

  /** Starts checking a task (again from 'starting' when its spec changed or it is new). */
  watch(taskId: string, spec: HealthSpec, health: TaskHealth = 'starting'): void {
    const cur = this.tasks.get(taskId)
    if (cur && JSON.stringify(cur.spec) === JSON.stringify(spec)) return
    this.unwatch(taskId)
    const w: Watched = {spec, startedAt: Date.now(), health, failures: 0, running: false, timer: undefined as never}
    w.timer = setInterval(() => void this.check(taskId, w), spec.intervalMs)
    w.timer.unref()
    this.tasks.set(taskId, w)
  }

  unwatch(taskId: string): void {
    const w = this.tasks.get(taskId)
    if (w) clearInterval(w.timer)
    this.tasks.delete(taskId)
  }

  stop(): void {
    for (const id of [...this.tasks.keys()]) this.unwatch(id)
  }

  private async check(taskId: string, w: Watched): Promise<void> {
    if (w.running) return // a check still under way (it has its own timeout): no second one beside it
    w.running = true
    let ok = false
    let output = ''
    try {
      const argv = this.o.argvOf(taskId, ['/bin/sh', '-c', w.spec.cmd])
      ;({ok, output} = await run(argv, w.spec.timeoutMs))
    } catch (e) {
      output = (e as Error).message
    } finally {
      w.running = false
    }
    if (this.tasks.get(taskId) !== w) return // unwatched meanwhile
    const next = nextHealth(w, ok, w.spec, Date.now() - w.startedAt < w.spec.startPeriodMs)
    const changed = next.health !== w.health
    w.health = next.health
    w.failures = next.failures
    if (changed) this.o.report(taskId, w.health, output)
  }
}

/**
 * Runs argv (through the agent's spawner, src/sys/exec.ts) in a session of its own; ok when it
 * exits 0 within timeoutMs, else it is killed with its process group. The output is stdout and
 * stderr as they came, the last 4,096 characters.
 */
async function run(argv: string[], timeoutMs: number): Promise<{ok: boolean; output: string}> {
  const r = await launch({argv, env: process.env, detached: true, timeoutMs, killGroup: true, merge: true, tail: 4096})
  if (r.error) return {ok: false, output: r.error.message}
  const output = r.timedOut ? `${r.stdout}\nhealth check timed out after ${timeoutMs} ms` : r.stdout
  return {ok: r.code === 0, output: output.trim()}
}

/** The health a new status starts with: 'starting' when the service has a check, none otherwise. */
export const initialHealth = (svc: Pick<Service, 'healthcheck'>): TaskHealth | undefined =>
  svc.healthcheck ? 'starting' : undefined
