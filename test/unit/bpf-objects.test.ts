// The prebuilt objects in bpf/dist/ must be built from the sources next to
// them: users get no compiler, so a stale object would be a silent lie. The
// proof is a rebuild with the pinned compiler, compared section by section;
// the source hashes in sources.json only name the stale object quickly.
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {appendFileSync, cpSync, mkdtempSync, readFileSync, readdirSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {after, test} from 'node:test'
import {elfSections} from '../../src/bpf/elf.js'

const root = join(import.meta.dirname, '..', '..')
const check = (dir: string) => spawnSync(process.execPath, [join(dir, 'scripts', 'bpf-hashes.mjs'), 'check'], {encoding: 'utf8'})
const tmp = mkdtempSync(join(tmpdir(), 'sn-bpf-objects-'))
after(() => rmSync(tmp, {recursive: true, force: true}))

/** The sections of an object by name. */
const sectionsOf = (file: string) => new Map(elfSections(file).map((s) => [s.name, s.data]))

test('bpf/dist is what the pinned compiler builds from the sources: every section, instructions and BTF', () => {
  // Rebuilt with scripts/build-bpf.sh itself (clang 14, the flags of the package), into a temp dir.
  const out = join(tmp, 'rebuilt')
  const r = spawnSync('bash', [join(root, 'scripts', 'build-bpf.sh')], {encoding: 'utf8', env: {...process.env, OUT: out}})
  assert.equal(r.status, 0, r.stderr)
  const objects = readdirSync(join(root, 'bpf', 'dist')).filter((f) => f.endsWith('.o'))
  assert.deepEqual(readdirSync(out).sort(), objects.sort(), 'one object per program, no more')
  for (const o of objects) {
    const want = sectionsOf(join(out, o))
    const have = sectionsOf(join(root, 'bpf', 'dist', o))
    assert.deepEqual([...have.keys()].sort(), [...want.keys()].sort(), `${o}: sections`)
    // Nothing is left out: the program sections (instructions) and their relocations, .maps,
    // .BTF and .BTF.ext, the symbol and string tables. The one input that is not the sources,
    // the checkout's path, is mapped to "." by the build (-fdebug-prefix-map).
    for (const [name, bytes] of want) {
      assert.ok(
        have.get(name)!.equals(bytes),
        `bpf/dist/${o}: section ${name} differs from a rebuild: run 'npm run build:bpf' and commit bpf/dist`,
      )
    }
  }
})

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
  assert.match(
    r.stderr,
    /stale BPF objects: sock_lb, sock_lb_end, sock_mesh, tc_dns, tc_gw, tc_task, xdp_task, xdp_task_peer, xdp_underlay: run 'npm run build:bpf'/,
  )
})
