// The package as a user gets it: `npm pack` (with the oclif manifest made at pack time),
// installed globally into a temporary prefix, run from a directory outside the clone:
// version, --help (its start time printed), and a lab brought up and down by the installed copy.
import assert from 'node:assert/strict'
import {mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {existsSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {after, before, describe, test} from 'node:test'
import {spawnSync} from 'node:child_process'
import {ROOT, leftovers, sh} from './helpers.js'

const tmp = mkdtempSync(join(tmpdir(), 'sn-install-'))
const prefix = join(tmp, 'prefix')
const bin = join(prefix, 'bin', 'swarmnet')

/** The installed swarmnet, from outside the clone, with no SWARMNET_HOST of ours. */
function installed(args: string[], timeoutMs = 120_000) {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    NO_COLOR: '1',
    PATH: `${join(prefix, 'bin')}:${process.env.PATH}`,
    XDG_CACHE_HOME: join(tmp, 'cache'),
  }
  delete env.SWARMNET_HOST
  const r = spawnSync(bin, args, {cwd: tmp, encoding: 'utf8', env, timeout: timeoutMs})
  return {code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? ''}
}

describe('the packed tarball, installed globally', {timeout: 600_000}, () => {
  let tarball: string

  before(() => {
    const up = sh(['ip', 'netns', 'list']).stdout
    assert.ok(!/sn-lab-/.test(up), 'a lab is already up on this machine: `swarmnet lab down` first')
    const pack = spawnSync('npm', ['pack', '--json', '--pack-destination', tmp], {cwd: ROOT, encoding: 'utf8', timeout: 300_000})
    assert.equal(pack.status, 0, pack.stderr)
    const out = JSON.parse(pack.stdout.slice(pack.stdout.indexOf('['))) as {filename: string; files: {path: string}[]}[]
    tarball = join(tmp, out[0]!.filename)
    assert.ok(
      out[0]!.files.some((f) => f.path === 'oclif.manifest.json'),
      'the manifest is packed',
    )
    assert.ok(!existsSync(join(ROOT, 'oclif.manifest.json')), 'and taken away from the clone after packing')
    const inst = spawnSync('npm', ['install', '-g', '--no-fund', '--no-audit', '--prefix', prefix, tarball], {
      cwd: tmp,
      encoding: 'utf8',
      timeout: 300_000,
    })
    assert.equal(inst.status, 0, inst.stderr)
  })

  after(() => {
    const down = installed(['lab', 'down'])
    rmSync(tmp, {recursive: true, force: true})
    assert.equal(down.code, 0, down.stderr)
    assert.deepEqual(leftovers(), [], 'lab down must leave nothing behind')
  })

  test('version and --help answer from any directory; --help comes from the manifest', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {version: string}
    const v = installed(['version'])
    assert.equal(v.code, 0, v.stderr)
    assert.match(v.stdout, new RegExp(pkg.version.replace(/\./g, '\\.')))
    const lib = join(prefix, 'lib', 'node_modules', 'swarmnet')
    const manifest = JSON.parse(readFileSync(join(lib, 'oclif.manifest.json'), 'utf8')) as {commands: Record<string, unknown>}
    assert.ok(manifest.commands['network:connect'] && manifest.commands.top && manifest.commands['lab:up'])
    const times: number[] = []
    for (let i = 0; i < 3; i++) {
      const t0 = process.hrtime.bigint()
      const h = installed(['--help'])
      times.push(Number(process.hrtime.bigint() - t0) / 1e6)
      assert.equal(h.code, 0, h.stderr)
      assert.match(h.stdout, /network/)
    }
    // A number to read, not a pass mark (npm run bench prints it too).
    console.log(`# installed swarmnet --help: ${Math.min(...times).toFixed(0)} ms (best of 3)`)
  })

  test('autocomplete: the plugin comes with the package and writes completion for the installed commands', () => {
    const setup = installed(['autocomplete', 'bash'])
    assert.equal(setup.code, 0, setup.stderr)
    const r = installed(['autocomplete', 'script', 'bash'])
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /SWARMNET_AC_BASH_SETUP_PATH=.*\/cache\/swarmnet\/autocomplete\/bash_setup/)
    const fn = readFileSync(join(tmp, 'cache', 'swarmnet', 'autocomplete', 'functions', 'bash', 'swarmnet.bash'), 'utf8')
    assert.match(fn, /^service:deploy --host/m)
  })

  test('lab up --nodes 2 and lab down, by the installed copy: its agents run from the prefix', () => {
    const up = installed(['lab', 'up', '--nodes', '2'], 300_000)
    assert.equal(up.code, 0, up.stderr)
    for (const n of ['n1', 'n2']) {
      const pid = readFileSync(`/run/swarmnet/${n}.pid`, 'utf8').trim()
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
      assert.ok(
        cmd.some((a) => a.startsWith(prefix)),
        `agent ${n} runs the installed copy: ${cmd.join(' ')}`,
      )
    }
    const nodes = installed(['node', 'ls', '--host', 'n1', '--json'])
    assert.equal(nodes.code, 0, nodes.stderr)
    assert.equal((JSON.parse(nodes.stdout) as {state: string}[]).filter((n) => n.state === 'ready').length, 2)
    const down = installed(['lab', 'down'])
    assert.equal(down.code, 0, down.stderr)
    assert.deepEqual(leftovers(), [])
  })
})
