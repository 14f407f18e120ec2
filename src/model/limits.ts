/**
 * What `service create --user`, `--limit-memory` and `--limit-cpu` accept, as Docker spells
 * them. Strict: anything else is one line naming the value and the form it should have.
 */
import {UserError} from './errors.js'

const UNITS: Record<string, number> = {'': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4}
/** Docker refuses less than this: a process does not start in less. */
export const MIN_MEMORY = 6 * 1024 * 1024

/** "64M", "512k", "1.5g", "1073741824" (binary units, an optional trailing b, as docker) -> bytes. */
export function parseMemory(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s?([kmgtb]?)(?:i?b)?$/i.exec(text.trim())
  const bytes = m ? Math.floor(Number(m[1]) * UNITS[m[2]!.toLowerCase()]!) : NaN
  if (!Number.isSafeInteger(bytes)) throw new UserError(`invalid --limit-memory '${text}': a size such as 64M, 512k or 1g`)
  if (bytes < MIN_MEMORY) throw new UserError(`invalid --limit-memory '${text}': the minimum is 6M`)
  return bytes
}

/** "0.5", "2" -> nano CPUs (Docker's NanoCPUs): 0.01 .. 1024 CPUs. */
export function parseCpus(text: string): number {
  const t = text.trim()
  const n = /^(?:\d+(?:\.\d+)?|\.\d+)$/.test(t) ? Number(t) : NaN
  if (!(n >= 0.01 && n <= 1024))
    throw new UserError(`invalid --limit-cpu '${text}': a number of CPUs from 0.01 to 1024, such as 0.5`)
  return Math.round(n * 1e9)
}

const NAME = /^[a-z_][a-z0-9_.-]{0,31}\$?$/i
const ID = /^\d{1,10}$/

/** UID[:GID] or NAME[:GROUP] (either side numeric or a name); kept as written, resolved on the node. */
export function parseUser(text: string): string {
  const parts = text.split(':')
  const ok = (s: string | undefined) => s !== undefined && (ID.test(s) ? Number(s) < 2 ** 32 - 1 : NAME.test(s))
  if (parts.length > 2 || !ok(parts[0]) || (parts.length === 2 && !ok(parts[1])))
    throw new UserError(`invalid --user '${text}': UID[:GID] or NAME[:GROUP], such as 1000 or www-data:www-data`)
  return text
}

/** What a service spec keeps of --user, --limit-memory and --limit-cpu: checked, in stored form. */
export function sandboxSpec(req: {user?: string; limitMemory?: string; limitCpu?: string}): {
  user?: string
  limits?: {memoryBytes?: number; nanoCpus?: number}
} {
  const limits = {
    ...(req.limitMemory !== undefined ? {memoryBytes: parseMemory(req.limitMemory)} : {}),
    ...(req.limitCpu !== undefined ? {nanoCpus: parseCpus(req.limitCpu)} : {}),
  }
  return {
    ...(req.user !== undefined ? {user: parseUser(req.user)} : {}),
    ...(Object.keys(limits).length > 0 ? {limits} : {}),
  }
}

/** Why a stored service's user or limits are malformed (a value gossiped in), or undefined. */
export function sandboxSpecProblem(r: Record<string, unknown>): string | undefined {
  if (r.user !== undefined) {
    if (typeof r.user !== 'string') return "'user' is not a string"
    try {
      parseUser(r.user)
    } catch (e) {
      return (e as Error).message
    }
  }
  if (r.limits === undefined) return undefined
  const l = r.limits as Record<string, unknown>
  if (typeof l !== 'object' || l === null || Array.isArray(l)) return "'limits' is not an object"
  const int = (k: string, min: number) =>
    l[k] === undefined || (Number.isSafeInteger(l[k]) && (l[k] as number) >= min) ? undefined : `'limits.${k}' is malformed`
  return int('memoryBytes', MIN_MEMORY) ?? int('nanoCpus', 10_000_000)
}
