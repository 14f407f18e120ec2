/**
 * How a task stops (Docker's --stop-signal and --stop-grace-period), and the order of a
 * graceful stop: the task first leaves every node's load-balancing tables and DNS answers
 * (its record says desiredState 'shutdown': src/dataplane/desired.ts keeps its endpoint, so
 * established connections go on, but no table picks it for a new one), the node waits for the
 * nodes' word that their maps have synced that (src/dataplane/drain-acks.ts), then sends the stop
 * signal, and SIGKILL (cgroup.kill) when the process is still there after the grace period.
 */
import {constants} from 'node:os'
import {UserError} from '../model/errors.js'
import {parseDuration} from '../model/duration.js'
import type {Service} from '../model/types.js'

/** Docker's default grace period before SIGKILL. */
export const DEFAULT_STOP_GRACE_MS = 10_000
/** Docker's default stop signal. */
export const DEFAULT_STOP_SIGNAL: NodeJS.Signals = 'SIGTERM'
/** The longest grace period a service may ask for: an hour, beyond which a stop is a hang. */
export const MAX_STOP_GRACE_MS = 3_600_000
/**
 * From a task's leaving the tables to its signal, for a node that does not acknowledge drains (an
 * agent from before them: drain-acks.ts): Docker's fixed wait for gossip to converge.
 */
export const DRAIN_DELAY_MS = 2_000

const SIGNALS = constants.signals as Record<string, number>

/** SIGTERM, TERM, sigterm or 15 -> 'SIGTERM'; SIGKILL and SIGSTOP are refused (nothing could be graceful). */
export function parseStopSignal(text: string): NodeJS.Signals {
  const t = text.trim().toUpperCase()
  const name = /^\d+$/.test(t)
    ? Object.keys(SIGNALS).find((k) => SIGNALS[k] === Number(t))
    : Object.keys(SIGNALS).find((k) => k === t || k === `SIG${t}`)
  if (!name) throw new UserError(`invalid --stop-signal '${text}': a signal such as SIGTERM, SIGINT, QUIT or 15`)
  if (name === 'SIGKILL' || name === 'SIGSTOP') throw new UserError(`invalid --stop-signal '${text}': ${name} cannot be caught`)
  return name as NodeJS.Signals
}

/** What a service spec keeps of --stop-signal and --stop-grace-period: checked, in stored form. */
export function stopSpec(req: {stopSignal?: string; stopGracePeriod?: string}): Pick<Service, 'stopSignal' | 'stopGraceMs'> {
  const out: Pick<Service, 'stopSignal' | 'stopGraceMs'> = {}
  if (req.stopSignal !== undefined) out.stopSignal = parseStopSignal(req.stopSignal)
  if (req.stopGracePeriod !== undefined) {
    const ms = parseDuration(req.stopGracePeriod, '--stop-grace-period')
    if (ms > MAX_STOP_GRACE_MS) throw new UserError(`invalid --stop-grace-period '${req.stopGracePeriod}': at most 1h`)
    out.stopGraceMs = ms
  }
  return out
}

/** The signal and grace period a task of svc is stopped with (Docker's defaults where the spec says nothing). */
export function stopOf(svc: Pick<Service, 'stopSignal' | 'stopGraceMs'> | undefined): {signal: NodeJS.Signals; graceMs: number} {
  return {
    signal: (svc?.stopSignal as NodeJS.Signals | undefined) ?? DEFAULT_STOP_SIGNAL,
    graceMs: svc?.stopGraceMs ?? DEFAULT_STOP_GRACE_MS,
  }
}

/** Why a stored service's stop settings are malformed (a value gossiped in), or undefined. */
export function stopSpecProblem(r: Record<string, unknown>): string | undefined {
  if (r.stopSignal !== undefined) {
    if (typeof r.stopSignal !== 'string') return "'stopSignal' is not a string"
    try {
      parseStopSignal(r.stopSignal)
    } catch (e) {
      return (e as Error).message
    }
  }
  if (
    r.stopGraceMs !== undefined &&
    !(Number.isSafeInteger(r.stopGraceMs) && (r.stopGraceMs as number) >= 0 && (r.stopGraceMs as number) <= MAX_STOP_GRACE_MS)
  )
    return "'stopGraceMs' is malformed"
  return undefined
}
