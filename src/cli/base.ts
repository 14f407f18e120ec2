// The one base class of every command: errors become one line and a non-zero
// exit; a stack trace only when DEBUG is set.
import {Command, Flags} from '@oclif/core'

export abstract class SwarmnetCommand extends Command {
  /** BPF, namespaces and the agent's socket are root's: most commands need it. */
  static needsRoot = true

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
    process.stderr.write(`swarmnet: ${oneLine(err.message ?? String(err))}\n`)
    process.exit(code === 0 ? 1 : code)
  }
}

/** oclif's parser errors span several lines; a person needs the first one, and where to look next. */
export function oneLine(message: string): string {
  const first =
    message
      .split('\n')
      .map((l) => l.trim())
      .find((l) => l.length > 0) ?? 'unknown error'
  const hint =
    /Nonexistent flag|Unexpected argument|Missing required flag|Missing \d+ required arg|Expected .* to be one of/.test(message)
      ? ' (see --help)'
      : ''
  return first.replace(/^Error:\s*/, '') + hint
}

export const hostFlag = Flags.string({
  description:
    'the node whose agent to talk to (a node name, or a socket path); default: SWARMNET_HOST, else the only agent on this host',
  env: 'SWARMNET_HOST',
})

export const jsonFlag = Flags.boolean({description: 'print JSON instead of a table'})
