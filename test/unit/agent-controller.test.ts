// The write side of the API against a real store on disk: checks, allocation, placement.
import assert from 'node:assert/strict'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {after, beforeEach, test} from 'node:test'
import {Controller} from '../../src/agent/controller.js'
import type {ClusterSpec, NodeRecord} from '../../src/model/types.js'
import {CLUSTER_KEY, keyOf} from '../../src/store/keys.js'
import {Store} from '../../src/store/store.js'

const dirs: string[] = []
after(() => dirs.forEach((d) => rmSync(d, {recursive: true, force: true})))

let c: Controller
let store: Store
beforeEach(() => {
  const dir = mkdtempSync(join(tmpdir(), 'sn-controller-'))
  dirs.push(dir)
  store = new Store(dir, 'a').open()
  store.put(CLUSTER_KEY, {
    id: 'c',
    createdAt: 0,
    dataPathPort: 4789,
    defaultAddrPool: '10.0.0.0/8',
    subnetSize: 24,
  } satisfies ClusterSpec)
  for (const [id, addr] of [
    ['a', '172.30.0.11'],
    ['b', '172.30.0.12'],
    ['c', '172.30.0.13'],
  ] as const) {
    store.put(keyOf('node', id), {
      id,
      name: id,
      addr,
      gossipPort: 7946,
      role: 'worker',
      state: 'ready',
      mtu: 1500,
      joinedAt: 0,
    } satisfies NodeRecord)
  }
  c = new Controller(store, 'a')
  c.createNetwork({name: 'ingress', ingress: true})
})

test('networks: VNIs and subnets in order; refusals are user errors', () => {
  const a = c.createNetwork({name: 'a'})
  const b = c.createNetwork({name: 'b', subnet: '10.20.0.0/24'})
  assert.deepEqual([a.vni, a.subnet, b.vni], [4097, '10.0.1.0/24', 4098])
  assert.throws(() => c.createNetwork({name: 'a'}), /already exists/)
  assert.throws(() => c.createNetwork({name: 'x', subnet: '10.20.0.0/16'}), /overlap/)
  assert.throws(() => c.createNetwork({name: 'y', driver: 'macvlan'}), /unsupported driver/)
})

test('a service gets one task per slot, spread over the nodes, with distinct addresses', () => {
  c.createNetwork({name: 'net'})
  const svc = c.createService({name: 'web', mode: 'replicated', replicas: 3, networks: ['net'], command: []})
  const tasks = c.tasks().filter((t) => t.serviceId === svc.id)
  assert.deepEqual(tasks.map((t) => t.slot).sort(), [1, 2, 3])
  assert.deepEqual(tasks.map((t) => t.nodeId).sort(), ['a', 'b', 'c'])
  assert.deepEqual(tasks.map((t) => t.attachments[0]!.ip).sort(), ['10.0.1.2', '10.0.1.3', '10.0.1.4'])
  assert.ok(
    tasks.every(
      (t) =>
        t.attachments[0]!.mac ===
        '02:42:' +
          t.attachments[0]!.ip.split('.')
            .map((x) => Number(x).toString(16).padStart(2, '0'))
            .join(':'),
    ),
  )
  assert.equal(c.findTask('web.2').slot, 2)
})

test('scale keeps the tasks it can and frees the addresses of the rest', () => {
  c.createNetwork({name: 'net'})
  c.createService({name: 'web', mode: 'replicated', replicas: 3, networks: ['net'], command: []})
  const before = c.tasks()
  c.scaleService('web', 1)
  const after = c.tasks()
  assert.equal(after.length, 1)
  assert.ok(
    before.some((t) => t.id === after[0]!.id),
    'an existing task was kept',
  )
  c.scaleService('web', 2)
  assert.equal(new Set(c.tasks().map((t) => t.attachments[0]!.ip)).size, 2)
})

test('global services follow the nodes; tasks of a node that left move', () => {
  c.createNetwork({name: 'net'})
  c.createService({name: 'g', mode: 'global', replicas: 1, networks: ['net'], command: []})
  assert.deepEqual(
    c
      .tasks()
      .map((t) => t.nodeId)
      .sort(),
    ['a', 'b', 'c'],
  )
  c.createService({name: 'r', mode: 'replicated', replicas: 3, networks: ['net'], command: []})
  store.put(keyOf('node', 'c'), {...store.get<NodeRecord>(keyOf('node', 'c'))!, state: 'left'})
  for (const s of c.services()) c.placeService(s)
  const byService = (name: string) => c.tasks().filter((t) => t.serviceName === name)
  assert.deepEqual(
    byService('g')
      .map((t) => t.nodeId)
      .sort(),
    ['a', 'b'],
  )
  assert.equal(byService('r').length, 3)
  assert.ok(byService('r').every((t) => t.nodeId !== 'c'))
})

test('in-use networks cannot be removed; the gateway bridge never', () => {
  c.createNetwork({name: 'net'})
  c.createService({name: 'web', mode: 'replicated', replicas: 1, networks: ['net'], command: []})
  assert.throws(() => c.removeNetwork('net'), /in use by service web/)
  assert.throws(
    () => c.createService({name: 'x', mode: 'replicated', replicas: 1, networks: ['ingress'], command: []}),
    /ingress/,
  )
  c.ensureGwbridge('172.18.0.0/16', '172.18.0.1')
  assert.throws(() => c.removeNetwork('swarmnet_gwbridge'), /node-local/)
  c.removeService('web')
  c.removeNetwork('net')
  assert.equal(
    c.networks().some((n) => n.name === 'net'),
    false,
  )
})
