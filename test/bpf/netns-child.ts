// The BPF tests that need a network namespace of their own run their cases in a child process
// inside it (`ip netns exec`), under tsx like the test itself: this is that child's command line.

/** The arguments of `ip` that run `node --import tsx ARGS` (a script and its arguments) in namespace `ns`. */
export const tsxInNetns = (ns: string, ...args: string[]): string[] => [
  'netns',
  'exec',
  ns,
  process.execPath,
  '--import',
  'tsx',
  ...args,
]
