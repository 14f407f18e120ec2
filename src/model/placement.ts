// Swarm's placement: node labels and availability (a manager's record per node, nodespec/<id>,
// apart from the node's own record, which only the node signs), service constraints
// (node.hostname==X, node.role!=worker, node.labels.KEY==V, ...) and spread preferences.
import {UserError} from './errors.js'
import type {NodeRecord} from './types.js'

export type Availability = 'active' | 'pause' | 'drain'
export const AVAILABILITIES: readonly Availability[] = ['active', 'pause', 'drain']

/**
 * What managers say about a node (node update): its labels and availability. Absent record:
 * no labels, active. pause: keeps its tasks, gets no new one; drain: its tasks move elsewhere.
 */
export type NodeSpec = {id: string; availability: Availability; labels: Record<string, string>}

export const availabilityOf = (s: NodeSpec | undefined): Availability => s?.availability ?? 'active'

export type Constraint = {
  field: 'node.id' | 'node.hostname' | 'node.role' | 'node.labels'
  label?: string
  op: '==' | '!='
  value: string
}

// Label keys and values as Docker takes them in practice: no spaces, no '=' in keys.
const LABEL_KEY = /^[A-Za-z0-9_.\-/]{1,128}$/
const LABEL_VALUE = /^[^\s=]{0,256}$/

/** One --constraint expression; a one-line error says what is wrong with it. */
export function parseConstraint(text: string): Constraint {
  const m = /^\s*([A-Za-z0-9_.\-/]+)\s*(==|!=)\s*(\S*)\s*$/.exec(text)
  if (!m) throw new UserError(`invalid constraint '${text}': expected FIELD==VALUE or FIELD!=VALUE`)
  const [, key, op, value] = m as unknown as [string, string, '==' | '!=', string]
  if (value === '') throw new UserError(`invalid constraint '${text}': no value after ${op}`)
  if (key === 'node.id' || key === 'node.hostname') return {field: key, op, value}
  if (key === 'node.role') {
    if (value !== 'manager' && value !== 'worker')
      throw new UserError(`invalid constraint '${text}': node.role is manager or worker`)
    return {field: key, op, value}
  }
  if (key.startsWith('node.labels.')) {
    const label = key.slice('node.labels.'.length)
    if (!LABEL_KEY.test(label)) throw new UserError(`invalid constraint '${text}': bad label key '${label}'`)
    return {field: 'node.labels', label, op, value}
  }
  throw new UserError(
    `invalid constraint '${text}': unknown field '${key}' (node.id, node.hostname, node.role or node.labels.KEY)`,
  )
}

/** --placement-pref spread=node.labels.KEY: the label whose values tasks are spread over. */
export function parsePlacementPref(text: string): string {
  const m = /^spread=node\.labels\.(.+)$/.exec(text.trim())
  if (!m || !LABEL_KEY.test(m[1]!)) throw new UserError(`invalid placement preference '${text}': expected spread=node.labels.KEY`)
  return m[1]!
}

/** Whether a node meets every constraint (Swarm: all must hold). */
export function nodeMatches(
  n: Pick<NodeRecord, 'id' | 'name' | 'role'>,
  spec: NodeSpec | undefined,
  cs: readonly Constraint[],
): boolean {
  return cs.every((c) => {
    const have =
      c.field === 'node.id'
        ? n.id
        : c.field === 'node.hostname'
          ? n.name
          : c.field === 'node.role'
            ? n.role
            : spec?.labels[c.label!]
    return c.op === '==' ? have === c.value : have !== c.value
  })
}

/** node update --label-add K=V: the key and value. */
export function parseLabel(text: string): [string, string] {
  const i = text.indexOf('=')
  const k = i < 0 ? text : text.slice(0, i)
  const v = i < 0 ? '' : text.slice(i + 1)
  if (!LABEL_KEY.test(k)) throw new UserError(`invalid label '${text}': expected KEY=VALUE (key: letters, digits, . _ - /)`)
  if (!LABEL_VALUE.test(v)) throw new UserError(`invalid label '${text}': the value may not hold spaces or '='`)
  return [k, v]
}

export function checkAvailability(v: unknown): Availability {
  if (typeof v !== 'string' || !(AVAILABILITIES as readonly string[]).includes(v))
    throw new UserError(`invalid availability ${JSON.stringify(v)}: active, pause or drain`)
  return v as Availability
}

/** Why a stored nodespec is malformed (src/model/shape.ts), or undefined. */
export function nodeSpecProblem(v: unknown, id: string): string | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'not an object'
  const r = v as Record<string, unknown>
  if (r.id !== id) return `'id' is not ${id}`
  if (!(AVAILABILITIES as readonly unknown[]).includes(r.availability)) return "'availability' is not active, pause or drain"
  const l = r.labels
  if (typeof l !== 'object' || l === null || Array.isArray(l)) return "'labels' is not an object"
  const entries = Object.entries(l)
  if (entries.length > 256) return "'labels' has too many entries"
  for (const [k, x] of entries)
    if (!LABEL_KEY.test(k) || typeof x !== 'string' || !LABEL_VALUE.test(x)) return `label '${k.slice(0, 64)}' is malformed`
  return undefined
}

/** A service's stored constraints or preferences as the shape check takes them: texts the parser accepts. */
export function placementSpecProblem(r: Record<string, unknown>): string | undefined {
  for (const [k, parse] of [
    ['constraints', parseConstraint],
    ['placementPrefs', parsePlacementPref],
  ] as const) {
    const v = r[k]
    if (v === undefined) continue
    if (!Array.isArray(v) || v.length > 64 || !v.every((x) => typeof x === 'string')) return `'${k}' is not a list of texts`
    try {
      for (const x of v as string[]) parse(x)
    } catch (e) {
      return (e as Error).message
    }
  }
  return undefined
}
