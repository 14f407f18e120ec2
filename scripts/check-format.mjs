#!/usr/bin/env node
// Is the code in the one style? `prettier --check` over exactly the files `npm run format`
// writes (its globs are read from package.json, so the two cannot drift apart). Run by
// `npm test`; exits non-zero with one line naming the fix.
import {spawnSync} from 'node:child_process'
import {readFileSync} from 'node:fs'
import {join} from 'node:path'

const here = join(import.meta.dirname ?? new URL('.', import.meta.url).pathname, '..')
// the tree to check: this package, or the one given (tests check a scratch copy)
const root = process.argv[2] ?? here
const format = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).scripts?.format ?? ''
const globs = [...format.matchAll(/"([^"]+)"/g)].map((m) => m[1])
if (!/^prettier --write /.test(format) || globs.length === 0) {
  console.error('check-format: package.json has no `format` script of the form prettier --write "GLOB" ...')
  process.exit(2)
}
const prettier = join(here, 'node_modules', '.bin', 'prettier')
const r = spawnSync(prettier, ['--check', '--log-level', 'warn', '--no-error-on-unmatched-pattern', ...globs], {
  cwd: root,
  stdio: 'inherit',
})
if (r.error) {
  console.error(`check-format: cannot run prettier: ${r.error.message}`)
  process.exit(2)
}
if (r.status !== 0) {
  console.error('the files above are not in the one code style: run `npm run format`')
  process.exit(1)
}
