// `npm test` checks the code style over the same files `npm run format` writes, src/bpf and
// test/bpf included (the root bpf/ holds C and is not prettier's), and names the fix.
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {after, test} from 'node:test'
import {fileURLToPath} from 'node:url'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const tree = mkdtempSync(join(tmpdir(), 'sn-format-'))
after(() => rmSync(tree, {recursive: true, force: true}))

const put = (path: string, text: string) => {
  mkdirSync(join(tree, path, '..'), {recursive: true})
  writeFileSync(join(tree, path), text)
}
const check = () => spawnSync(process.execPath, [join(ROOT, 'scripts', 'check-format.mjs'), tree], {encoding: 'utf8'})

test('a file out of style under src/bpf or test/bpf fails the check, with one line naming npm run format', () => {
  for (const f of ['package.json', '.prettierrc.json', '.prettierignore']) copyFileSync(join(ROOT, f), join(tree, f))
  put('src/model/ok.ts', "export const a = 'a'\n")
  put('bpf/include/not-ours.ts', 'export const c = "c";\n') // the C side: not in the globs, ignored
  put('dist/src/built.js', 'export const d = "d";\n')
  assert.equal(check().status, 0, 'all in style')

  for (const file of ['src/bpf/loader.ts', 'test/bpf/harness.ts']) {
    put(file, 'export const b = "b";\n')
    const r = check()
    assert.equal(r.status, 1, `${file} is checked`)
    assert.ok(r.stdout.includes(file) || r.stderr.includes(file), r.stderr)
    assert.equal(r.stderr.trim().split('\n').at(-1), 'the files above are not in the one code style: run `npm run format`')
    put(file, "export const b = 'b'\n")
  }
  assert.equal(check().status, 0)
})
