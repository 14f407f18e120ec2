// An agent that cannot write its store stops, rather than go on answering its peers while
// never applying another update (a node that looks alive and is not). The data plane and
// the tasks keep running, as when the agent is killed; the reason stays in the run
// directory (a tmpfs, writable when the state disk is not), where the CLI finds it.
import {existsSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {RUN_DIR} from './paths.js'

/** The exit status of a fail-stop: EX_IOERR (sysexits.h), so systemd and scripts can tell it. */
export const FAIL_STOP_EXIT = 74

export const failedPath = (node: string) => join(RUN_DIR, `${node}.failed`)

export function failStop(node: string, reason: string, log: (m: string) => void): never {
  const line = `stopped at ${new Date().toISOString()}: ${reason}`
  log(`fail-stop: ${line}`)
  try {
    writeFileSync(failedPath(node), `${line}\n`, {mode: 0o600})
  } catch {
    // The reason is in the agent's log as well.
  }
  process.exit(FAIL_STOP_EXIT)
}

/** Why the node's agent last stopped on its own, if it did and has not started since. */
export function lastFailStop(node: string): string | undefined {
  const f = failedPath(node)
  return existsSync(f) ? readFileSync(f, 'utf8').trim() : undefined
}

export function clearFailStop(node: string): void {
  rmSync(failedPath(node), {force: true})
}
