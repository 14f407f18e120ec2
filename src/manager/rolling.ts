/**
 * A rolling update, one placement pass at a time (issue 23). A service's spec has a version
 * (Service.specVersion, raised by `service update` when its tasks must change and by `service
 * rollback`); a task carries the version it was made from. Tasks of an older version are replaced
 * slot by slot, at most --update-parallelism slots at once:
 *   start-first: the old task keeps serving while its slot gets a new one (held: left out of
 *     placement, so the slot is placed again, but not stopped); once the new one serves (running,
 *     and healthy when there is a check) the old one is stopped gracefully (src/tasks/stop.ts);
 *   stop-first: the old task is stopped first, and its slot is kept from placement until its node
 *     has stopped it (blocked); then the new one is made.
 * Pure: what the pass does follows from the records and statuses alone, so any manager (or a
 * restarted one) goes on where the last left off.
 */
import type {Service, Task, TaskStatus, UpdateConfig} from '../model/types.js'

export const UPDATE_DEFAULTS: UpdateConfig = {parallelism: 1, order: 'stop-first'}

export const specOf = (t: Pick<Task, 'specVersion'>) => t.specVersion ?? 0
export const versionOf = (s: Pick<Service, 'specVersion'>) => s.specVersion ?? 0

export type RollingStep = {
  /** Old tasks to leave out of placement but keep running (start-first: their slot gets its new task now). */
  hold: Set<string>
  /** Old tasks to stop now (their slot's new task serves, or stop-first). */
  retire: Set<string>
  /** Old tasks stopped (stop-first) but still running: their slot is not placed again yet. */
  block: Set<string>
  /** Old tasks to stop now whose slot stays theirs in this pass (stop-first): then blocked until gone. */
  stop: Set<string>
  /** Old tasks left alone in this pass (beyond the parallelism): they stay in placement as they are. */
  wait: Set<string>
}

type Status = Pick<TaskStatus, 'state' | 'health'>

const serves = (st: Status | undefined) => st?.state === 'running' && (st.health === undefined || st.health === 'healthy')
const stillRuns = (st: Status | undefined) => st?.state === 'running' || st?.state === 'starting'

export function rollingStep(svc: Service, mine: Task[], statuses: ReadonlyMap<string, Status>): RollingStep {
  const out: RollingStep = {hold: new Set(), retire: new Set(), block: new Set(), stop: new Set(), wait: new Set()}
  // Global services and a service without versions have nothing to roll.
  if (!('replicas' in svc.mode)) return out
  const replicas = svc.mode.replicas
  const v = versionOf(svc)
  const cfg = {...UPDATE_DEFAULTS, ...svc.update}
  const fresh = new Map<number, Task>()
  for (const t of mine) if (t.desiredState === 'running' && specOf(t) === v && !fresh.has(t.slot)) fresh.set(t.slot, t)
  const old = mine
    .filter((t) => specOf(t) !== v && t.slot >= 1 && t.slot <= replicas)
    .sort((a, b) => a.slot - b.slot || (a.id < b.id ? -1 : 1))
  let inFlight = 0
  const pending: Task[] = []
  for (const t of old) {
    const st = statuses.get(t.id)
    const f = fresh.get(t.slot)
    if (t.desiredState === 'shutdown') {
      // Stop-first: a stopped old task holds its slot until its node says it is gone.
      if (!f && cfg.order === 'stop-first' && stillRuns(st)) (out.block.add(t.id), inFlight++)
      continue
    }
    if (f && serves(statuses.get(f.id))) out.retire.add(t.id)
    else if (f) (out.hold.add(t.id), inFlight++)
    else pending.push(t)
  }
  // Slots whose new task does not serve yet (a stop-first slot after its old task went) count too.
  for (const [slot, f] of fresh)
    if (
      !serves(statuses.get(f.id)) &&
      old.some((t) => t.slot === slot && t.desiredState === 'shutdown' && !stillRuns(statuses.get(t.id)))
    )
      inFlight++
  for (const t of pending) {
    if (inFlight >= cfg.parallelism) {
      out.wait.add(t.id)
      continue
    }
    inFlight++
    if (cfg.order === 'start-first') out.hold.add(t.id)
    else out.stop.add(t.id)
  }
  return out
}

/** What `service inspect` says of an update: updating while old tasks run, completed after. */
export function updateState(svc: Service, mine: Task[]): 'updating' | 'completed' | undefined {
  if (svc.specVersion === undefined) return undefined
  return mine.some((t) => specOf(t) !== versionOf(svc) && t.desiredState === 'running') ? 'updating' : 'completed'
}
