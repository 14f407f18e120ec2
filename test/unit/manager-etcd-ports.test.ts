// Published ports racing on a real etcd (one member started by the test): two managers, each
// deciding over its own copy, their transactions released at the same instant by a barrier.
// Every published port is allocated by key (port/<proto>/<n>; host mode: shared, rewritten by
// every transaction that may give the port to a task), so one of two clashing requests is
// decided again over the other's result and refused.
import assert from 'node:assert/strict'
import {test} from 'node:test'
import {EtcdBackend} from '../../src/manager/etcd-backend.js'
import {etcdClient} from '../../src/manager/etcd-client.js'
import {valueProblem} from '../../src/model/shape.js'
import type {Service, Task} from '../../src/model/types.js'
import {keyOf} from '../../src/store/keys.js'
import {Store} from '../../src/store/store.js'
import {etcdSuite} from './etcd-fixture.js'
import {clusterSpec, etcdClusterNodes} from './model-records.js'

const etcd = etcdSuite()
let n = 0

/** Releases the first two arrivals together, in one turn, while armed; everything else passes. */
class Gate {
  private waiting: (() => void)[] = []
  armed = false
  pass = (): Promise<void> => {
    if (!this.armed) return Promise.resolve()
    return new Promise<void>((release) => {
      this.waiting.push(release)
      if (this.waiting.length < 2) return
      this.armed = false
      for (const r of this.waiting) r()
      this.waiting = []
    })
  }
}

/** Two managers of a cluster of their own (five nodes, an ingress network), the gate before each transaction. */
async function cluster(gate: Gate): Promise<EtcdBackend[]> {
  const prefix = `/swarmnet/ports-${++n}/`
  const managers = ['m1', 'm2'].map((id) => {
    const local = etcd.keep(new Store(etcd.dir('sn-etcd-ports-'), id, {validate: valueProblem, reapIntervalMs: 0}).open())
    for (const node of etcdClusterNodes()) local.put(keyOf('node', node.id), node)
    const client = etcd.keep(etcdClient({endpoints: [etcd.endpoint], prefix}))
    return etcd.keep(new EtcdBackend({client, prefix, local, selfId: id, endpoints: [etcd.endpoint], beforeCommit: gate.pass}))
  })
  await managers[0]!.importRecords([{key: 'cluster', value: clusterSpec()}])
  await managers[0]!.write((m) => m.createNetwork({name: 'ingress', ingress: true}))
  return managers
}

const publishing = (records: Map<string, unknown>, port: number) =>
  [...records]
    .filter(([k]) => k.startsWith('service/'))
    .map(([, v]) => v as Service)
    .filter((s) => (s.ports ?? []).some((p) => p.published === port))

test('an ingress create and a host-mode create of the same port from two managers at once: exactly one wins (10 times)', async () => {
  for (let rep = 0; rep < 10; rep++) {
    const gate = new Gate()
    const [m1, m2] = await cluster(gate)
    gate.armed = true
    const results = await Promise.allSettled([
      m1!.write((m) =>
        m.createService({
          name: 'web',
          mode: 'replicated',
          replicas: 1,
          networks: [],
          command: ['sleep', '1'],
          ports: [{published: 8080, target: 80, protocol: 'tcp', mode: 'ingress'}],
        }),
      ),
      m2!.write((m) =>
        m.createService({
          name: 'direct',
          mode: 'replicated',
          replicas: 1,
          networks: [],
          command: ['sleep', '1'],
          ports: [{published: 8080, target: 80, protocol: 'tcp', mode: 'host'}],
        }),
      ),
    ])
    const won = results.filter((r) => r.status === 'fulfilled')
    assert.equal(won.length, 1, `rep ${rep}: exactly one create holds (${results.map((r) => r.status).join(', ')})`)
    const err = (results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason as Error
    assert.match(err.message, /^port 8080\/tcp is already published by service (web|direct)/)
    const held = publishing(await m1!.records(), 8080)
    assert.equal(held.length, 1, `rep ${rep}: one service publishes 8080: ${held.map((s) => s.name).join(', ')}`)
    const allocs = await m2!.allocations()
    assert.equal(allocs.get('port/tcp/8080'), held[0]!.ports![0]!.mode === 'host' ? 'host' : `service/${held[0]!.id}`)
  }
})

test('two host-mode creates of one port on every node from two managers at once: no node gets two', async () => {
  const gate = new Gate()
  const [m1, m2] = await cluster(gate)
  gate.armed = true
  // Five nodes, five replicas each: only one of the two services fits.
  const create = (b: EtcdBackend, name: string) =>
    b.write((m) =>
      m.createService({
        name,
        mode: 'replicated',
        replicas: 5,
        networks: [],
        command: ['sleep', '1'],
        ports: [{published: 9090, target: 90, protocol: 'udp', mode: 'host'}],
      }),
    )
  const results = await Promise.allSettled([create(m1!, 'a'), create(m2!, 'b')])
  assert.deepEqual(results.map((r) => r.status).sort(), ['fulfilled', 'rejected'])
  const err = (results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason as Error
  assert.match(err.message, /host-mode port 9090\/udp takes one task per node: only 0 of 5 tasks can be placed/)
  const records = await m1!.records()
  const perNode = new Map<string, number>()
  for (const [k, v] of records)
    if (k.startsWith('task/')) perNode.set((v as Task).nodeId, (perNode.get((v as Task).nodeId) ?? 0) + 1)
  assert.deepEqual([...perNode.values()], [1, 1, 1, 1, 1])
})

test('a port moved from host to ingress mode: the ingress owner takes its key over; a host-mode create of it is then refused', async () => {
  const [m1, m2] = await cluster(new Gate())
  const svc = await m1!.write((m) =>
    m.createService({
      name: 'mover',
      mode: 'replicated',
      replicas: 2,
      networks: [],
      command: ['sleep', '1'],
      ports: [{published: 8081, target: 80, protocol: 'tcp', mode: 'host'}],
    }),
  )
  assert.equal((await m1!.allocations()).get('port/tcp/8081'), 'host')
  await m2!.write((m) =>
    m.updatePorts('mover', {
      rm: [{published: 8081, protocol: 'tcp'}],
      add: [{published: 8081, target: 80, protocol: 'tcp', mode: 'ingress'}],
    }),
  )
  assert.equal((await m1!.allocations()).get('port/tcp/8081'), `service/${svc.id}`)
  await assert.rejects(
    m1!.write((m) =>
      m.createService({
        name: 'late',
        mode: 'replicated',
        replicas: 1,
        networks: [],
        command: ['sleep', '1'],
        ports: [{published: 8081, target: 80, protocol: 'tcp', mode: 'host'}],
      }),
    ),
    {message: /^port 8081\/tcp is already published by service mover/},
  )
})
