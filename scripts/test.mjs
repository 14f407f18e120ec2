#!/usr/bin/env node
// `npm test`: builds, then runs every test with node's own runner, one file at
// a time: the end-to-end tests share fixed lab names and must not overlap.
import {spawnSync} from 'node:child_process'
import {readdirSync} from 'node:fs'
import {join} from 'node:path'

if (process.getuid && process.getuid() !== 0) {
  console.error('swarmnet tests load BPF programs and make network namespaces: run them as root')
  process.exit(1)
}

const root = join(import.meta.dirname ?? new URL('.', import.meta.url).pathname, '..')
const step = (argv) => {
  const r = spawnSync(argv[0], argv.slice(1), {cwd: root, stdio: 'inherit'})
  if (r.status !== 0) process.exit(r.status ?? 1)
}

step(['npx', 'tsc', '-p', 'tsconfig.json'])
// tests and benches are type-checked too, though tsx runs them without looking
step(['npx', 'tsc', '-p', 'tsconfig.check.json'])
const only = process.argv.slice(2)
const files =
  only.length > 0
    ? only
    : ['unit', 'bpf', 'e2e'].flatMap((dir) =>
        readdirSync(join(root, 'test', dir))
          .filter((f) => f.endsWith('.test.ts'))
          .sort()
          .map((f) => join('test', dir, f)),
      )
const tests = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=1', '--test-reporter=spec', ...files],
  {cwd: root, stdio: 'inherit'},
)
// after the tests, so a style slip neither hides their results nor is hidden by them
if (only.length === 0) step([process.execPath, join(root, 'scripts', 'check-format.mjs')])
if (tests.status !== 0) process.exit(tests.status ?? 1)
