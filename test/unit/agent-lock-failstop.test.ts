// One agent per node, and an agent that cannot write stops: real processes, a real flock,
// and a real full disk (a 256 KiB tmpfs, in a mount namespace of the child's own).
import assert from 'node:assert/strict'
import {spawn, spawnSync} from 'node:child_process'
import {mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {after, describe, test} from 'node:test'
import {FAIL_STOP_EXIT} from '../../src/agent/fail-stop.js'

const ROOT = join(import.meta.dirname, '..', '..')
const CHILD = join(ROOT, 'test', 'fixtures', 'agent-child.ts')
const dir = mkdtempSync(join(tmpdir(), 'sn-agent-lock-'))
after(() => rmSync(dir, {recursive: true, force: true}))
const env = {...process.env, SWARMNET_STATE_DIR: join(dir, 'state'), SWARMNET_RUN_DIR: join(dir, 'run')}
mkdirSync(join(dir, 'run'), {recursive: true})

const child = (args: string[]) =>
  spawnSync(process.execPath, ['--import', 'tsx', CHILD, ...args], {cwd: ROOT, env, encoding: 'utf8'})

describe('the agent lock and fail-stop', () => {
  test('a second agent of the same node is refused in one line; the lock goes with its holder, even on kill -9', async () => {
    mkdirSync(join(dir, 'state', 'n5'), {recursive: true})
    const holder = spawn(process.execPath, ['--import', 'tsx', CHILD, 'lock', 'n5'], {cwd: ROOT, env})
    try {
      await new Promise<void>((resolve, reject) => {
        holder.stdout.once('data', () => resolve())
        holder.once('exit', (c) => reject(new Error(`the holder exited (${c})`)))
      })
      const second = child(['lock', 'n5'])
      assert.equal(second.status, 1)
      assert.equal(second.stderr.trim(), `another agent of node n5 is running on ${join(dir, 'state', 'n5')} (pid ${holder.pid})`)
    } finally {
      holder.kill('SIGKILL')
      await new Promise((r) => holder.once('exit', r))
    }
    const third = spawn(process.execPath, ['--import', 'tsx', CHILD, 'lock', 'n5'], {cwd: ROOT, env})
    const said = await new Promise<string>((resolve) => third.stdout.once('data', (d: Buffer) => resolve(d.toString())))
    third.kill('SIGKILL')
    assert.equal(said.trim(), 'locked')
  })

  test('an agent taking over (agent --replace) waits for the lock its predecessor lets go of', async () => {
    mkdirSync(join(dir, 'state', 'n6'), {recursive: true})
    const holder = spawn(process.execPath, ['--import', 'tsx', CHILD, 'lock', 'n6'], {cwd: ROOT, env})
    await new Promise<void>((resolve) => holder.stdout.once('data', () => resolve()))
    const next = spawn(process.execPath, ['--import', 'tsx', CHILD, 'lock', 'n6', '60000'], {cwd: ROOT, env})
    try {
      let said = ''
      next.stdout.on('data', (d: Buffer) => (said += d.toString()))
      // Still waiting while the holder runs (it has had time to load and try).
      await new Promise((r) => setTimeout(r, 3000))
      assert.equal(said, '', 'no lock while the holder has it')
      assert.equal(next.exitCode, null, 'still waiting, not refused')
      holder.kill('SIGKILL')
      await new Promise<void>((resolve) => next.stdout.once('data', () => resolve()))
      assert.equal(said.trim(), 'locked')
    } finally {
      holder.kill('SIGKILL')
      next.kill('SIGKILL')
    }
  })

  test('a store whose disk fills stops the agent with EX_IOERR, and the CLI says why it is not running', () => {
    const state = join(dir, 'state')
    const r = spawnSync(
      'unshare',
      [
        '--mount',
        '--propagation',
        'private',
        '--',
        'sh',
        '-c',
        'mkdir -p "$0" && mount -t tmpfs -o size=256k tmpfs "$0" && mkdir "$0/n6" && exec "$@"',
        state,
        process.execPath,
        '--import',
        'tsx',
        CHILD,
        'fill',
        'n6',
      ],
      {cwd: ROOT, env, encoding: 'utf8', timeout: 60_000},
    )
    assert.equal(r.status, FAIL_STOP_EXIT, `exit ${r.status}: ${r.stderr}`)
    assert.match(r.stderr, /fail-stop: stopped at \S+: the store cannot be written: ENOSPC/)
    assert.doesNotMatch(r.stderr, /put refused/, 'it stopped at the first failed commit, not after')
    assert.match(readFileSync(join(dir, 'run', 'n6.failed'), 'utf8'), /the store cannot be written: ENOSPC/)
    // what any command prints when it finds the node's agent gone (its state dir was the tmpfs: a config stands in)
    mkdirSync(join(state, 'n6'), {recursive: true})
    writeFileSync(join(state, 'n6', 'node.json'), '{}')
    const cli = spawnSync(process.execPath, [join(ROOT, 'bin', 'run.js'), 'network', 'ls', '--host', 'n6'], {
      cwd: ROOT,
      env: {...env, NO_COLOR: '1'},
      encoding: 'utf8',
    })
    assert.notEqual(cli.status, 0)
    assert.match(
      cli.stderr.trim(),
      /^swarmnet: the agent of node 'n6' is not running \(it stopped at \S+: the store cannot be written: ENOSPC[^)]*\): start it with/,
    )
  })
})
