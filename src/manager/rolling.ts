/**
 * A rolling update, one placement pass at a time (issue 23). A service's spec has a version
 * (Service.specVersion, raised by `service update` when its tasks must change and by `service
 * rollback`); a task carries the version it was made from. Tasks of an older version are replaced
 * slot by slot (a global service: node by node), at most --update-parallelism at once:
 *   start-first: the old task keeps serving while its slot gets a new one (held: left out of
 *     placement, so the slot is placed again, but not stopped); once the new one serves (running,
 *     and healthy when there is a check) the old one is stopped gracefully (src/tasks/stop.ts);
 *   stop-first: the old task is stopped first, and its slot is kept from placement until its node
 *     has stopped it (blocked); then the new one is made.
 * After a group's new tasks serve, the next group waits --update-delay. Each new task is watched
 * for --update-monitor after it first serves: one that fails (exits, fails to start, is unhealthy)
 * before that counts as a failure, and more failures than --update-max-failure-ratio of the
 * replicas trigger --update-failure-action: pause (no new slot starts until the next service
 * update), continue, or rollback (to the previous spec; a rollback that fails pauses). Where the
 * update stands is kept in the service record (Service.updateStatus: when each new task was first
 * seen serving, which failed), written by the placing manager (updateProgress).
 * Pure: what the pass does follows from the records, statuses and the clock alone, so any manager
 * (or a restarted one) goes on where the last left off.
 */
import type {Service, Task, TaskStatus, UpdateConfig, UpdateState, UpdateStatus} from '../model/types.js'
import {taskName} from '../model/task-name.js'
import {rolledBack} from './task-spec.js'

/** Docker's defaults. */
export const UPDATE_DEFAULTS: Required<UpdateConfig> = {
  parallelism: 1,
  order: 'stop-first',
  delayMs: 0,
  monitorMs: 5000,
  failureAction: 'pause',
  maxFailureRatio: 0,
}

export const updateConfig = (svc: Pick<Service, 'update'>): Required<UpdateConfig> => ({...UPDATE_DEFAULTS, ...svc.update})

/** An update or rollback still rolling (or watching its last tasks): placement passes look at it on every tick. */
export const inProgress = (st: UpdateState | undefined) => st === 'updating' || st === 'rollback_started'
const paused = (st: UpdateState | undefined) => st === 'paused' || st === 'rollback_paused'

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
  /** Old tasks left alone in this pass (beyond the parallelism, paused, or the delay not over): they stay in placement as they are. */
  wait: Set<string>
}

type Status = Pick<TaskStatus, 'state' | 'health'> & {restarts?: number}

const serves = (st: Status | undefined) => st?.state === 'running' && (st.health === undefined || st.health === 'healthy')
const stillRuns = (st: Status | undefined) => st?.state === 'running' || st?.state === 'starting'

/**
 * Where a task runs in its service: a replicated task's slot, a global task's node (its new task
 * replaces the node's old one there, as in swarmkit's global orchestrator).
 */
const placeOf = (svc: Pick<Service, 'mode'>) => ('replicas' in svc.mode ? (t: Task) => String(t.slot) : (t: Task) => t.nodeId)

/**
 * `nodes`: for a global service, the nodes that may take a new task now (live, fitting, agent
 * heard, not paused); an old task elsewhere is not rolled (its node could get no new one, so
 * its place would stay in flight and stall the rollout): placement keeps or removes it as ever.
 */
export function rollingStep(
  svc: Service,
  mine: Task[],
  statuses: ReadonlyMap<string, Status>,
  now: number,
  nodes?: ReadonlySet<string>,
): RollingStep {
  const out: RollingStep = {hold: new Set(), retire: new Set(), block: new Set(), stop: new Set(), wait: new Set()}
  const replicas = 'replicas' in svc.mode ? svc.mode.replicas : undefined
  const at = placeOf(svc)
  const v = versionOf(svc)
  const cfg = updateConfig(svc)
  // Paused: no slot starts (those in flight go on); --update-delay: none until the last group has served that long.
  const us = svc.updateStatus
  const lastServed = Math.max(0, ...Object.values(us?.served ?? {}))
  const hold = paused(us?.state) || (cfg.delayMs > 0 && inProgress(us?.state) && lastServed > 0 && now < lastServed + cfg.delayMs)
  const fresh = new Map<string, Task>()
  for (const t of mine) if (t.desiredState === 'running' && specOf(t) === v && !fresh.has(at(t))) fresh.set(at(t), t)
  const old = mine
    .filter(
      (t) =>
        specOf(t) !== v &&
        (replicas !== undefined ? t.slot >= 1 && t.slot <= replicas : nodes === undefined || nodes.has(t.nodeId)),
    )
    .sort((a, b) => a.slot - b.slot || (a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0) || (a.id < b.id ? -1 : 1))
  // Slots (nodes, global) in flight: their update has begun and their new task does not serve yet.
  const busy = new Set<string>()
  const pending: Task[] = []
  for (const t of old) {
    const st = statuses.get(t.id)
    const f = fresh.get(at(t))
    if (t.desiredState === 'shutdown') {
      // Stop-first: a stopped old task holds its slot until its node says it is gone. Either way its
      // slot, without a new task yet, is in flight (it gets one when unblocked, maybe in this pass).
      if (!f && cfg.order === 'stop-first' && stillRuns(st)) out.block.add(t.id)
      if (!f) busy.add(at(t))
      continue
    }
    if (f && serves(statuses.get(f.id))) out.retire.add(t.id)
    else if (f) (out.hold.add(t.id), busy.add(at(t)))
    else pending.push(t)
  }
  // Slots whose new task does not serve yet and has not failed either (a stop-first slot after its
  // old task went, a slot scaled up) count too: as in swarmkit, a slot is done once its new task
  // runs or fails (a failure is the monitor's, not the rollout's, to act on).
  for (const [slot, f] of fresh) {
    const st = statuses.get(f.id)
    const failed = st !== undefined && (st.state === 'failed' || (st.restarts ?? 0) > 0 || st.health === 'unhealthy')
    if (!serves(st) && !failed) busy.add(slot)
  }
  // By slot: a slot can have two old tasks (a start-first update interrupted by another, or by a
  // rollback), and they go together, or its new task would find the slot still taken.
  const slots = new Map<string, Task[]>()
  for (const t of pending) slots.set(at(t), [...(slots.get(at(t)) ?? []), t])
  for (const ts of slots.values()) {
    const go = !hold && busy.size < cfg.parallelism
    if (go) busy.add(at(ts[0]!))
    for (const t of ts) (go ? (cfg.order === 'start-first' ? out.hold : out.stop) : out.wait).add(t.id)
  }
  return out
}

/**
 * What a pass changes in an update's record (undefined: nothing): new tasks first seen serving,
 * failures within their monitor period, the failure action once the failures are too many
 * (pause, or a rollback: the rolled-back service), and completed once every slot runs a new task
 * that has served its monitor period (global: every node with a task of the service has a new one
 * that has, and no old one is left there).
 */
export function updateProgress(
  svc: Service,
  mine: Task[],
  statuses: ReadonlyMap<string, Pick<TaskStatus, 'state' | 'health' | 'restarts' | 'updatedAt'>>,
  now: number,
): Service | undefined {
  const us = svc.updateStatus
  if (!us || !inProgress(us.state)) return undefined
  const cfg = updateConfig(svc)
  const v = versionOf(svc)
  const fresh = mine.filter((t) => t.desiredState === 'running' && specOf(t) === v)
  const served = {...us.served}
  const failed = [...(us.failed ?? [])]
  let changed = false
  let culprit: Task | undefined
  for (const t of fresh) {
    const st = statuses.get(t.id)
    if (!st) continue
    // A restart or a failed state stays visible (restarts only grow): the node's time of its last
    // status write is when it failed (or restarted, just after); within the monitor period it counts.
    const failing = st.state === 'failed' || st.restarts > 0 || st.health === 'unhealthy'
    const since = served[t.id]
    if (failing && !failed.includes(t.id) && (since === undefined || st.updatedAt <= since + cfg.monitorMs)) {
      failed.push(t.id)
      culprit ??= t
      changed = true
    }
    if (since === undefined && serves(st)) {
      served[t.id] = now
      changed = true
    }
  }
  const rollingBack = us.state === 'rollback_started'
  // Global: as many tasks as nodes running the service (swarmkit counts the tasks being updated).
  const size = 'replicas' in svc.mode ? svc.mode.replicas : new Set(mine.map((t) => t.nodeId)).size
  const tooMany = failed.length > cfg.maxFailureRatio * size
  if (culprit && tooMany && cfg.failureAction !== 'continue') {
    const why = `due to failure or early termination of task ${taskName(culprit)} (${culprit.id})`
    // Never roll back a rollback (Docker): it pauses.
    if (cfg.failureAction === 'rollback' && !rollingBack && svc.previous)
      return rolledBack({...svc, previous: svc.previous}, now, `update rolled back ${why}`)
    const state = rollingBack ? 'rollback_paused' : 'paused'
    return {...svc, updateStatus: {...us, state, message: `${rollingBack ? 'rollback' : 'update'} paused ${why}`, failed}}
  }
  const oldRuns = mine.some((t) => specOf(t) !== v && t.desiredState === 'running')
  // A failed one is done too (continue, or failures within the ratio): Docker completes such an update.
  const watched = (t: Task) => failed.includes(t.id) || (served[t.id] !== undefined && now >= served[t.id]! + cfg.monitorMs)
  // Global: a node whose old task is stopped (stop-first) but still recorded has no new one yet.
  const placed =
    'replicas' in svc.mode ? fresh.length >= svc.mode.replicas : mine.every((t) => fresh.some((f) => f.nodeId === t.nodeId))
  const allWatched = placed && fresh.every(watched)
  if (!oldRuns && allWatched) {
    const done: UpdateStatus = {
      state: rollingBack ? 'rollback_completed' : 'completed',
      startedAt: us.startedAt,
      completedAt: now,
      message: rollingBack ? 'rollback completed' : 'update completed',
    }
    return {...svc, updateStatus: done}
  }
  if (!changed) return undefined
  return {...svc, updateStatus: {...us, served, ...(failed.length > 0 ? {failed} : {})}}
}

/** What `service inspect` says of an update: its record's state, or (a service updated before it had one) updating while old tasks run, completed after. */
export function updateState(svc: Service, mine: Task[]): UpdateState | undefined {
  if (svc.updateStatus) return svc.updateStatus.state
  if (svc.specVersion === undefined) return undefined
  return mine.some((t) => specOf(t) !== versionOf(svc) && t.desiredState === 'running') ? 'updating' : 'completed'
}
