// The prebuilt objects in bpf/dist/ must be built from the sources next to
// them: users get no compiler, so a stale object would be a silent lie.
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {appendFileSync, cpSync, mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {after, test} from 'node:test'

const root = join(import.meta.dirname, '..', '..')
const check = (dir: string) => spawnSync(process.execPath, [join(dir, 'scripts', 'bpf-hashes.mjs'), 'check'], {encoding: 'utf8'})
const tmp = mkdtempSync(join(tmpdir(), 'sn-bpf-objects-'))
after(() => rmSync(tmp, {recursive: true, force: true}))

test('every object in bpf/dist is built from the current sources', () => {
  const r = check(root)
  assert.equal(r.status, 0, r.stderr)
})

test('changing a shared header makes every object stale, and says how to fix it', () => {
  cpSync(join(root, 'bpf'), join(tmp, 'bpf'), {recursive: true})
  cpSync(join(root, 'scripts'), join(tmp, 'scripts'), {recursive: true})
  assert.equal(check(tmp).status, 0)
  appendFileSync(join(tmp, 'bpf', 'include', 'layout.h'), '\n/* changed */\n')
  const r = check(tmp)
  assert.equal(r.status, 1)
  assert.match(r.stderr, /stale BPF objects: tc_task, xdp_task_peer, xdp_underlay: run 'npm run build:bpf'/)
})
