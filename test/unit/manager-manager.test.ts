// The writer of desired state against a real store on disk: checks, allocation,
// placement, capacity refused before anything is written, failures isolated.
import assert from 'node:assert/strict'
import {beforeEach, test} from 'node:test'
import {taskView} from '../../src/agent/render.js'
import type {Manager, ServiceRequest} from '../../src/manager/manager.js'
import {MAX_REPLICAS} from '../../src/model/defaults.js'
import {valueProblem} from '../../src/model/shape.js'
import type {Service} from '../../src/model/types.js'
import {keyOf} from '../../src/store/keys.js'
import type {Store} from '../../src/store/store.js'
import {managerFixture, putNode, storeFiles} from './manager-fixture.js'

let m: Manager
let store: Store
let dir: string
// One node id is all digits: its 12-character prefix looks like a slot number.
const NODES = [
  ['a', '172.30.0.11'],
  ['b', '172.30.0.12'],
  ['123456789012345', '172.30.0.13'],
] as const

beforeEach(() => {
  ;({dir, store, m} = managerFixture('sn-manager-', NODES))
  m.createNetwork({name: 'ingress', ingress: true})
})

// The snapshot and the log: a refused change must add nothing to either.
const stateFile = () => storeFiles(dir)
const tasksOf = (name: string) => m.read.tasks().filter((t) => t.serviceName === name)

test('networks: VNIs and subnets in order; refusals are user errors', () => {
  const a = m.createNetwork({name: 'a'})
  const b = m.createNetwork({name: 'b', subnet: '10.20.0.0/24'})
  assert.deepEqual([a.vni, a.subnet, b.vni], [4097, '10.0.1.0/24', 4098])
  assert.throws(() => m.createNetwork({name: 'a'}), /already exists/)
  assert.throws(() => m.createNetwork({name: 'x', subnet: '10.20.0.0/16'}), /overlap/)
  assert.throws(() => m.createNetwork({name: 'y', driver: 'macvlan'}), /unsupported driver/)
})

test('a service gets one task per slot, spread over the nodes, with distinct addresses', () => {
  m.createNetwork({name: 'net'})
  const svc = m.createService({name: 'web', mode: 'replicated', replicas: 3, networks: ['net'], command: []})
  const tasks = m.read.tasks().filter((t) => t.serviceId === svc.id)
  assert.deepEqual(tasks.map((t) => t.slot).sort(), [1, 2, 3])
  assert.deepEqual(tasks.map((t) => t.nodeId).sort(), ['123456789012345', 'a', 'b'])
  // The VIP first, from the same pool: the tasks' addresses follow it.
  assert.deepEqual(svc.vips, [{networkId: m.read.findNetwork('net').id, ip: '10.0.1.2'}])
  assert.deepEqual(tasks.map((t) => t.attachments[0]!.ip).sort(), ['10.0.1.3', '10.0.1.4', '10.0.1.5'])
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
  assert.equal(m.read.findTask('web.2').slot, 2)
})

test('scale keeps the tasks it can and frees the addresses of the rest', () => {
  m.createNetwork({name: 'net'})
  m.createService({name: 'web', mode: 'replicated', replicas: 3, networks: ['net'], command: []})
  const before = m.read.tasks()
  m.scaleService('web', 1)
  const after = m.read.tasks()
  assert.equal(after.length, 1)
  assert.ok(
    before.some((t) => t.id === after[0]!.id),
    'an existing task was kept',
  )
  m.scaleService('web', 2)
  assert.equal(new Set(m.read.tasks().map((t) => t.attachments[0]!.ip)).size, 2)
})

test('a scale that does not fit in the subnet is refused and changes nothing, on disk or in memory', async () => {
  m.createNetwork({name: 'p', subnet: '10.9.0.0/28'}) // 16 - network, broadcast, gateway = 13
  m.createService({name: 'web', mode: 'replicated', replicas: 3, networks: ['p'], command: []}) // and a VIP
  await store.sync()
  const file = stateFile()
  const clock = store.clock
  assert.throws(
    () => m.scaleService('web', 50),
    /service web needs 47 new task addresses, but network p \(10\.9\.0\.0\/28\) has 9 free addresses: nothing was changed/,
  )
  assert.throws(() => m.scaleService('web', 100000), /at most 1000/)
  assert.equal(stateFile(), file, 'the state files are byte for byte what they were')
  assert.equal(store.clock, clock)
  assert.equal(tasksOf('web').length, 3)
  assert.deepEqual((m.read.findService('web').mode as {replicas: number}).replicas, 3)
  // What fits exactly still goes through.
  m.scaleService('web', 12)
  assert.equal(tasksOf('web').length, 12)
  assert.throws(() => m.scaleService('web', 13), /has 0 free addresses/)
})

test('a create that does not fit is refused and writes nothing; so is a global one', async () => {
  m.createNetwork({name: 'small', subnet: '10.9.1.0/29'}) // 5 task addresses
  m.createNetwork({name: 'tiny', subnet: '10.9.2.0/30'}) // 1 task address
  await store.sync()
  const file = stateFile()
  assert.throws(
    () => m.createService({name: 'big', mode: 'replicated', replicas: 10, networks: ['small'], command: []}),
    /needs 10 new task addresses and a VIP, but network small \(10\.9\.1\.0\/29\) has 5 free addresses: nothing was changed/,
  )
  assert.throws(
    () => m.createService({name: 'g', mode: 'global', replicas: 1, networks: ['small', 'tiny'], command: []}),
    /needs 3 .* network tiny \(10\.9\.2\.0\/30\) has 1 free address: nothing/,
  )
  assert.equal(stateFile(), file)
  assert.deepEqual(m.read.services(), [])
  assert.deepEqual(m.read.tasks(), [])
})

test('replica counts: whole numbers from 0 to the bound, nothing else', async () => {
  m.createNetwork({name: 'net'})
  await store.sync()
  const file = stateFile()
  for (const bad of [-1, 1.5, NaN, Infinity, MAX_REPLICAS + 1, '3' as unknown as number]) {
    assert.throws(
      () => m.createService({name: 'x', mode: 'replicated', replicas: bad, networks: [], command: []}),
      /invalid replica count/,
      String(bad),
    )
  }
  assert.throws(() => m.createService({name: 'x', mode: 'bogus' as 'global', replicas: 1, networks: [], command: []}), /mode/)
  assert.equal(stateFile(), file)
  m.createService({name: 'x', mode: 'replicated', replicas: 0, networks: ['net'], command: []})
  assert.throws(() => m.scaleService('x', -3), /invalid replica count/)
  assert.throws(() => m.scaleService('x', 2.5), /invalid replica count/)
})

test('one service that cannot be placed does not stop the others', () => {
  m.createNetwork({name: 'p', subnet: '10.9.0.0/28'})
  const p = m.read.findNetwork('p')
  // As an older manager could have left it: a spec far beyond the subnet, no tasks yet.
  const bad: Service = {id: 'bad1', name: 'bad', mode: {replicas: 50}, networks: [p.id], command: [], createdAt: 1, updatedAt: 1}
  const good: Service = {
    id: 'good1',
    name: 'good',
    mode: {replicas: 2},
    networks: [p.id],
    command: [],
    createdAt: 1,
    updatedAt: 1,
  }
  store.put(keyOf('service', bad.id), bad)
  store.put(keyOf('service', good.id), good)
  const report = m.placeAll()
  assert.equal(tasksOf('good').length, 2, 'the healthy service is placed')
  // Both were stored without VIPs, as before VIPs existed: each gets one, then tasks.
  assert.deepEqual(
    m.read.services().map((s) => s.vips?.length),
    [1, 1],
  )
  assert.equal(tasksOf('bad').length, 9, 'the rest of the subnet goes to the other one')
  assert.match(report.get('bad') ?? '', /service bad needs 50 new task addresses and a VIP, but network p .* has 10 free/)
  assert.equal(report.has('good'), false)
  // The next pass writes nothing and still does not throw.
  const clock = store.clock
  const again = m.placeAll()
  assert.equal(store.clock, clock)
  assert.match(again.get('bad') ?? '', /needs 41 new task addresses, but .* has 0 free/)
  // Later creates on other networks still place tasks on every node, the manager's included.
  m.createNetwork({name: 'other'})
  m.createService({name: 'later', mode: 'global', replicas: 1, networks: ['other'], command: []})
  assert.deepEqual(
    tasksOf('later')
      .map((t) => t.nodeId)
      .sort(),
    ['123456789012345', 'a', 'b'],
  )
})

test('global services follow the nodes; tasks of a node that left move; tasks without a service go', () => {
  m.createNetwork({name: 'net'})
  m.createService({name: 'g', mode: 'global', replicas: 1, networks: ['net'], command: []})
  assert.deepEqual(
    tasksOf('g')
      .map((t) => t.nodeId)
      .sort(),
    ['123456789012345', 'a', 'b'],
  )
  m.createService({name: 'r', mode: 'replicated', replicas: 3, networks: ['net'], command: []})
  const gone = '123456789012345'
  putNode(store, gone, '172.30.0.13', 'left')
  putNode(store, 'd', '172.30.0.14')
  const orphan = {...tasksOf('r')[0]!, id: '0a0a0a0a0a0a0a0a0a0a0a0a', serviceId: 'nosuchservice'}
  store.put(keyOf('task', orphan.id), orphan)
  m.placeAll()
  assert.deepEqual(
    tasksOf('g')
      .map((t) => t.nodeId)
      .sort(),
    ['a', 'b', 'd'],
  )
  assert.equal(tasksOf('r').length, 3)
  assert.ok(tasksOf('r').every((t) => t.nodeId !== gone))
  assert.equal(store.get(keyOf('task', orphan.id)), undefined)
})

test('every name service ps prints finds its task, global ones included', () => {
  m.createNetwork({name: 'net'})
  m.createService({name: 'g', mode: 'global', replicas: 1, networks: ['net'], command: []})
  m.createService({name: 'r', mode: 'replicated', replicas: 2, networks: ['net'], command: []})
  const all = m.read.tasks()
  assert.equal(all.length, 5)
  for (const t of all) {
    const shown = taskView(t, m.read)
    assert.equal(m.read.findTask(shown.name).id, t.id, shown.name)
    assert.equal(m.read.findTask(shown.id.slice(0, 12)).id, t.id)
  }
  assert.equal(m.read.findTask('g.123456789012').nodeId, '123456789012345')
  assert.throws(() => m.read.findTask('g.nosuchnode'), /task g.nosuchnode not found/)
})

test('in-use networks cannot be removed; the gateway bridge never', () => {
  m.createNetwork({name: 'net'})
  m.createService({name: 'web', mode: 'replicated', replicas: 1, networks: ['net'], command: []})
  assert.throws(() => m.removeNetwork('net'), /in use by service web/)
  assert.throws(
    () => m.createService({name: 'x', mode: 'replicated', replicas: 1, networks: ['ingress'], command: []}),
    /ingress/,
  )
  m.ensureGwbridge('172.18.0.0/16', '172.18.0.1')
  assert.throws(() => m.removeNetwork('swarmnet_gwbridge'), /node-local/)
  m.removeService('web')
  m.removeNetwork('net')
  assert.equal(
    m.read.networks().some((n) => n.name === 'net'),
    false,
  )
})

test("everything the manager writes has its kind's shape", () => {
  m.createNetwork({name: 'net'})
  m.ensureGwbridge('172.18.0.0/16', '172.18.0.1')
  m.createService({name: 'g', mode: 'global', replicas: 1, networks: ['net'], command: ['sleep', 'infinity']})
  m.createService({name: 'r', mode: 'replicated', replicas: 2, networks: ['net'], command: []})
  for (const e of store.list()) assert.equal(valueProblem(e.key, e.value), undefined, e.key)
  assert.equal(store.refused, 0)
})

test('network connect: attachable networks only, checked in full, and its address is never given to a task', async () => {
  const closed = m.createNetwork({name: 'closed'})
  m.createNetwork({name: 'att', subnet: '10.30.0.0/29', attachable: true})
  await store.sync()
  const before = stateFile()
  // A namespace of another node: its path is that node's to check.
  const on = (req: Partial<Parameters<Manager['connect']>[0]>) =>
    m.connect({network: 'att', netns: '/run/netns/blue', node: 'n-b', ...req})
  assert.throws(() => on({network: closed.name}), /not attachable/)
  assert.throws(() => on({network: 'ingress'}), /not attachable/)
  assert.throws(() => on({pid: 7}), /one of them/)
  assert.throws(() => on({netns: undefined}), /one of them/)
  assert.throws(() => on({netns: 'blue'}), /absolute path/)
  assert.throws(() => on({netns: '/run/netns/../x'}), /absolute path/)
  assert.throws(() => on({node: 'nope'}), /node nope not found/)
  assert.throws(() => on({ip: '10.30.0.0'}), /not a host address/)
  assert.throws(() => on({ip: '10.30.0.7'}), /not a host address/)
  assert.throws(() => on({ip: '10.30.0.1'}), /gateway/)
  assert.throws(() => on({ip: '10.31.0.2'}), /not a host address/)
  assert.throws(() => on({name: 'a b'}), /invalid attachment name/)
  // On this node the namespace must be there and not the node's own.
  assert.throws(() => m.connect({network: 'att', netns: '/run/netns/sn-no-such-ns'}), /no such namespace/)
  assert.throws(() => m.connect({network: 'att', netns: '/proc/self/ns/net'}), /own network namespace/)
  assert.throws(() => m.connect({network: 'att', netns: '/etc/hostname'}), /not a namespace file/)
  assert.equal(stateFile(), before, 'refused means nothing written')

  const a = on({ip: '10.30.0.2'})
  assert.deepEqual([a.name, a.nodeId, a.ip, a.mac], ['blue', 'b', '10.30.0.2', '02:42:0a:1e:00:02'])
  assert.throws(() => on({ip: '10.30.0.3'}), /already has an attachment named blue/)
  assert.throws(() => on({name: 'other', ip: '10.30.0.3'}), /already attached/)
  assert.throws(() => on({netns: '/proc/9/ns/net', ip: '10.30.0.2'}), /in use/)
  assert.equal(on({pid: 9, netns: undefined}).name, 'pid-9')
  // 5 host addresses, 2 taken by attachments: a service of 3 fits, of 4 does not (dnsrr: no VIP to count).
  const req = (name: string, replicas: number): ServiceRequest => ({
    name,
    mode: 'replicated',
    replicas,
    networks: ['att'],
    command: [],
    endpointMode: 'dnsrr',
  })
  assert.throws(() => m.createService(req('big', 4)), /3 free/)
  m.createService(req('fits', 3))
  const ips = tasksOf('fits').map((t) => t.attachments[0]!.ip)
  assert.ok(!ips.includes('10.30.0.2') && !ips.includes('10.30.0.3'), ips.join(' '))
  assert.throws(() => m.removeNetwork('att'), /in use/)

  // Gone namespace, as its node says: removed with its status; so is one whose node left.
  store.put(keyOf('attachmentstatus', a.id), {id: a.id, nodeId: 'b', state: 'gone', updatedAt: 1})
  assert.deepEqual(m.reapAttachments(), ['attachment blue removed: its namespace is gone'])
  assert.equal(store.get(keyOf('attachment', a.id)), undefined)
  assert.equal(store.get(keyOf('attachmentstatus', a.id)), undefined)
  putNode(store, 'b', '172.30.0.12', 'left')
  assert.deepEqual(m.reapAttachments(), ['attachment pid-9 removed: its node left'])
  assert.deepEqual(m.attachments(), [])
  assert.throws(() => m.disconnect('att', 'blue'), /has no attachment blue/)
})
