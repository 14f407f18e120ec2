/**
 * The --update-* flags of service create and service update, checked and in stored form
 * (Service.update): each flag absent keeps what the service has (or Docker's default).
 */
import {MAX_REPLICAS} from '../model/defaults.js'
import {parseDuration} from '../model/duration.js'
import {UserError} from '../model/errors.js'
import type {UpdateConfig} from '../model/types.js'
import {UPDATE_DEFAULTS} from './rolling.js'

export type UpdateRequest = {
  updateParallelism?: number
  updateOrder?: string
  updateDelay?: string
  updateMonitor?: string
  updateFailureAction?: string
  /** A number or its text (the CLI passes what was typed). */
  updateMaxFailureRatio?: number | string
}

const MAX_MS = 24 * 3_600_000

/** The service's update settings after req, or undefined when req sets none (nothing to store). */
export function updateConfigOf(req: UpdateRequest, cur: UpdateConfig | undefined): UpdateConfig | undefined {
  const given = [
    req.updateParallelism,
    req.updateOrder,
    req.updateDelay,
    req.updateMonitor,
    req.updateFailureAction,
    req.updateMaxFailureRatio,
  ].some((v) => v !== undefined)
  if (!given) return undefined
  const out: UpdateConfig = {...(cur ?? {parallelism: UPDATE_DEFAULTS.parallelism, order: UPDATE_DEFAULTS.order})}
  if (req.updateParallelism !== undefined) {
    const p = req.updateParallelism
    if (!Number.isInteger(p) || p < 1 || p > MAX_REPLICAS)
      throw new UserError(`invalid --update-parallelism ${JSON.stringify(p)}: a whole number, 1 or more`)
    out.parallelism = p
  }
  if (req.updateOrder !== undefined) {
    const o = req.updateOrder
    if (o !== 'start-first' && o !== 'stop-first')
      throw new UserError(`invalid --update-order '${String(o)}': start-first or stop-first`)
    out.order = o
  }
  if (req.updateDelay !== undefined) out.delayMs = duration(req.updateDelay, '--update-delay')
  if (req.updateMonitor !== undefined) out.monitorMs = duration(req.updateMonitor, '--update-monitor')
  if (req.updateFailureAction !== undefined) {
    const a = req.updateFailureAction
    if (a !== 'pause' && a !== 'continue' && a !== 'rollback')
      throw new UserError(`invalid --update-failure-action '${String(a)}': pause, continue or rollback`)
    out.failureAction = a
  }
  if (req.updateMaxFailureRatio !== undefined) {
    const raw = req.updateMaxFailureRatio
    const r = typeof raw === 'number' ? raw : /^\s*(\d+(\.\d*)?|\.\d+)\s*$/.test(raw) ? Number(raw) : NaN
    if (!Number.isFinite(r) || r < 0 || r > 1)
      throw new UserError(`invalid --update-max-failure-ratio '${String(raw)}': a number from 0 to 1`)
    out.maxFailureRatio = r
  }
  return out
}

function duration(text: string, flag: string): number {
  const ms = parseDuration(text, flag)
  if (ms > MAX_MS) throw new UserError(`invalid ${flag} '${text}': at most 24h`)
  return ms
}
