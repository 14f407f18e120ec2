// Desired state in a real etcd (one member started by the test): three managers,
// each with its own client and its own gossip store, racing on the same cluster.
// Allocation is by transaction, so racing requests never get the same thing.
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {join} from 'node:path'
import {test} from 'node:test'
import {EtcdBackend} from '../../src/manager/etcd-backend.js'
import {etcdClient} from '../../src/manager/etcd-client.js'
import {Leadership} from '../../src/manager/etcd-leader.js'
import {freePort} from '../../src/store/etcd-process.js'
import {valueProblem} from '../../src/model/shape.js'
import type {Network, Service, Task} from '../../src/model/types.js'
import {keyOf} from '../../src/store/keys.js'
import {Store} from '../../src/store/store.js'
import {etcdSuite} from './etcd-fixture.js'
import {clusterSpec, etcdClusterNodes} from './model-records.js'

const etcd = etcdSuite()
let n = 0

/** A cluster of its own (its own prefix) and three managers on it; addressStart: theirs, if all alike. */
async function cluster(addressStart?: number): Promise<EtcdBackend[]> {
  const prefix = `/swarmnet/test-${++n}/`
  const managers = ['m1', 'm2', 'm3'].map((id) => {
    const local = etcd.keep(new Store(etcd.dir('sn-etcd-mgr-'), id, {validate: valueProblem, reapIntervalMs: 0}).open())
    for (const n of etcdClusterNodes()) local.put(keyOf('node', n.id), n)
    const client = etcd.keep(etcdClient({endpoints: [etcd.endpoint], prefix}))
    const b = etcd.keep(new EtcdBackend({client, prefix, local, selfId: id, endpoints: [etcd.endpoint], addressStart}))
    return b
  })
  const spec = clusterSpec()
  await managers[0]!.importRecords([{key: 'cluster', value: spec}])
  await managers[0]!.write((m) => m.createNetwork({name: 'ingress', ingress: true}))
  return managers
}

const addresses = (records: Map<string, unknown>) => {
  const out: string[] = []
  for (const [k, v] of records) {
    if (k.startsWith('task/')) for (const a of (v as Task).attachments) out.push(`${a.networkId}/${a.ip}`)
    if (k.startsWith('service/')) for (const a of (v as Service).vips ?? []) out.push(`${a.networkId}/${a.ip}`)
  }
  return out
}

for (const [how, start] of [
  ['all searching from the lowest address', 0],
  ['each searching its own part of the subnet', undefined],
] as const)
  test(`50 concurrent service creates from 3 managers ${how}: all placed, no address twice, every address claimed in etcd`, async () => {
    const ms = await cluster(start)
    const net = await ms[1]!.write((m) => m.createNetwork({name: 'net'}))
    const created = await Promise.all(
      Array.from({length: 50}, (_, i) =>
        ms[i % 3]!.write((m) =>
          m.createService({name: `s${i}`, mode: 'replicated', replicas: 2, networks: ['net'], command: ['sleep', '1']}),
        ),
      ),
    )
    assert.equal(new Set(created.map((s) => s.id)).size, 50)
    const records = await ms[0]!.records()
    const addrs = addresses(records)
    // One VIP and two tasks each.
    assert.equal(addrs.length, 150)
    assert.equal(new Set(addrs).size, 150, 'an address was given twice')
    const allocs = await ms[0]!.allocations()
    const held = [...allocs.keys()].filter((k) => k.startsWith(`addr/${net.id}/`)).map((k) => k.slice('addr/'.length))
    assert.deepEqual(held.sort(), addrs.sort())
    // From the lowest address the managers did race (and lost, and decided again): the transactions
    // are what kept them apart. Each from its own part, they rarely collide: no count is asserted.
    const retries = ms.reduce((s, m) => s + m.retries, 0)
    if (start === 0) assert.ok(retries > 0, 'no request ever lost a race: the test did not test concurrency')
    // Each manager's gossip store ends up with etcd's state once mirrored.
    for (const m of ms) {
      await m.mirror()
      assert.equal(m.local.values<Service>('service/').length, 50)
      assert.equal(m.local.values<Task>('task/').length, 100)
    }
  })

test('concurrent network creates on 3 managers: distinct VNIs and subnets; one name is taken once', async () => {
  const ms = await cluster()
  const nets = await Promise.all(Array.from({length: 20}, (_, i) => ms[i % 3]!.write((m) => m.createNetwork({name: `n${i}`}))))
  assert.equal(new Set(nets.map((x) => x.vni)).size, 20)
  assert.equal(new Set(nets.map((x) => x.subnet)).size, 20)
  const stored = [...(await ms[2]!.records()).entries()].filter(([k]) => k.startsWith('network/')).map(([, v]) => v as Network)
  assert.equal(stored.length, 21)
  const same = await Promise.allSettled(
    Array.from({length: 9}, (_, i) => ms[i % 3]!.write((m) => m.createNetwork({name: 'dup'}))),
  )
  assert.equal(same.filter((r) => r.status === 'fulfilled').length, 1)
  for (const r of same)
    if (r.status === 'rejected')
      assert.match((r.reason as Error).message, /network with name 'dup' already exists|already exists/)
  const svc = await Promise.allSettled(
    Array.from({length: 9}, (_, i) =>
      ms[i % 3]!.write((m) => m.createService({name: 'web', mode: 'replicated', replicas: 1, networks: ['dup'], command: []})),
    ),
  )
  assert.equal(svc.filter((r) => r.status === 'fulfilled').length, 1)
})

test('a refused request writes nothing to etcd; scale and rm free their addresses', async () => {
  const ms = await cluster()
  await ms[0]!.write((m) => m.createNetwork({name: 'small', subnet: '10.99.0.0/29'}))
  // 6 host addresses minus the gateway: 5, so a VIP and 5 tasks do not fit.
  const before = await ms[0]!.allocations()
  await assert.rejects(
    ms[1]!.write((m) => m.createService({name: 'big', mode: 'replicated', replicas: 5, networks: ['small'], command: []})),
    /nothing was changed/,
  )
  assert.deepEqual(await ms[0]!.allocations(), before)
  await ms[1]!.write((m) => m.createService({name: 'ok', mode: 'replicated', replicas: 4, networks: ['small'], command: []}))
  await ms[2]!.write((m) => m.scaleService('ok', 1))
  let addr = [...(await ms[0]!.allocations()).keys()].filter((k) => k.startsWith('addr/'))
  assert.equal(addr.length, 2)
  await ms[0]!.write((m) => m.removeService('ok'))
  addr = [...(await ms[0]!.allocations()).keys()].filter((k) => k.startsWith('addr/'))
  assert.deepEqual(addr, [])
  assert.equal(addresses(await ms[0]!.records()).length, 0)
})

test('etcd unreachable: the request fails fast with one line naming the endpoints, and changes nothing', async () => {
  const local = etcd.keep(new Store(etcd.dir('sn-etcd-mgr-'), 'm1', {validate: valueProblem, reapIntervalMs: 0}).open())
  const dead = [`http://127.0.0.1:${await freePort()}`, `http://127.0.0.1:${await freePort()}`]
  const client = etcd.keep(etcdClient({endpoints: dead, prefix: '/x/'}))
  const b = etcd.keep(new EtcdBackend({client, prefix: '/x/', local, selfId: 'm1', endpoints: dead}))
  const t0 = Date.now()
  const err = await b
    .write((m) => m.createNetwork({name: 'a'}))
    .then(
      () => assert.fail('a write with etcd down succeeded'),
      (e: Error) => e,
    )
  assert.ok(Date.now() - t0 < 10_000, `took ${Date.now() - t0} ms`)
  assert.match(err.message, new RegExp(`^etcd at ${dead.join(',')} cannot read the cluster state: `))
  assert.ok(!err.message.includes('\n'))
  assert.equal(local.list('').length, 0)
})

test('one leader; when its process is killed (SIGKILL) another manager takes the role, and the old claim cannot place', async () => {
  const prefix = `/swarmnet/lead-${++n}/`
  // The first manager, in a process of its own, leads (the others start after it).
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(import.meta.dirname, 'etcd-leader-child.ts'), etcd.endpoint, prefix, 'm1'],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  )
  const ls: Leadership[] = []
  try {
    const oldRev = await new Promise<string>((resolve, reject) => {
      let out = ''
      child.stdout!.on('data', (b: Buffer) => {
        out += b.toString()
        const m = /leader (\d+)/.exec(out)
        if (m) resolve(m[1]!)
      })
      child.once('exit', () => reject(new Error('the leader process exited')))
    })
    for (const id of ['m2', 'm3']) {
      const client = etcd.keep(etcdClient({endpoints: [etcd.endpoint], prefix}))
      const l = new Leadership(client.namespace(prefix), id, {ttlSec: 2, pollMs: 100})
      ls.push(l)
      l.start()
    }
    for (let i = 0; i < 50 && ls.some((l) => l.leader !== 'm1'); i++) await new Promise((r) => setTimeout(r, 100))
    assert.deepEqual(
      ls.map((l) => [l.leader, l.isLeader]),
      [
        ['m1', false],
        ['m1', false],
      ],
    )
    child.kill('SIGKILL')
    const t0 = Date.now()
    while (!ls.some((l) => l.isLeader)) {
      assert.ok(Date.now() - t0 < 10_000, 'nobody took over within 10 s')
      await new Promise((r) => setTimeout(r, 50))
    }
    await new Promise((r) => setTimeout(r, 300))
    assert.equal(ls.filter((l) => l.isLeader).length, 1)
    const next = ls.find((l) => l.isLeader)!
    assert.ok(ls.every((l) => l.leader === next.selfId))
    assert.notEqual(next.revision(), oldRev)
    // A backend still holding the old claim: its placement is refused by etcd's compare.
    const local = etcd.keep(new Store(etcd.dir('sn-etcd-mgr-'), 'm1', {validate: valueProblem, reapIntervalMs: 0}).open())
    const spec = clusterSpec()
    const c2 = etcd.keep(etcdClient({endpoints: [etcd.endpoint], prefix}))
    const backend = (selfId: string, rev: () => string | undefined) => {
      const b = etcd.keep(new EtcdBackend({client: c2, prefix, local, selfId, endpoints: [etcd.endpoint], leaderRevision: rev}))
      return b
    }
    const stale = backend('m1', () => oldRev)
    await stale.importRecords([{key: 'cluster', value: spec}])
    await assert.rejects(
      stale.write((m) => m.createNetwork({name: 'x'}), {asLeader: true}),
      /no longer the leader/,
    )
    assert.equal([...(await stale.records()).keys()].filter((k) => k.startsWith('network/')).length, 0)
    await backend(next.selfId, () => next.revision()).write((m) => m.createNetwork({name: 'x'}), {asLeader: true})
  } finally {
    child.kill('SIGKILL')
    for (const l of ls) await l.stop()
  }
})

test('node update on etcd: the nodespec goes to the gossip store (as node records do), and placement there reads it', async () => {
  const ms = await cluster()
  await ms[0]!.write((m) => m.createNetwork({name: 'net'}))
  await ms[0]!.write((m) => m.updateNode('w1', {availability: 'drain', labelAdd: ['zone=a']}))
  assert.deepEqual(ms[0]!.local.get(keyOf('nodespec', 'w1')), {id: 'w1', availability: 'drain', labels: {zone: 'a'}})
  assert.equal((await ms[0]!.records()).has('nodespec/w1'), false, 'not in etcd: gossip carries it, as node records')
  const svc = await ms[0]!.write((m) =>
    m.createService({name: 'web', mode: 'replicated', replicas: 8, networks: ['net'], command: ['sleep', '1']}),
  )
  const nodes = [...(await ms[0]!.records()).values()].flatMap((v) =>
    (v as Task).serviceId === svc.id ? [(v as Task).nodeId] : [],
  )
  assert.equal(nodes.length, 8)
  assert.ok(!nodes.includes('w1'), `no task on the drained node: ${nodes.join(',')}`)
})
