// The one base class of every command: errors become one line and a non-zero
// exit; a stack trace only when DEBUG is set.
import {Command, Flags} from '@oclif/core'

export abstract class SwarmnetCommand extends Command {
  /** BPF, namespaces and the agent's socket are root's: most commands need it. */
  static needsRoot = true
  /** Commands that run a command take it after `--` (see passthrough.ts): a stray word is told so. */
  static runsCommand = false

  public override async init(): Promise<void> {
    await super.init()
    const ctor = this.constructor as typeof SwarmnetCommand
    if (ctor.needsRoot && typeof process.getuid === 'function' && process.getuid() !== 0) {
      throw new Error(
        `\`swarmnet ${this.id?.replace(/:/g, ' ') ?? ''}\` needs root (BPF maps, network namespaces and the agent's socket are root's): run it with sudo`,
      )
    }
  }

  protected override async catch(err: Error & {exitCode?: number; oclif?: {exit?: number}}): Promise<void> {
    const code = err.oclif?.exit ?? err.exitCode ?? 1
    // oclif's own exit (this.exit(0), --help, --version) is not an error to report
    if (err.message?.startsWith('EEXIT:')) process.exit(code)
    if (process.env.DEBUG) process.stderr.write(`${err.stack ?? err}\n`)
    const ctor = this.constructor as typeof SwarmnetCommand
    let line = oneLine(err.message ?? String(err))
    if (ctor.runsCommand && /^Unexpected argument/.test(line)) {
      const usage = [ctor.usage ?? ''].flat()[0]
      line = line.replace(/ \(see --help\)$/, '') + `: the command to run goes after \`--\` (swarmnet ${usage})`
    }
    process.stderr.write(`swarmnet: ${line}\n`)
    process.exit(code === 0 ? 1 : code)
  }
}

const OCLIF_HELP_LINE = 'See more help with --help'

/**
 * One line from any error. oclif's parser errors span several lines, the reason on the second
 * ("Parsing --replicas" / "Expected an integer but received: abc"): those are joined, or the
 * reason would be lost. Any other error gives its first line.
 */
export function oneLine(message: string): string {
  const lines = message
    .split('\n')
    .map((l) => l.trim().replace(/\s+/g, ' '))
    .filter((l) => l.length > 0)
    .map((l) => l.replace(/^Error:\s*/, ''))
  const fromParser = lines.includes(OCLIF_HELP_LINE)
  let text: string
  if (fromParser) {
    const parts = lines.filter((l) => l !== OCLIF_HELP_LINE && !/^The following errors? occurred:$/.test(l))
    const several = lines.some((l) => l === 'The following errors occurred:')
    text = parts.reduce(
      (acc, p) => (acc === '' ? p : several ? `${acc}; ${p}` : acc.endsWith(':') ? `${acc} ${p}` : `${acc}: ${p}`),
      '',
    )
  } else text = lines[0] ?? ''
  if (text === '') text = 'unknown error'
  const hint =
    fromParser ||
    /Nonexistent flag|Unexpected argument|Missing required flag|Missing \d+ required arg|Expected .* to be one of/.test(message)
      ? ' (see --help)'
      : ''
  return text + hint
}

export const hostFlag = Flags.string({
  description:
    'the node whose agent to talk to (a node name, or a socket path); default: SWARMNET_HOST, else the only agent on this host',
  env: 'SWARMNET_HOST',
})

/** --host of the commands that read a node's pinned maps, not its agent (they work with the agent stopped). */
export const pinsHostFlag = Flags.string({
  description: 'the node whose maps to read (default: SWARMNET_HOST, else the only node with pinned maps)',
  env: 'SWARMNET_HOST',
})

export const jsonFlag = Flags.boolean({description: 'print JSON instead of a table'})
