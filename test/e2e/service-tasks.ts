// Waiting for a service's tasks to run, as the manager (n1) lists them in `service ps`.
// Which tasks count differs per test (all of them, those not shut down, those meant to
// run), so each test passes the list it counts; the waiting is the same everywhere.
import {eventually, json} from './helpers.js'

interface TaskState {
  node: string
  state: string
}

/** Waits until list(svc) holds exactly n tasks, all running (and each passing where); returns them. */
export function allRunning<T extends TaskState>(
  svc: string,
  n: number,
  list: (svc: string) => T[],
  timeoutMs: number,
  where?: (t: T) => boolean,
): Promise<T[]> {
  return eventually(
    `${n} running tasks of ${svc}`,
    () => {
      const t = list(svc)
      return t.length === n && t.every((x) => x.state === 'running' && (!where || where(x))) ? t : undefined
    },
    timeoutMs,
  )
}

/** Waits until a task of svc (a global service: one per node) runs on node; returns it. */
export function runningOn<T extends TaskState>(svc: string, node: string, timeoutMs = 60_000): Promise<T> {
  return eventually(
    `the task on ${node} running`,
    () => json<T[]>('n1', ['service', 'ps', svc]).find((t) => t.node === node && t.state === 'running'),
    timeoutMs,
  )
}
