// The etcd flags of init, join and lab up as a person types them: each mistake
// is one line, a non-zero exit, and nothing made (state in a temp dir, so no
// global name is touched and nothing leaves this host: every address is 127.0.0.1).
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {mkdtempSync, readdirSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {after, test} from 'node:test'
import {fileURLToPath} from 'node:url'
import {freePort} from '../../src/store/etcd-process.js'

const BIN = join(fileURLToPath(import.meta.url), '..', '..', '..', 'bin', 'run.js')
const state = mkdtempSync(join(tmpdir(), 'sn-cli-etcd-state-'))
const runDir = mkdtempSync(join(tmpdir(), 'sn-cli-etcd-run-'))
after(() => [state, runDir].forEach((d) => rmSync(d, {recursive: true, force: true})))

function swarmnet(args: string[]): {code: number; stderr: string} {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8',
    env: {...process.env, NO_COLOR: '1', SWARMNET_STATE_DIR: state, SWARMNET_RUN_DIR: runDir},
    timeout: 30_000,
  })
  return {code: r.status ?? -1, stderr: (r.stderr ?? '').trim()}
}

function refused(args: string[], why: RegExp): void {
  const r = swarmnet(args)
  assert.notEqual(r.code, 0, `accepted: ${args.join(' ')}`)
  assert.match(r.stderr, why)
  assert.equal(r.stderr.split('\n').length, 1, r.stderr)
  assert.deepEqual(readdirSync(state), [], `${args.join(' ')} left state behind`)
}

const init = ['init', '--node', 'e1', '--advertise-addr', '127.0.0.1']

test('init: etcd flags checked in full before anything is made', async () => {
  refused([...init, '--store', 'etcd'], /--store etcd needs --etcd-endpoints/)
  refused([...init, '--etcd-endpoints', 'http://127.0.0.1:2379'], /--etcd-\* flags go with --store etcd/)
  refused([...init, '--store', 'etcd', '--etcd-endpoints', 'http://127.0.0.1:2379,,'], /has an empty entry/)
  refused([...init, '--store', 'etcd', '--etcd-endpoints', '127.0.0.1:2379'], /is not a URL|must be http\(s\):\/\/HOST:PORT/)
  refused([...init, '--store', 'etcd', '--etcd-endpoints', 'http://127.0.0.1'], /must be http\(s\):\/\/HOST:PORT/)
  refused([...init, '--store', 'etcd', '--etcd-endpoints', 'https://127.0.0.1:2379'], /https endpoints need --etcd-ca/)
  refused(
    [...init, '--store', 'etcd', '--etcd-endpoints', 'http://127.0.0.1:2379', '--etcd-ca', '/nonexistent/ca.pem'],
    /cannot read \/nonexistent\/ca\.pem: ENOENT/,
  )
  refused([...init, '--store', 'etcd', '--etcd-endpoints', 'http://127.0.0.1:2379', '--etcd-cert', '--etcd-key'], /./)
  refused([...init, '--etcd-cert', 'c.pem'], /need --etcd-endpoints|go with --store etcd/)
  refused([...init, '--store', 'zookeeper'], /zookeeper/)
  // Well-formed, but no etcd there: the same one line a request gets, and no node half made.
  const port = await freePort()
  refused(
    [...init, '--store', 'etcd', '--etcd-endpoints', `http://127.0.0.1:${port}`],
    new RegExp(`etcd at http://127\\.0\\.0\\.1:${port} cannot (read|write) the cluster state: no member answers`),
  )
})

test('join: --manager and the etcd flags go together, checked before any packet is sent', () => {
  const join = ['join', '--node', 'e2', '--advertise-addr', '127.0.0.1', '--token', 'SWMTKN-1-x-y']
  refused([...join, '--manager', '127.0.0.1:7946'], /--manager needs --etcd-endpoints/)
  refused([...join, '--etcd-endpoints', 'http://127.0.0.1:2379', '127.0.0.1:7946'], /--etcd-\* flags are for managers/)
  refused([...join, '--manager', '--etcd-endpoints', 'http://127.0.0.1:2379', '--etcd-ca'], /./)
})

test('lab up: several managers need etcd', () => {
  const r = swarmnet(['lab', 'up', '--nodes', '3', '--managers', '2'])
  assert.notEqual(r.code, 0)
  assert.match(r.stderr, /several managers keep desired state in etcd: add --store etcd/)
})
