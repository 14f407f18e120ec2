// Every program the code, the tests and the bench run must come from a package that
// scripts/setup.sh installs (or from Debian's base system, or Node itself): a new
// machine has nothing else. A tool installed by hand on the machine that runs the
// tests (a plain `clang` beside setup.sh's `clang-14`) made CI green and a newcomer's
// `npm test` red; this test fails on that machine instead.
//
// What counts as "run": a string literal that starts an argv array (`['ip', ...]`),
// follows a `'--'` in one (`nsenter ... -- dig`), or is the first argument of a spawn
// call, and that names an executable on PATH. Words that are data but happen to name
// an executable (`top`, `route`) resolve to base-system packages or are listed below.
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {existsSync, readFileSync, readdirSync, realpathSync} from 'node:fs'
import {join} from 'node:path'
import {describe, test} from 'node:test'
import {clang} from '../fixtures/bpf/build.js'

const ROOT = join(import.meta.dirname, '..', '..')

/** Literals the scan finds that the code never runs (a CLI word, a route table name), and why they may name a program here. */
const NOT_PROGRAMS = new Set([
  'route', // `ip route ...` words and the lab's routes; net-tools' route is never run
  'idle', // a gossip/DNS state word; pyenv ships an `idle` shim on some machines
])

/** Node is the machine's own (the project needs it to run setup.sh at all), from a package or not. */
const NODE_PACKAGES = new Set(['nodejs'])
const NODE_PROGRAMS = new Set(['node', 'npm', 'npx'])

function setupPackages(): Set<string> {
  const text = readFileSync(join(ROOT, 'scripts/setup.sh'), 'utf8')
  const list = /^pkgs=\(\n([\s\S]*?)^\)/m.exec(text)
  assert.ok(list, 'scripts/setup.sh has its pkgs=( ... ) list')
  return new Set(
    list[1]!
      .split('\n')
      .map((l) => l.replace(/#.*/, ''))
      .flatMap((l) => l.split(/\s+/))
      .filter(Boolean),
  )
}

/** What apt installs for setup.sh's list: the packages and everything they depend on (`dnsutils` brings `bind9-dnsutils`). */
function installedBySetup(named: Set<string>): Set<string> {
  const r = spawnSync(
    'apt-cache',
    [
      'depends',
      '--recurse',
      ...['recommends', 'suggests', 'conflicts', 'breaks', 'replaces', 'enhances'].map((x) => `--no-${x}`),
      ...named,
    ],
    {encoding: 'utf8', maxBuffer: 64 << 20},
  )
  assert.equal(r.status, 0, r.stderr)
  return new Set(
    r.stdout
      .split('\n')
      .filter((l) => l && !l.startsWith(' ') && !l.startsWith('<'))
      .map((l) => l.split(':')[0]!),
  )
}

function sources(dir: string): string[] {
  return readdirSync(join(ROOT, dir), {recursive: true, encoding: 'utf8'})
    .filter((f) => /\.(ts|mjs)$/.test(f) && !f.includes('node_modules'))
    .map((f) => join(dir, f))
}

/** program -> the first place that runs it. */
function programsRun(): Map<string, string> {
  const found = new Map<string, string>()
  const name = `'([a-z][a-z0-9.+_-]*)'`
  const patterns = [
    new RegExp(`\\[\\s*${name}`, 'g'),
    new RegExp(`'--',\\s*${name}`, 'g'),
    new RegExp(`(?:execFileSync|execFile|spawnSync|spawn)\\(\\s*${name}`, 'g'),
  ]
  for (const file of ['src', 'test', 'bench', 'scripts'].flatMap(sources)) {
    const text = readFileSync(join(ROOT, file), 'utf8')
    for (const re of patterns)
      for (const m of text.matchAll(re)) {
        const line = text.slice(0, m.index).split('\n').length
        if (!found.has(m[1]!)) found.set(m[1]!, `${file}:${line}`)
      }
  }
  return found
}

function which(program: string): string | undefined {
  const r = spawnSync('bash', ['-c', 'command -v -- "$1"', 'which', program], {encoding: 'utf8'})
  const p = r.stdout.trim()
  return r.status === 0 && p.startsWith('/') ? p : undefined
}

/** Both names of a path under usrmerge (/bin/x is /usr/bin/x), and where a symlink leads. */
function variants(path: string): string[] {
  const real = realpathSync(path)
  return [...new Set([path, real, `/usr${path}`, path.replace(/^\/usr/, ''), real.replace(/^\/usr/, '')])]
}

/** path -> the Debian package that owns it, for many paths in one dpkg call (one call per path takes seconds). */
function owners(paths: string[]): Map<string, string> {
  const r = spawnSync('dpkg', ['-S', ...paths], {encoding: 'utf8'})
  const byPath = new Map<string, string>()
  for (const line of r.stdout.split('\n')) {
    const m = /^([^:]+(?::[a-z0-9]+)?(?:, [^:]+)*): (\/.*)$/.exec(line)
    if (!m || line.startsWith('diversion by')) continue
    byPath.set(m[2]!, m[1]!.split(',')[0]!.split(':')[0]!.trim())
  }
  return byPath
}

/** In every Debian system: Essential, or of priority required/important (what debootstrap installs). */
function baseSystem(pkg: string): boolean {
  const r = spawnSync('dpkg-query', ['-W', '-f=${Essential} ${Priority}', pkg], {encoding: 'utf8'})
  return /^yes /.test(r.stdout) || / (required|important)$/.test(r.stdout)
}

describe('what the tests and the bench run, setup.sh installs', () => {
  test('every program run by src, test, bench and scripts comes from setup.sh, the base system or Node', () => {
    const pkgs = installedBySetup(setupPackages())
    const programs = programsRun()
    // run through a variable, so the scan cannot see them: the pinned compiler and its strip
    programs.set(clang(), 'scripts/clang.sh')
    const strip = spawnSync('bash', [join(ROOT, 'scripts/clang.sh'), 'strip'], {encoding: 'utf8'}).stdout.trim()
    programs.set(strip, 'scripts/clang.sh strip')
    // the executable PATH finds first, and the one Debian puts in /usr/bin or /usr/sbin: a new machine
    // may put another first on PATH (pyenv's python3), but what setup.sh installs is the Debian one
    const found = new Map<string, {where: string; paths: string[]}>()
    for (const [program, where] of programs) {
      if (NOT_PROGRAMS.has(program) || NODE_PROGRAMS.has(program)) continue
      const first = program.startsWith('/') ? program : which(program)
      if (!first) continue // not an executable here: a word of data (a run of a missing program fails its own test)
      const debian = ['/usr/bin', '/usr/sbin'].map((d) => join(d, program)).filter((p) => existsSync(p))
      found.set(program, {where, paths: [first, ...debian].flatMap(variants)})
    }
    const byPath = owners([...new Set([...found.values()].flatMap((f) => f.paths))])
    const problems: string[] = []
    for (const [program, {where, paths}] of found) {
      const pkgOf = paths.map((p) => byPath.get(p)).filter((p): p is string => p !== undefined)
      if (pkgOf.length === 0) problems.push(`${program} (run at ${where}) is from no Debian package: installed by hand?`)
      else if (!pkgOf.some((pkg) => pkgs.has(pkg) || baseSystem(pkg) || NODE_PACKAGES.has(pkg)))
        problems.push(`${program} (run at ${where}) is from package ${pkgOf[0]}, which scripts/setup.sh does not install`)
    }
    assert.deepEqual(problems, [])
  })

  test('the scan sees the programs the suite is known to run', () => {
    const programs = programsRun()
    for (const p of ['ip', 'nsenter', 'curl', 'dig', 'tshark', 'iperf3', 'dnsperf', 'dnsmasq', 'etcdctl', 'bpftool', 'nft'])
      assert.ok(programs.has(p), `the scan misses ${p}`)
  })

  test('every package setup.sh names exists for this release (apt knows it)', () => {
    const r = spawnSync('apt-cache', ['show', '--no-all-versions', ...setupPackages()], {encoding: 'utf8'})
    assert.equal(r.status, 0, r.stderr)
  })
})
