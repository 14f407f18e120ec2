// Starting one process and waiting for it: the one implementation behind run() and the
// background launches, used in the spawner (spawner-child.ts) and, where there is no spawner (the
// CLI, tests), in the process that asks. Its request and result are plain data, so they cross
// the spawner's IPC channel as they are.
import {spawn, type StdioOptions} from 'node:child_process'
import {closeSync, openSync} from 'node:fs'

export interface ProcessRequest {
  argv: string[]
  /** The whole environment of the command. */
  env: Record<string, string | undefined>
  /** Written to stdin, which is then closed; none: stdin is /dev/null. */
  input?: string
  /** stdout and stderr appended to this file (opened here) instead of collected. */
  logFile?: string
  /** A session (and process group) of its own: outlives its starter, killed as a group. */
  detached?: boolean
  /** Killed after this long: SIGTERM to the command, or SIGKILL to its group with killGroup. */
  timeoutMs?: number
  killGroup?: boolean
  /** stderr collected into stdout, in the order it came (a health check's output). */
  merge?: boolean
  /** Only the last this many characters of the output are kept. */
  tail?: number
}

export interface ProcessResult {
  code: number | null
  signal: string | null
  stdout: string
  stderr: string
  /** It did not start (ENOENT, EACCES...): no code, no output. */
  error?: {code?: string; message: string}
  /** killGroup's timeout killed it. */
  timedOut?: boolean
}

/**
 * Starts the process; onPid hears its pid once it runs (not when it did not start). Resolves
 * when it is gone and its output streams are closed (never rejects: a failure is in the result).
 */
export function startProcess(req: ProcessRequest, onPid?: (pid: number) => void): Promise<ProcessResult> {
  return new Promise((resolve) => {
    const [cmd, ...args] = req.argv
    if (cmd === undefined) return resolve({code: null, signal: null, stdout: '', stderr: '', error: {message: 'empty command'}})
    let fd: number | undefined
    let stdio: StdioOptions = [req.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe']
    if (req.logFile !== undefined) {
      try {
        fd = openSync(req.logFile, 'a')
      } catch (e) {
        const err = e as NodeJS.ErrnoException
        return resolve({code: null, signal: null, stdout: '', stderr: '', error: {code: err.code, message: err.message}})
      }
      stdio = [req.input === undefined ? 'ignore' : 'pipe', fd, fd]
    }
    let child
    try {
      child = spawn(cmd, args, {
        env: req.env,
        stdio,
        detached: req.detached === true,
      })
    } catch (e) {
      // Refused before a fork (an argument with a NUL byte, say).
      return resolve({code: null, signal: null, stdout: '', stderr: '', error: {message: (e as Error).message}})
    } finally {
      if (fd !== undefined) closeSync(fd)
    }
    let stdout = ''
    let stderr = ''
    const cut = (s: string) => (req.tail !== undefined && s.length > req.tail ? s.slice(-req.tail) : s)
    const out: Buffer[] = []
    const err: Buffer[] = []
    if (req.tail !== undefined || req.merge) {
      child.stdout?.on('data', (b: Buffer) => (stdout = cut(stdout + b.toString())))
      child.stderr?.on('data', (b: Buffer) =>
        req.merge ? (stdout = cut(stdout + b.toString())) : (stderr = cut(stderr + b.toString())),
      )
    } else {
      // Decoded as a whole, so a character split between two reads stays one.
      child.stdout?.on('data', (b: Buffer) => out.push(b))
      child.stderr?.on('data', (b: Buffer) => err.push(b))
    }
    // Ours, not spawn()'s `timeout`: that one is cleared only on 'exit', which a process that
    // never started does not emit, so it kept its owner alive for the whole timeout.
    let timedOut = false
    const timer =
      req.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            if (!req.killGroup) return void child.kill('SIGTERM')
            timedOut = true
            try {
              process.kill(req.detached ? -child.pid! : child.pid!, 'SIGKILL')
            } catch {
              // gone already
            }
          }, req.timeoutMs)
    let done = false
    const finish = (r: ProcessResult) => {
      if (done) return
      done = true
      if (timer) clearTimeout(timer)
      resolve(r)
    }
    child.on('spawn', () => onPid?.(child.pid!))
    child.on('error', (e: NodeJS.ErrnoException) =>
      finish({code: null, signal: null, stdout: '', stderr: '', error: {...(e.code ? {code: e.code} : {}), message: e.message}}),
    )
    child.on('close', (code, signal) =>
      finish({
        code,
        signal,
        stdout: out.length > 0 ? Buffer.concat(out).toString() : stdout,
        stderr: err.length > 0 ? Buffer.concat(err).toString() : stderr,
        ...(timedOut ? {timedOut} : {}),
      }),
    )
    if (child.stdin) {
      // A command that does not read stdin may close it early; that is not our failure.
      child.stdin.on('error', () => undefined)
      child.stdin.end(req.input ?? '')
    }
  })
}
