// The CLI as a user meets it: help, version with probed features, and bad
// input answered with one line and a non-zero exit.
import assert from 'node:assert/strict'
import {test} from 'node:test'
import {chmodSync, mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {BIN, ROOT, cli, sh} from './helpers.js'

const oneLine = (s: string) => assert.equal(s.trim().split('\n').length, 1, `one line expected: ${s}`)

test('--help lists the topics, every command has examples', () => {
  const r = cli(undefined, ['--help'])
  assert.equal(r.code, 0)
  for (const t of ['inspect', 'lab', 'network', 'node', 'service', 'swarm', 'task'])
    assert.match(r.stdout, new RegExp(`\\n\\s+${t}\\s`))
  for (const c of [
    ['network', 'create'],
    ['service', 'create'],
    ['inspect', 'maps'],
    ['init'],
    ['join'],
    ['lab', 'up'],
    ['version'],
  ]) {
    const h = cli(undefined, [...c, '--help'])
    assert.equal(h.code, 0)
    assert.match(h.stdout, /EXAMPLES/, `${c.join(' ')} has examples`)
  }
})

test('version --json reports the kernel, libbpf and features probed from the kernel', () => {
  const v = JSON.parse(cli(undefined, ['version', '--json']).stdout) as {
    kernel: string
    libbpf: string
    progTypes: Record<string, unknown>
    helpers: Record<string, unknown>
  }
  assert.match(v.kernel, /^\d+\.\d+/)
  assert.match(v.libbpf, /^1\.\d+/)
  assert.equal(v.progTypes.xdp, true)
  assert.equal(v.progTypes.sched_cls, true)
  assert.equal(v.helpers['bpf_redirect_neigh/sched_cls'], true)
})

test('an unknown flag: one line, non-zero exit', () => {
  const r = cli(undefined, ['network', 'ls', '--frobnicate'])
  assert.notEqual(r.code, 0)
  oneLine(r.stderr)
  assert.match(r.stderr, /^swarmnet: Nonexistent flag: --frobnicate/)
})

test('no agent: one line that says what to do', () => {
  const r = cli('nosuchnode', ['network', 'ls'])
  assert.notEqual(r.code, 0)
  oneLine(r.stderr)
  assert.match(
    r.stderr,
    /node 'nosuchnode' is not part of a cluster on this host: make it one with `swarmnet init` or `swarmnet join`/,
  )
})

test('a map name that does not exist, and a node without maps', () => {
  const r = cli(undefined, ['inspect', 'maps', '--host', 'nosuchnode'])
  assert.notEqual(r.code, 0)
  oneLine(r.stderr)
  assert.match(r.stderr, /node nosuchnode has no pinned maps/)
})

test('a device that does not exist', () => {
  const r = sh(['unshare', '--net', '--', process.execPath, BIN, 'init', '--node', 'devtest', '--advertise-addr', 'nosuchdev0'])
  assert.notEqual(r.code, 0)
  oneLine(r.stderr)
  assert.match(r.stderr, /nosuchdev0/)
  assert.equal(sh(['ls', '/var/lib/swarmnet/devtest']).code === 0, false, 'nothing half-made')
})

test('init refuses a data-path port outside 1024-49151 and a bad address pool, making nothing', () => {
  for (const [flag, value, msg] of [
    ['--data-path-port', '80', /1024/],
    ['--default-addr-pool', '10.0.0.0/99', /invalid CIDR/],
  ] as const) {
    const r = sh(['unshare', '--net', '--', process.execPath, BIN, 'init', '--node', 'porttest', flag, value])
    assert.notEqual(r.code, 0)
    oneLine(r.stderr)
    assert.match(r.stderr, msg)
  }
  assert.equal(sh(['ls', '/var/lib/swarmnet/porttest']).code === 0, false, 'nothing half-made')
})

test('not root: version says what the kernel lets it see, the rest says it needs root', (t) => {
  // nobody may not reach the checkout (a clone in root's 0700 home): it runs a view of it
  // bound on a folder it can reach, in a mount namespace of its own that ends with the command
  const view = mkdtempSync(join(tmpdir(), 'sn-cli-nobody-'))
  chmodSync(view, 0o755)
  t.after(() => rmSync(view, {recursive: true, force: true}))
  const asNobody = [
    'unshare',
    '--mount',
    '--propagation',
    'private',
    '--',
    'sh',
    '-c',
    'mount --bind "$0" "$1" && shift && exec "$@"',
    ROOT,
    view,
    'setpriv',
    '--reuid=nobody',
    '--regid=nogroup',
    '--clear-groups',
    '--inh-caps=-all',
    '--',
    'env',
    'HOME=/tmp',
    process.execPath,
    join(view, 'bin', 'run.js'),
  ]
  const r = sh([...asNobody, 'version', '--json'])
  // version still works without privileges, but the probes cannot answer yes
  assert.equal(r.code, 0, r.stderr)
  const v = JSON.parse(r.stdout) as {progTypes: Record<string, unknown>}
  assert.notEqual(v.progTypes.xdp, true)
  for (const args of [
    ['inspect', 'maps'],
    ['network', 'ls'],
    ['lab', 'up'],
  ]) {
    const s = sh([...asNobody, ...args])
    assert.notEqual(s.code, 0)
    oneLine(s.stderr)
    assert.match(s.stderr, new RegExp(`swarmnet ${args.join(' ')}\` needs root`))
  }
})
