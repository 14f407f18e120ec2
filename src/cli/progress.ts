// Progress of the long commands (init, join, lab up, lab down). A person at a terminal gets
// listr2's live rendering; anything else (a pipe, a CI log) gets plain lines on stdout before
// the result; --json gets no progress at all. Never on stderr: there an error is one line alone.
import {Listr} from 'listr2'

export interface Step {
  title: string
  /** `detail` tells what the step is doing now (a sub-step), shown under its title. */
  run(detail: (text: string) => void): Promise<void>
}

export type ProgressMode = 'terminal' | 'lines' | 'none'

export function progressMode(json: boolean, out: {isTTY?: boolean; columns?: number} = process.stdout): ProgressMode {
  if (json) return 'none'
  // A terminal that reports no width (a bare pseudo-terminal) would get listr2's lines wrapped
  // at every character: plain lines read better there.
  return out.isTTY && (out.columns ?? 0) > 0 ? 'terminal' : 'lines'
}

export async function runSteps(steps: Step[], mode: ProgressMode): Promise<void> {
  if (mode === 'terminal') {
    await new Listr(
      steps.map((s) => ({
        title: s.title,
        task: async (_ctx: unknown, task: {output: string}) => s.run((text) => (task.output = text)),
      })),
      {renderer: 'default', exitOnError: true, rendererOptions: {collapseErrors: false}},
    ).run()
    return
  }
  for (const s of steps) {
    const t0 = Date.now()
    const say = mode === 'lines' ? (line: string) => process.stdout.write(`${line}\n`) : () => undefined
    say(`${s.title} ...`)
    try {
      await s.run((text) => say(`  ${text}`))
    } catch (e) {
      say(`${s.title}: failed`)
      throw e
    }
    say(`${s.title}: done (${((Date.now() - t0) / 1000).toFixed(1)} s)`)
  }
}
