/**
 * `task exec`: a command inside a running task, as the task itself runs: runc enters the
 * container (its cgroup and namespaces, user, capabilities, seccomp filter, working directory).
 */
import {spawnSync} from 'node:child_process'
import {readFileSync} from 'node:fs'
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
  if (remapped(t.pid!))
    throw new Error(
      `task ${t.name} runs with --userns remap: exec into it is not possible yet (runc exec enters its user namespace first, and from there not the node's network namespace)`,
    )
  return runcExecArgv(t.node, t.id, argv)
}

/** Whether the process runs in a user namespace of its own (--userns remap): its uid map is not the whole range onto itself. */
function remapped(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/uid_map`, 'utf8').trim().split(/\s+/).join(' ') !== '0 0 4294967295'
  } catch {
    return false
  }
}

/** Runs argv in the task with our stdio; resolves to its exit status. */
export function execInTask(t: ExecTarget, argv: string[]): number {
  const full = taskExecArgv(t, argv)
  const r = spawnSync(full[0]!, full.slice(1), {stdio: 'inherit'})
  if (r.error) throw new Error(`cannot run ${argv[0]}: ${r.error.message}`)
  return r.status ?? 1
}
