// What `npm pack` ships: every entry package.json's "files" names is really in it (npm skips a
// missing one without a word), and what the CLI needs at run time is among them.
import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import {test} from 'node:test'
import {ROOT, sh} from './helpers.js'

interface Pkg {
  files: string[]
  bin: Record<string, string>
  oclif: {commands: string; hooks?: Record<string, string>}
}

test('npm pack holds every "files" entry, the bin script, the commands and the hooks', () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as Pkg
  // scripts would rebuild dist/: what is built already is what we check
  const r = sh(['npm', 'pack', '--dry-run', '--json', '--ignore-scripts'], {}, 60_000)
  assert.equal(r.code, 0, r.stderr)
  const packed = (JSON.parse(r.stdout) as {files: {path: string}[]}[])[0]!.files.map((f) => f.path)
  const matches = (entry: string) => {
    const re = new RegExp(`^${entry.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')}(/.*)?$`)
    return packed.some((p) => re.test(p))
  }
  // The manifest is made by prepack, which --ignore-scripts skips: install.test.ts packs with it.
  for (const entry of pkg.files.filter((f) => f !== 'oclif.manifest.json'))
    assert.ok(matches(entry), `"files" names ${entry}, which npm pack does not ship`)
  const rel = (p: string) => p.replace(/^\.\//, '')
  for (const bin of Object.values(pkg.bin)) assert.ok(packed.includes(rel(bin)), bin)
  assert.ok(packed.includes('dist/src/cli/base.js'), 'bin/run.js imports it')
  assert.ok(
    packed.some((p) => p.startsWith(`${rel(pkg.oclif.commands)}/`) && p.endsWith('.js')),
    'the commands',
  )
  for (const hook of Object.values(pkg.oclif.hooks ?? {})) assert.ok(packed.includes(rel(hook)), hook)
})
