// Where the package is installed, found from this file: the prebuilt BPF
// objects and bin/ are there, whether we run compiled (dist/src/...) or from
// source under tsx (src/...).
import {existsSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

let cached: string | undefined

export function packageRoot(): string {
  if (cached) return cached
  let dir = dirname(fileURLToPath(import.meta.url))
  while (!existsSync(join(dir, 'package.json')) || !existsSync(join(dir, 'bpf'))) {
    const up = dirname(dir)
    if (up === dir) throw new Error('cannot find the swarmnet package root (no package.json with bpf/ above this file)')
    dir = up
  }
  cached = dir
  return dir
}

export const bpfObjectPath = (name: string) => join(packageRoot(), 'bpf', 'dist', `${name}.o`)

/** argv that runs this same CLI: node + bin/run.js (for agents and tasks we start). */
export function selfArgv(): string[] {
  return [process.execPath, join(packageRoot(), 'bin', 'run.js')]
}
