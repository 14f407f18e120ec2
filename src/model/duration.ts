/**
 * Durations as Docker's flags take them (Go's time.ParseDuration): "10s", "1m30s", "500ms",
 * "1.5h", "0s"; a number without a unit is refused, as Docker refuses it ("missing unit").
 */
import {UserError} from './errors.js'

const UNIT_MS: Record<string, number> = {ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000}

/** One Docker duration -> whole milliseconds; flag names the flag in the error. */
export function parseDuration(text: string, flag: string): number {
  const t = text.trim()
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/gy
  let ms = 0
  let at = 0
  for (let m; (m = re.exec(t)); at = re.lastIndex) ms += Number(m[1]) * UNIT_MS[m[2]!]!
  if (t === '' || at !== t.length || !Number.isFinite(ms))
    throw new UserError(`invalid ${flag} '${text}': a duration such as 10s, 1m30s or 500ms`)
  return Math.round(ms)
}

/** Milliseconds as Docker prints a duration: 10s, 1m30s, 500ms. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${ms}ms`
  const h = Math.floor(ms / 3_600_000)
  const m = Math.floor((ms % 3_600_000) / 60_000)
  const s = (ms % 60_000) / 1000
  return `${h > 0 ? `${h}h` : ''}${m > 0 ? `${m}m` : ''}${s > 0 || (h === 0 && m === 0) ? `${s}s` : ''}`
}
