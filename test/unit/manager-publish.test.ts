// Published ports in the manager: allocation from 30000-32767, the refusals (each one line, the
// store unchanged), the ingress network added to a service with an ingress port, the host-mode
// placement rule, and publish-add / publish-rm on a live service.
import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import {beforeEach, test} from 'node:test'
import {serviceView} from '../../src/agent/render.js'
import type {Manager, ServiceRequest} from '../../src/manager/manager.js'
import {parsePortRef, parsePublishes} from '../../src/model/ports.js'
import {freePort} from '../../src/model/publish.js'
import {valueProblem} from '../../src/model/shape.js'
import type {Store} from '../../src/store/store.js'
import {managerFixture, putNode} from './manager-fixture.js'

let m: Manager
let store: Store
let dir: string

const NODES = [
  ['a', '172.30.0.11'],
  ['b', '172.30.0.12'],
  ['c', '172.30.0.13'],
] as const

beforeEach(() => {
  ;({dir, store, m} = managerFixture('sn-publish-', NODES))
  // As init makes it.
  m.createNetwork({name: 'ingress', ingress: true})
  m.createNetwork({name: 'net'})
})

const stateFile = () => readFileSync(join(dir, 'state.json'), 'utf8')
const netId = (name: string) => m.read.findNetwork(name).id
const create = (name: string, ports: string[], more: Partial<ServiceRequest> = {}) =>
  m.createService({
    name,
    mode: 'replicated',
    replicas: 2,
    networks: ['net'],
    command: [],
    ports: ports.flatMap((p) => parsePublishes(p)),
    ...more,
  })
const update = (name: string, add: string[], rm: string[] = []) =>
  m.updatePorts(name, {add: add.flatMap((p) => parsePublishes(p)), rm: rm.map((p) => parsePortRef(p))})
const tasksOf = (name: string) => m.read.tasks().filter((t) => t.serviceName === name && t.desiredState === 'running')

/** Refused with one line matching `said`, and the store is byte for byte what it was. */
function refusedUnchanged(fn: () => unknown, said: RegExp): void {
  const before = stateFile()
  const clock = store.clock
  assert.throws(fn, (e: Error) => {
    assert.equal(e.name, 'UserError', e.stack)
    assert.equal(e.message.split('\n').length, 1)
    assert.match(e.message, said)
    return true
  })
  assert.equal(store.clock, clock, 'nothing written')
  assert.equal(stateFile(), before)
}

test('an ingress port: stored as given, the ingress network added last, a VIP and an address on it for every task', () => {
  const svc = create('web', ['8080:80'])
  assert.deepEqual(svc.ports, [{protocol: 'tcp', target: 80, published: 8080, mode: 'ingress'}])
  assert.deepEqual(svc.networks, [netId('net'), netId('ingress')])
  assert.deepEqual(
    svc.vips?.map((v) => v.networkId),
    [netId('net'), netId('ingress')],
  )
  assert.deepEqual(m.read.findService('web'), svc, 'stored as returned')
  for (const t of tasksOf('web'))
    assert.deepEqual(
      t.attachments.map((a) => a.networkId),
      [netId('net'), netId('ingress')],
    )
  assert.deepEqual(serviceView(svc, m.read).ports, [{published: 8080, target: 80, protocol: 'tcp', mode: 'ingress'}])
  assert.deepEqual(serviceView(svc, m.read).networks, ['net', 'ingress'])
  for (const e of store.list()) assert.equal(valueProblem(e.key, e.value), undefined, e.key)
})

test('no ports: no ingress network, no ports field', () => {
  const svc = create('plain', [])
  assert.deepEqual(svc.networks, [netId('net')])
  assert.equal('ports' in svc, false)
  assert.deepEqual(serviceView(svc, m.read).ports, [])
})

test('published omitted: the lowest free port of 30000-32767, per protocol, never one in use', () => {
  const a = create('a', ['80', '53/udp', 'target=81,mode=host'])
  assert.deepEqual(
    a.ports?.map((p) => `${p.published}/${p.protocol}/${p.mode}`),
    ['30000/tcp/ingress', '30000/udp/ingress', '30001/tcp/host'],
  )
  create('b', ['30002:80', '80'])
  assert.deepEqual(
    m.read.findService('b').ports?.map((p) => p.published),
    [30002, 30003],
    'a port given in the range is skipped by the allocator',
  )
  m.removeService('a')
  assert.deepEqual(
    create('c', ['80']).ports?.map((p) => p.published),
    [30000],
    'a removed service frees its ports',
  )
  assert.equal(freePort(new Set([30000, 30001]), 'tcp'), 30002)
  const all = new Set(Array.from({length: 32767 - 30000 + 1}, (_x, i) => 30000 + i))
  assert.throws(() => freePort(all, 'udp'), /^UserError: no free published port left in 30000-32767\/udp$/)
})

test('a port already published by another service is refused in one line; nothing is written', () => {
  create('web', ['8080:80', '53:53/udp'])
  refusedUnchanged(() => create('api', ['8080:81']), /^port 8080\/tcp is already published by service web$/)
  refusedUnchanged(() => create('api', ['9090:90', '53:53/udp']), /^port 53\/udp is already published by service web$/)
  refusedUnchanged(
    () => create('api', ['published=8080,target=80,mode=host']),
    /^port 8080\/tcp is already published by service web$/,
  )
  // Another protocol is another port.
  create('dns', ['8080:53/udp'])
  create('h1', ['published=7000,target=80,mode=host'], {replicas: 1})
  refusedUnchanged(
    () => create('i1', ['7000:80']),
    /^port 7000\/tcp is already published by service h1 \(mode=host: an ingress port answers on every node\)$/,
  )
  refusedUnchanged(() => create('x', ['8081:80', '8081:81']), /^port 8081\/tcp is given twice$/)
  assert.deepEqual(
    m.read
      .services()
      .map((s) => s.name)
      .sort(),
    ['dns', 'h1', 'web'],
  )
})

test("swarmnet's own ports are refused: the data-path port (udp) and the gossip port", () => {
  refusedUnchanged(
    () => create('x', ['4789:80/udp']),
    /^port 4789\/udp is the cluster's data-path port \(VXLAN\): choose another/,
  )
  refusedUnchanged(() => create('x', ['7946:80']), /^port 7946\/tcp is the gossip port of node n-a/)
  refusedUnchanged(() => create('x', ['published=7946,target=80,protocol=udp,mode=host']), /^port 7946\/udp is the gossip port/)
  // 4789/tcp is nothing of ours.
  create('ok', ['4789:80'])
})

test('dnsrr with an ingress port is refused; with a host-mode port it is fine and gets no ingress network', () => {
  refusedUnchanged(
    () => create('rr', ['8080:80'], {endpointMode: 'dnsrr'}),
    /^port 8080\/tcp: mode=ingress needs endpoint mode vip \(a dnsrr service has no VIP to balance over\); publish it with mode=host$/,
  )
  refusedUnchanged(() => create('rr', ['80'], {endpointMode: 'dnsrr'}), /^port 30000\/tcp: mode=ingress needs endpoint mode vip/)
  const rr = create('rr', ['published=8080,target=80,mode=host'], {endpointMode: 'dnsrr'})
  assert.deepEqual(rr.networks, [netId('net')])
  refusedUnchanged(() => update('rr', ['9090:90']), /mode=ingress needs endpoint mode vip/)
})

test('host mode: one task per node; more replicas than nodes that can take one is refused, naming why', () => {
  const h = create('h', ['published=8080,target=80,mode=host'], {replicas: 3})
  assert.deepEqual(h.networks, [netId('net')], 'no ingress network for host-mode ports')
  assert.deepEqual(
    tasksOf('h')
      .map((t) => t.nodeId)
      .sort(),
    ['a', 'b', 'c'],
  )
  refusedUnchanged(
    () => m.scaleService('h', 4),
    /^service h: host-mode port 8080\/tcp takes one task per node: only 3 of 4 tasks can be placed \(3 live nodes\): nothing was changed$/,
  )
  refusedUnchanged(
    () => create('h2', ['published=9090,target=80,mode=host'], {replicas: 5}),
    /^service h2: host-mode port 9090\/tcp takes one task per node: only 3 of 5 tasks can be placed/,
  )
  // Another service with the same host port may not share a node with h's tasks.
  refusedUnchanged(
    () => create('other', ['published=8080,target=81,mode=host'], {replicas: 1}),
    /only 0 of 1 task can be placed \(3 live nodes; on n-a service h holds 8080\/tcp; on n-b service h holds 8080\/tcp; on n-c service h holds 8080\/tcp\)/,
  )
  m.scaleService('h', 1)
  const other = create('other', ['published=8080,target=81,mode=host'], {replicas: 2})
  const hNode = tasksOf('h')[0]!.nodeId
  assert.ok(!tasksOf('other').some((t) => t.nodeId === hNode), 'never on the node of h')
  assert.equal(new Set(tasksOf('other').map((t) => t.nodeId)).size, 2)
  assert.equal(other.ports?.[0]?.published, 8080)
  // Without host ports, several tasks per node as before.
  create('many', [], {replicas: 7})
  assert.equal(tasksOf('many').length, 7)
})

test('host mode, global: one task on every node that may take one', () => {
  create('h', ['published=8080,target=80,mode=host'], {replicas: 1})
  refusedUnchanged(
    () => create('g', ['published=8080,target=80,mode=host'], {mode: 'global'}),
    /^service g: host-mode port 8080\/tcp takes one task per node: only 2 of 3 tasks can be placed \(3 live nodes; on n-\w service h holds 8080\/tcp\)/,
  )
  create('g', ['published=8081,target=80,mode=host'], {mode: 'global'})
  assert.equal(tasksOf('g').length, 3)
})

test('a node leaving: host-mode tasks that no node can take stay unplaced and are reported, not thrown', () => {
  create('h', ['published=8080,target=80,mode=host'], {replicas: 3})
  putNode(store, 'c', '172.30.0.13', 'left')
  const report = m.placeAll()
  assert.match(
    report.get('h') ?? '',
    /^service h: host-mode port 8080\/tcp takes one task per node: only 2 of 3 tasks can be placed \(2 live nodes\)$/,
  )
  assert.deepEqual(
    tasksOf('h')
      .map((t) => t.nodeId)
      .sort(),
    ['a', 'b'],
  )
  putNode(store, 'c', '172.30.0.13', 'ready')
  assert.equal(m.placeAll().get('h'), undefined)
  assert.deepEqual(
    tasksOf('h')
      .map((t) => t.nodeId)
      .sort(),
    ['a', 'b', 'c'],
  )
})

test('publish-add on a live service with an ingress port: only the record changes, its tasks keep running', () => {
  create('web', ['8080:80'])
  const before = tasksOf('web')
    .map((t) => t.id)
    .sort()
  const vips = m.read.findService('web').vips
  const svc = update('web', ['9090:90', '53/udp'])
  assert.deepEqual(
    svc.ports?.map((p) => `${p.published}->${p.target}/${p.protocol}`),
    ['8080->80/tcp', '9090->90/tcp', '30000->53/udp'],
  )
  assert.deepEqual(
    tasksOf('web')
      .map((t) => t.id)
      .sort(),
    before,
  )
  assert.deepEqual(m.read.findService('web').vips, vips)
  // remove, then add the same port with another target in one request
  update('web', ['8080:81'], ['8080'])
  assert.deepEqual(
    m.read.findService('web').ports?.map((p) => `${p.published}->${p.target}/${p.protocol}`),
    ['9090->90/tcp', '30000->53/udp', '8080->81/tcp'],
  )
  assert.deepEqual(
    tasksOf('web')
      .map((t) => t.id)
      .sort(),
    before,
  )
})

test('the first ingress port replaces the tasks with tasks on the ingress network, at new addresses', () => {
  create('web', [], {replicas: 2})
  const old = tasksOf('web')
  const oldIps = new Set(old.flatMap((t) => t.attachments.map((a) => a.ip)))
  update('web', ['8080:80'])
  const now = tasksOf('web')
  assert.equal(now.length, 2)
  assert.ok(
    now.every((t) => !old.some((o) => o.id === t.id)),
    'all replaced',
  )
  assert.deepEqual(now.map((t) => t.slot).sort(), [1, 2])
  for (const t of now) {
    assert.deepEqual(
      t.attachments.map((a) => a.networkId),
      [netId('net'), netId('ingress')],
    )
    assert.ok(!oldIps.has(t.attachments[0]!.ip), 'a replacement does not take the address of the task it replaces')
  }
  assert.deepEqual(m.read.findService('web').networks, [netId('net'), netId('ingress')])
  // A placed cluster writes nothing.
  m.placeAll()
  const clock = store.clock
  m.placeAll()
  assert.equal(store.clock, clock)
})

test('publish-rm of the last ingress port keeps the ingress attachment and the tasks; ports field gone', () => {
  create('web', ['8080:80'])
  const before = tasksOf('web')
    .map((t) => t.id)
    .sort()
  const svc = update('web', [], ['8080'])
  assert.equal('ports' in svc, false)
  assert.deepEqual(svc.networks, [netId('net'), netId('ingress')])
  assert.deepEqual(
    tasksOf('web')
      .map((t) => t.id)
      .sort(),
    before,
  )
  // and 8080 is free again
  create('api', ['8080:80'], {replicas: 1})
  // publishing again later replaces nothing
  update('web', ['8081:80'])
  assert.deepEqual(
    tasksOf('web')
      .map((t) => t.id)
      .sort(),
    before,
  )
})

test('publish-add / publish-rm refusals: one line, nothing written', () => {
  create('web', ['8080:80', '53:53/udp'])
  create('api', ['9090:80'])
  refusedUnchanged(
    () => update('web', [], ['8081']),
    /^service web does not publish port 8081\/tcp \(it publishes 8080\/tcp, 53\/udp\)$/,
  )
  refusedUnchanged(() => update('web', [], ['53']), /^service web does not publish port 53\/tcp/)
  refusedUnchanged(() => update('web', [], ['8080', '8080/tcp']), /^port 8080\/tcp is given twice to remove$/)
  refusedUnchanged(() => update('web', ['8080:81']), /^service web already publishes port 8080\/tcp$/)
  refusedUnchanged(() => update('web', ['9090:81']), /^port 9090\/tcp is already published by service api$/)
  refusedUnchanged(() => update('web', ['1000:80'], ['9999']), /does not publish port 9999\/tcp/)
  refusedUnchanged(() => update('web', []), /^nothing to change/)
  refusedUnchanged(() => update('nope', ['80']), /nope/)
  // a port another service gives up can be taken in the same breath by nobody else: still one writer
  update('api', [], ['9090'])
  update('web', ['9090:81'])
})

test('a host-mode port added to a live service moves the tasks that would share a node', () => {
  create('web', [], {replicas: 3})
  putNode(store, 'c', '172.30.0.13', 'left')
  m.scaleService('web', 4) // 2 on a, 2 on b
  refusedUnchanged(
    () => update('web', ['published=8080,target=80,mode=host']),
    /only 2 of 4 tasks can be placed \(2 live nodes\): nothing was changed$/,
  )
  m.scaleService('web', 2)
  putNode(store, 'c', '172.30.0.13', 'ready')
  m.scaleService('web', 3)
  update('web', ['published=8080,target=80,mode=host'])
  assert.equal(new Set(tasksOf('web').map((t) => t.nodeId)).size, 3)
})

test('a service already short (a node left) can still change its ports; a change that strands more tasks cannot', () => {
  create('h', ['published=8080,target=80,mode=host'], {replicas: 3})
  putNode(store, 'c', '172.30.0.13', 'left')
  m.placeAll()
  assert.equal(tasksOf('h').length, 2)
  // its first ingress port: the two placed tasks are replaced, the third still waits for a node
  const svc = update('h', ['9090:90'])
  assert.deepEqual(svc.networks, [netId('net'), netId('ingress')])
  assert.equal(tasksOf('h').length, 2)
  assert.ok(tasksOf('h').every((t) => t.attachments.some((a) => a.networkId === netId('ingress'))))
  update('h', [], ['9090'])
  assert.match(m.placeAll().get('h') ?? '', /only 2 of 3 tasks can be placed/)
  // a second service that would need a node h holds the port on: more stranded, refused
  create('k', [], {replicas: 2})
  putNode(store, 'b', '172.30.0.12', 'left')
  m.placeAll()
  refusedUnchanged(
    () => update('k', ['published=8080,target=80,mode=host']),
    /only 0 of 2 tasks can be placed \(1 live node; on n-a service h holds 8080\/tcp\): nothing was changed$/,
  )
  putNode(store, 'c', '172.30.0.13', 'ready')
  putNode(store, 'b', '172.30.0.12', 'ready')
  assert.equal(m.placeAll().get('h'), undefined)
  assert.equal(tasksOf('h').length, 3)
})

test('no ingress network (removed with --force): ingress ports refused, host ports fine', () => {
  m.removeNetwork('ingress', {force: true})
  refusedUnchanged(
    () => create('web', ['8080:80']),
    /^the cluster has no ingress network .*only mode=host ports can be published$/,
  )
  create('web', ['published=8080,target=80,mode=host'], {replicas: 1})
})

test('the ingress network cannot be removed while a service publishes through it', () => {
  create('web', ['8080:80'])
  assert.throws(() => m.removeNetwork('ingress', {force: true}), /network ingress is in use by service web/)
})

test('publish-add of a port the service already has with the same target is a no-op (Docker); another target is refused', () => {
  const svc = create('web', ['8080:80', '53:53/udp', 'published=9443,target=443,mode=host'])
  const before = stateFile()
  const clock = store.clock
  assert.deepEqual(update('web', ['8080:80']), svc)
  assert.deepEqual(update('web', ['53:53/udp', 'published=9443,target=443,mode=host']), svc)
  assert.equal(store.clock, clock, 'nothing written')
  assert.equal(stateFile(), before)
  // the same port among new ones: the new ones are added, the old one stays once
  const next = update('web', ['8080:80', '8081:81'])
  assert.deepEqual(
    next.ports?.map((p) => `${p.published}:${p.target}`),
    ['8080:80', '53:53', '9443:443', '8081:81'],
  )
  refusedUnchanged(() => update('web', ['8080:81']), /^service web already publishes port 8080\/tcp$/)
  // another mode is another port: refused as before
  refusedUnchanged(() => update('web', ['published=8080,target=80,mode=host']), /already publishes port 8080\/tcp/)
  // removed and added back in one command: published again
  assert.deepEqual(update('web', ['8080:80'], ['8080']).ports?.filter((p) => p.published === 8080).length, 1)
})

test('port ranges in create and update: one port each, all checked before anything is written', () => {
  const svc = create('web', ['8000-8002:80-82', '9000-9001:80'])
  assert.deepEqual(
    svc.ports?.map((p) => `${p.published}:${p.target}`),
    ['8000:80', '8001:81', '8002:82', '9000:80', '9001:80'],
  )
  const next = update('web', ['7000-7001:70-71', '8000-8002:80-82'])
  assert.deepEqual(
    next.ports?.map((p) => `${p.published}:${p.target}`),
    ['8000:80', '8001:81', '8002:82', '9000:80', '9001:80', '7000:70', '7001:71'],
  )
  create('api', ['9999:80'])
  // one port of the range taken: the whole range refused, nothing written
  refusedUnchanged(() => update('web', ['9998-9999:80']), /^port 9999\/tcp is already published by service api$/)
  assert.deepEqual(
    create('rng', ['80-81']).ports?.map((p) => p.published),
    [30000, 30001],
  )
})
