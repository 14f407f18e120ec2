/**
 * The part of a service its tasks are made from (TaskSpec): a change to it raises the spec's
 * version and replaces the tasks (rolling.ts); service rollback, by hand or as an update's
 * failure action, puts the previous one back.
 */
import type {Service, TaskSpec} from '../model/types.js'

/** What a service's tasks are made from (a copy: changing it changes no record). */
export function taskSpecOf(s: Service): TaskSpec {
  const out: TaskSpec = {command: [...s.command]}
  if (s.user !== undefined) out.user = s.user
  if (s.limits !== undefined) out.limits = {...s.limits}
  if (s.stopSignal !== undefined) out.stopSignal = s.stopSignal
  if (s.stopGraceMs !== undefined) out.stopGraceMs = s.stopGraceMs
  if (s.healthcheck !== undefined) out.healthcheck = {...s.healthcheck}
  // JSON through and through (types.ts): a deep copy, mounts included.
  if (s.container !== undefined) out.container = JSON.parse(JSON.stringify(s.container)) as typeof s.container
  return out
}

/** s with its task spec replaced by spec (fields spec leaves out are gone). */
export function withTaskSpec(s: Service, spec: TaskSpec): Service {
  const {user: _u, limits: _l, stopSignal: _s, stopGraceMs: _g, healthcheck: _h, container: _c, ...rest} = s
  return {...rest, ...spec}
}

/** s rolled back to its previous task spec: a new version, the current spec kept as the previous one. */
export function rolledBack(s: Service & {previous: TaskSpec}, now: number, message: string): Service {
  return {
    ...withTaskSpec(s, s.previous),
    specVersion: (s.specVersion ?? 0) + 1,
    previous: taskSpecOf(s),
    updateStatus: {state: 'rollback_started', startedAt: now, message},
    updatedAt: now,
  }
}
