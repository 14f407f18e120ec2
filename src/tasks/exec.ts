/**
 * `task exec`: a command inside a running task, as the task itself runs: runc enters the
 * container (its cgroup and namespaces, user, capabilities, seccomp filter, working directory).
 */
import {spawnSync} from 'node:child_process'
import {verifyTaskPid} from './runner.js'
import {isContainer, runcExecArgv} from './container.js'

export interface ExecTarget {
  id: string
  name: string
  node: string
  pid?: number
}

/** The command line that runs argv in the task as the task itself runs (see the top of this file). */
export function taskExecArgv(t: ExecTarget, argv: string[]): string[] {
  // The pid comes from the store: it is used only once proven to be this task's PID 1.
  const init = t.pid ? verifyTaskPid(t.node, t.id, t.pid) : undefined
  if (!init) throw new Error(`task ${t.name} has no running process on this host (node ${t.node})`)
  if (!isContainer(t.node, t.id))
    throw new Error(
      `task ${t.name} was started by an agent before tasks ran under runc: update the service (--force) to exec in it`,
    )
  return runcExecArgv(t.node, t.id, argv)
}

/** Runs argv in the task with our stdio; resolves to its exit status. */
export function execInTask(t: ExecTarget, argv: string[]): number {
  const full = taskExecArgv(t, argv)
  const r = spawnSync(full[0]!, full.slice(1), {stdio: 'inherit'})
  if (r.error) throw new Error(`cannot run ${argv[0]}: ${r.error.message}`)
  return r.status ?? 1
}
