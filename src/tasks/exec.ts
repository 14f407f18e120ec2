/**
 * `task exec`: a command inside a running task, as the task itself runs: in its cgroup and all
 * its namespaces (network, mount, PID, UTS, IPC, cgroup), with its capabilities and user.
 */
import {spawnSync} from 'node:child_process'
import {readFileSync} from 'node:fs'
import {execArgv, userOfProcess} from './launcher.js'
import {taskCgroup, verifyTaskPid} from './runner.js'
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
  let status: string
  try {
    status = readFileSync(`/proc/${init.pid}/status`, 'utf8')
  } catch {
    throw new Error(`task ${t.name} exited`)
  }
  // A container: runc enters it as its own process runs (seccomp included).
  if (isContainer(t.node, t.id)) return runcExecArgv(t.node, t.id, argv)
  return execArgv(init.pid, [taskCgroup(t.node, t.id)], userOfProcess(status), argv)
}

/** Runs argv in the task with our stdio; resolves to its exit status. */
export function execInTask(t: ExecTarget, argv: string[]): number {
  const full = taskExecArgv(t, argv)
  const r = spawnSync(full[0]!, full.slice(1), {stdio: 'inherit'})
  if (r.error) throw new Error(`cannot run ${argv[0]}: ${r.error.message}`)
  return r.status ?? 1
}
