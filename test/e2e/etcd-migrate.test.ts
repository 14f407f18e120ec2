// swarm migrate-store --to etcd on a running embedded cluster: its desired
// state moves into a real etcd (one member with TLS, in n1's namespace) and
// every task keeps running, same process, same address; afterwards the manager
// serves and places through etcd, with the migrated addresses held there.
import assert from 'node:assert/strict'
import {describe, test} from 'node:test'
import {makeLabPki, planLabEtcd, startLabEtcd, etcdctl} from '../../src/lab/etcd.js'
import {readLabState, writeLabState} from '../../src/lab/state.js'
import {isAlive} from '../../src/sys/proc.js'
import {cli, eventually, json, ok} from './helpers.js'
import {withLab} from './lab.js'
import {allRunning} from './service-tasks.js'

interface Task {
  id: string
  node: string
  desiredState: string
  state: string
  pid: number
  addresses: {network: string; ip: string}[]
}

const tasksOf = (svc: string) => json<Task[]>('n1', ['service', 'ps', svc]).filter((t) => t.desiredState === 'running')
const running = (svc: string, n: number) => allRunning(svc, n, tasksOf, 60_000)

describe('migrate-store: embedded to etcd', () => {
  withLab(['--nodes', '2'], {leftoversMessage: 'lab down must leave nothing behind (etcd data and certificates included)'})

  test('tasks keep running, state and allocations land in etcd, new work is allocated from it', async () => {
    ok('n1', ['network', 'create', 'app'])
    ok('n1', ['service', 'create', '--name', 'old', '--replicas', '2', '--network', 'app', '--', 'sleep', 'infinity'])
    const before = await running('old', 2)
    // An etcd for it, in the lab (lab down removes it with the rest).
    const lab = readLabState()!
    const etcd = planLabEtcd(lab.nodes, 1)
    writeLabState({...lab, etcd})
    await makeLabPki(etcd)
    await startLabEtcd(etcd)
    const flags = ['--etcd-ca', etcd.client.ca, '--etcd-cert', etcd.client.cert, '--etcd-key', etcd.client.key]
    // Bad input first: refused in one line, nothing moved.
    const bad = cli('n1', ['swarm', 'migrate-store', '--to', 'etcd', '--etcd-endpoints', 'https://172.30.0.11', ...flags])
    assert.notEqual(bad.code, 0)
    assert.match(bad.stderr.trim(), /must be http\(s\):\/\/HOST:PORT$/)
    const w = cli('n2', ['swarm', 'migrate-store', '--to', 'etcd', '--etcd-endpoints', etcd.endpoints[0]!, ...flags])
    assert.notEqual(w.code, 0)
    assert.match(w.stderr, /run migrate-store on the manager/)

    const out = ok('n1', ['swarm', 'migrate-store', '--to', 'etcd', '--etcd-endpoints', etcd.endpoints[0]!, ...flags])
    assert.match(out, /^Moved \d+ records to etcd/)
    const info = json<{desiredState?: {store: string}; leader?: string; nodeId: string}>('n1', ['info'])
    assert.equal(info.desiredState?.store, 'etcd')
    // The same tasks, the same processes, still running.
    const afterMove = await running('old', 2)
    assert.deepEqual(
      afterMove.map((t) => [t.id, t.pid, t.addresses[0]!.ip]).sort(),
      before.map((t) => [t.id, t.pid, t.addresses[0]!.ip]).sort(),
    )
    assert.ok(before.every((t) => isAlive(t.pid)))
    // In etcd: the records and the addresses they hold.
    const keys = await etcdctl(etcd, ['get', '--prefix', '/swarmnet/', '--keys-only'])
    for (const t of before) {
      assert.match(keys, new RegExp(`/state/task/${t.id}`))
      assert.match(keys, new RegExp(`/alloc/addr/[0-9a-f]+/${t.addresses[0]!.ip.replace(/\./g, '\\.')}\\b`))
    }
    await eventually('n1 leads', () => json<{leader?: string}>('n1', ['info']).leader === info.nodeId || undefined, 20_000)
    // New work through etcd: no address the migrated tasks hold.
    ok('n1', ['service', 'create', '--name', 'new', '--replicas', '2', '--network', 'app', '--', 'sleep', 'infinity'])
    const fresh = await running('new', 2)
    const taken = new Set(before.map((t) => t.addresses[0]!.ip))
    assert.ok(fresh.every((t) => !taken.has(t.addresses[0]!.ip)))
    assert.match(await etcdctl(etcd, ['get', '--prefix', '/swarmnet/', '--keys-only']), /\/alloc\/name\/service\/new/)
    // Once is enough; a manager token exists now.
    const again = cli('n1', ['swarm', 'migrate-store', '--to', 'etcd', '--etcd-endpoints', etcd.endpoints[0]!, ...flags])
    assert.notEqual(again.code, 0)
    assert.match(again.stderr, /already keeps its state in etcd/)
    assert.match(ok('n1', ['swarm', 'join-token', 'manager']), /--manager --etcd-endpoints/)
  })
})
