// Every command the agent runs goes through here: run() for a command whose output we wait for,
// launch() for a process in the background. With a spawner (the agent's, spawner.ts) the
// spawner forks; without one (the CLI, tests) this process does. The semantics are the same
// either way (start-process.ts is the one implementation).
import type {Spawner} from './spawner.js'
import {startProcess, type ProcessRequest, type ProcessResult} from './start-process.js'

export interface RunOptions {
  /** Written to the command's stdin (e.g. an nft script). */
  input?: string
  env?: NodeJS.ProcessEnv
  /** Kill the command after this long; a hung `ip` must not hang the agent. */
  timeoutMs?: number
}

/** A failed command. `message` is one line; the rest is kept for callers that branch on it. */
export class ExecError extends Error {
  constructor(
    message: string,
    readonly argv: readonly string[],
    readonly code: number | null,
    readonly stderr: string,
  ) {
    super(message)
    this.name = 'ExecError'
  }
}

function firstLine(text: string): string {
  return (
    text
      .split('\n')
      .map((l) => l.trim())
      .find((l) => l.length > 0) ?? ''
  )
}

let spawner: Spawner | undefined
const started = {spawner: 0, fork: 0}

/** From now on, commands start in this spawner (undefined: this process forks them again). */
export function useSpawner(s: Spawner | undefined): void {
  spawner = s
}

/** How many processes were started through the spawner and by forking here. */
export function processesStarted(): {spawner: number; fork: number} {
  return {...started}
}

/**
 * Starts a process (in the spawner when there is one) and resolves when it is gone, never
 * rejecting: a failure to start is the result's error. onPid hears the pid once it runs.
 */
export function launch(req: ProcessRequest, onPid?: (pid: number) => void): Promise<ProcessResult> {
  if (spawner) {
    started.spawner++
    return spawner.request(req, onPid)
  }
  started.fork++
  return startProcess(req, onPid)
}

/**
 * Runs argv (no shell, so nothing in an argument is ever interpreted) and resolves to stdout.
 * `doing` says what we were trying to do, so a failure reads "adding address to eth0: ...".
 */
export async function run(argv: readonly string[], doing: string, opts: RunOptions = {}): Promise<string> {
  const [cmd] = argv
  if (cmd === undefined) throw new Error(`${doing}: empty command`)
  const r = await launch({
    argv: [...argv],
    env: opts.env ?? process.env,
    input: opts.input ?? '',
    timeoutMs: opts.timeoutMs ?? 30_000,
  })
  if (r.error) {
    const why = r.error.code === 'ENOENT' ? `${cmd} not found` : r.error.message
    throw new ExecError(`${doing}: ${why}`, argv, null, '')
  }
  if (r.code === 0) return r.stdout
  const why = firstLine(r.stderr) || (r.signal ? `${cmd} killed by ${r.signal}` : `${cmd} exited with code ${r.code}`)
  throw new ExecError(`${doing}: ${why}`, argv, r.code, r.stderr)
}
