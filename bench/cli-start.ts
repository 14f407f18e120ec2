// How long `swarmnet --help` takes to answer, with the oclif manifest that `npm pack` ships and
// without it (a clone: every command module is imported to list them). Best of 5 each.
import {spawnSync} from 'node:child_process'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

const root = join(fileURLToPath(import.meta.url), '..', '..')

function bestMs(runs: number): number {
  let best = Infinity
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint()
    const r = spawnSync(process.execPath, [join(root, 'bin', 'run.js'), '--help'], {stdio: 'ignore'})
    if (r.status !== 0) throw new Error(`swarmnet --help exited ${r.status}`)
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e6)
  }
  return best
}

export function benchCliStart(): {manifestMs: number; noManifestMs: number} {
  const manifest = (args: string[]) => {
    const r = spawnSync(process.execPath, [join(root, 'scripts', 'manifest.mjs'), ...args], {stdio: 'ignore'})
    if (r.status !== 0) throw new Error('scripts/manifest.mjs failed')
  }
  manifest([])
  try {
    const manifestMs = bestMs(5)
    manifest(['--remove'])
    return {manifestMs, noManifestMs: bestMs(5)}
  } finally {
    manifest(['--remove'])
  }
}
