// The words after `--` belong to the command a person wants run (in a lab node, a task, a
// service), not to swarmnet. oclif's parser, told to accept extra words, sorts them by where the
// same word first appears on the line and drops every `--` after the first, so those words are
// cut off here, before oclif sees them.

export interface SplitArgv {
  /** The words before the first `--`: swarmnet's own arguments and flags, for oclif to parse. */
  own: string[]
  /** Every word after the first `--`, verbatim (later `--` included); undefined without a `--`. */
  passthrough: string[] | undefined
}

/**
 * Splits a command's raw words (oclif's `this.argv`, the words after the command's name, before
 * any parsing) at the first `--`. Taken from `this.argv` and not `process.argv`, so it holds
 * however the command is run (the bin script, oclif's `run()`, another program's argv).
 */
export function splitAtDoubleDash(argv: readonly string[]): SplitArgv {
  const i = argv.indexOf('--')
  if (i < 0) return {own: [...argv], passthrough: undefined}
  return {own: argv.slice(0, i), passthrough: argv.slice(i + 1)}
}
