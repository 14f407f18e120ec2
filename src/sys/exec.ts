import {spawn} from 'node:child_process'

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

/**
 * Runs argv (no shell, so nothing in an argument is ever interpreted) and resolves to stdout.
 * `doing` says what we were trying to do, so a failure reads "adding address to eth0: ...".
 */
export function run(argv: readonly string[], doing: string, opts: RunOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const [cmd, ...args] = argv
    if (cmd === undefined) throw new Error(`${doing}: empty command`)
    const child = spawn(cmd, args, {
      env: opts.env ?? process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
      timeout: opts.timeoutMs ?? 30_000,
    })
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout.on('data', (b: Buffer) => out.push(b))
    child.stderr.on('data', (b: Buffer) => err.push(b))
    child.on('error', (e: NodeJS.ErrnoException) => {
      const why = e.code === 'ENOENT' ? `${cmd} not found` : e.message
      reject(new ExecError(`${doing}: ${why}`, argv, null, ''))
    })
    child.on('close', (code, signal) => {
      const stderr = Buffer.concat(err).toString()
      if (code === 0) return resolve(Buffer.concat(out).toString())
      const why = firstLine(stderr) || (signal ? `${cmd} killed by ${signal}` : `${cmd} exited with code ${code}`)
      reject(new ExecError(`${doing}: ${why}`, argv, code, stderr))
    })
    // A command that does not read stdin may close it early; that is not our failure.
    child.stdin.on('error', () => undefined)
    child.stdin.end(opts.input ?? '')
  })
}
