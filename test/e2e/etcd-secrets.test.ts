// Issue 20, secrets out of task reach, in a lab of 3 managers on etcd and a worker: every
// manager uses its own copy of the etcd client's TLS files, under its state directory (0600,
// root), made at init, join and promote; the worker promoted with files the user keeps in /etc
// (where a task of the old sandbox could read them) copies them too. A task on that manager
// cannot read a key or certificate: not at the paths given, not in the state directory, not
// through /proc/1/root, not anywhere in its view.
import assert from 'node:assert/strict'
import {copyFileSync, mkdirSync, readFileSync, rmSync, statSync} from 'node:fs'
import {join} from 'node:path'
import {describe, test} from 'node:test'
import type {NodeConfig} from '../../src/agent/config.js'
import {readLabState} from '../../src/lab/state.js'
import {cli, eventually, json, ok} from './helpers.js'
import {withLab} from './lab.js'
import {allRunning} from './service-tasks.js'

interface Task {
  id: string
  name: string
  node: string
  desiredState: string
  state: string
}

const nodeConfig = (node: string) => JSON.parse(readFileSync(`/var/lib/swarmnet/${node}/node.json`, 'utf8')) as NodeConfig
/** Where a user might keep them: outside swarmnet's state, readable by root. */
const USER_DIR = `/etc/sn-etcd-test-${process.pid}`
const KINDS = ['ca', 'cert', 'key'] as const

describe('etcd TLS files out of task reach', {timeout: 600_000}, () => {
  // The user's copies go before lab down checks what is left (and whether or not it passes).
  withLab(['--nodes', '4', '--managers', '3', '--store', 'etcd'], {
    beforeDown: () => rmSync(USER_DIR, {recursive: true, force: true}),
  })

  test('each manager uses its own copies under its state directory, 0600 root', () => {
    const lab = readLabState()!.etcd!.client
    for (const m of ['n1', 'n2', 'n3']) {
      const etcd = nodeConfig(m).etcd!
      assert.equal(statSync(`/var/lib/swarmnet/${m}/etcd`).mode & 0o777, 0o700)
      for (const k of KINDS) {
        const copy = `/var/lib/swarmnet/${m}/etcd/${k}.pem`
        assert.equal(etcd[k], copy, `${m} uses ${etcd[k]} for --etcd-${k}`)
        const st = statSync(copy)
        assert.equal(st.mode & 0o777, 0o600, `${copy} mode`)
        assert.equal(st.uid, 0)
        assert.deepEqual(readFileSync(copy), readFileSync(lab[k]))
      }
    }
  })

  test('a manager promoted with files in /etc copies them; a task on it reads no key nor certificate', async () => {
    const lab = readLabState()!.etcd!.client
    mkdirSync(USER_DIR, {mode: 0o755})
    const given = Object.fromEntries(KINDS.map((k) => [k, join(USER_DIR, `${k}.pem`)])) as Record<(typeof KINDS)[number], string>
    for (const k of KINDS) copyFileSync(lab[k], given[k])
    ok('n1', ['node', 'promote', 'n4', '--etcd-ca', given.ca, '--etcd-cert', given.cert, '--etcd-key', given.key])
    let i = 0
    await eventually('n4 serves writes', () => cli('n4', ['network', 'create', `p${i++}`]).code === 0 || undefined, 60_000)
    const cfg = nodeConfig('n4')
    for (const k of KINDS) assert.equal(cfg.etcd![k], `/var/lib/swarmnet/n4/etcd/${k}.pem`)
    assert.deepEqual(cfg.etcdGiven, given, 'node promote offers the paths as given, not the copies')

    ok('n4', ['service', 'create', '--name', 'nosy', '--constraint', 'node.hostname==n4', '--', 'sleep', 'infinity'])
    const ps = (svc: string) => json<Task[]>('n1', ['service', 'ps', svc]).filter((t) => t.desiredState === 'running')
    const [t] = await allRunning('nosy', 1, ps, 60_000)
    assert.equal(t!.node, 'n4')
    const exec = (argv: string[]) => cli('n4', ['task', 'exec', 'nosy.1', '--', ...argv])
    const files = [
      ...Object.values(given),
      ...Object.values(lab),
      ...KINDS.map((k) => `/var/lib/swarmnet/n4/etcd/${k}.pem`),
      ...KINDS.map((k) => `/var/lib/swarmnet/n1/etcd/${k}.pem`),
      '/var/lib/swarmnet/n4/node.json',
    ]
    for (const f of files) {
      for (const p of [f, `/proc/1/root${f}`, `/proc/self/root${f}`, `/proc/1/cwd/..${f}`]) {
        const r = exec(['cat', p])
        assert.notEqual(r.code, 0, `the task read ${p}`)
        assert.equal(r.stdout, '')
      }
    }
    // Nor a copy of the key anywhere in its view (the node's programs in /usr aside: they hold none).
    const line = readFileSync(lab.key, 'utf8').split('\n')[1]!
    const r = exec([
      'grep',
      '-rlF',
      line,
      '/',
      '--exclude-dir=proc',
      '--exclude-dir=sys',
      '--exclude-dir=dev',
      '--exclude-dir=usr',
    ])
    assert.equal(r.stdout, '', `the key is readable at ${r.stdout}`)
    assert.equal(r.code, 1, r.stderr)
    ok('n1', ['service', 'rm', 'nosy'])
  })
})
