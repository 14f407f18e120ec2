// Service VIPs: one per attached network in vip mode, from the network's subnet through the
// same allocator as task addresses, counted by the capacity check, freed with the service.
import assert from 'node:assert/strict'
import {beforeEach, test} from 'node:test'
import {serviceInspectView, serviceView} from '../../src/agent/render.js'
import type {Manager} from '../../src/manager/manager.js'
import {valueProblem} from '../../src/model/shape.js'
import type {Service} from '../../src/model/types.js'
import {keyOf} from '../../src/store/keys.js'
import type {Store} from '../../src/store/store.js'
import {managerFixture, storeFiles} from './manager-fixture.js'

let m: Manager
let store: Store
let dir: string

beforeEach(() => {
  ;({dir, store, m} = managerFixture('sn-vip-', [
    ['a', '172.30.0.11'],
    ['b', '172.30.0.12'],
  ]))
})

// The snapshot and the log: a refused change must add nothing to either.
const stateFile = () => storeFiles(dir)
const netId = (name: string) => m.read.findNetwork(name).id
const create = (name: string, replicas: number, networks: string[], endpointMode?: string) =>
  m.createService({name, mode: 'replicated', replicas, networks, command: [], endpointMode})

/** Every address taken on a network: VIPs and task addresses, with who holds each. */
function holders(net: string): string[] {
  const id = netId(net)
  return [
    ...m.read.services().flatMap((s) => (s.vips ?? []).filter((v) => v.networkId === id).map((v) => v.ip)),
    ...m.read.tasks().flatMap((t) => t.attachments.filter((a) => a.networkId === id).map((a) => a.ip)),
  ]
}

test('vip (the default): one VIP per attached network, from that network, before the tasks', () => {
  m.createNetwork({name: 'front'})
  m.createNetwork({name: 'back', subnet: '10.20.0.0/24'})
  const svc = create('web', 2, ['front', 'back'])
  assert.equal(svc.endpointMode, 'vip')
  assert.deepEqual(svc.vips, [
    {networkId: netId('front'), ip: '10.0.0.2'},
    {networkId: netId('back'), ip: '10.20.0.2'},
  ])
  assert.deepEqual(m.read.findService('web'), svc, 'stored as returned')
  const ips = m.read.tasks().map((t) => t.attachments.map((a) => a.ip).join(','))
  assert.deepEqual(ips.sort(), ['10.0.0.3,10.20.0.3', '10.0.0.4,10.20.0.4'])
  assert.deepEqual(serviceView(svc, m.read).vips, [
    {network: 'front', ip: '10.0.0.2'},
    {network: 'back', ip: '10.20.0.2'},
  ])
})

test('dnsrr: no VIP, the tasks take the first addresses', () => {
  m.createNetwork({name: 'net'})
  const svc = create('rr', 2, ['net'], 'dnsrr')
  assert.equal(svc.endpointMode, 'dnsrr')
  assert.equal(svc.vips, undefined)
  assert.deepEqual(holders('net').sort(), ['10.0.0.2', '10.0.0.3'])
  const v = serviceInspectView(svc, m.read)
  assert.equal(v.endpointMode, 'dnsrr')
  assert.deepEqual(v.vips, [])
  assert.deepEqual(v.backends.map((b) => [b.network, b.ip, b.state]).sort(), [
    ['net', '10.0.0.2', 'new'],
    ['net', '10.0.0.3', 'new'],
  ])
})

test('an unknown endpoint mode is refused in one line and writes nothing', async () => {
  m.createNetwork({name: 'net'})
  await store.sync()
  const file = stateFile()
  for (const bad of ['ipvs', 'VIP', ''])
    assert.throws(() => create('x', 1, ['net'], bad), /^UserError: invalid endpoint mode "[^"]*": must be vip or dnsrr$/)
  assert.equal(stateFile(), file)
})

test('VIPs never collide with task addresses, through creates, scales and removals', () => {
  m.createNetwork({name: 'net'})
  create('a', 3, ['net'])
  create('b', 1, ['net'], 'dnsrr')
  create('c', 2, ['net'])
  m.scaleService('a', 1)
  create('d', 4, ['net'])
  m.scaleService('a', 5)
  m.removeService('c')
  create('e', 2, ['net'])
  m.placeAll()
  const all = holders('net')
  assert.equal(new Set(all).size, all.length, `duplicates in ${all.join(' ')}`)
  assert.equal(all.length, 5 + 1 + 4 + 2 + 3, 'tasks of a, b, d, e and one VIP each for a, d, e; c is gone')
  // A service keeps its VIP while it is scaled.
  const vipA = m.read.findService('a').vips
  m.scaleService('a', 2)
  assert.deepEqual(m.read.findService('a').vips, vipA)
})

test('a removed service frees its VIP: the next service gets the same address', () => {
  m.createNetwork({name: 'net'})
  const first = create('one', 0, ['net'])
  assert.deepEqual(
    first.vips?.map((v) => v.ip),
    ['10.0.0.2'],
  )
  create('two', 1, ['net'])
  m.removeService('one')
  assert.deepEqual(holders('net'), ['10.0.0.3', '10.0.0.4'])
  const again = create('three', 0, ['net'])
  assert.deepEqual(
    again.vips?.map((v) => v.ip),
    ['10.0.0.2'],
  )
})

test('the capacity check counts the VIP: refused before anything is written', async () => {
  m.createNetwork({name: 'tiny', subnet: '10.9.2.0/30'}) // one address besides the gateway
  await store.sync()
  const file = stateFile()
  assert.throws(
    () => create('x', 1, ['tiny']),
    /^UserError: service x needs 1 new task address and a VIP, but network tiny \(10\.9\.2\.0\/30\) has 1 free address: nothing was changed$/,
  )
  assert.equal(stateFile(), file)
  assert.deepEqual(m.read.services(), [])
  // dnsrr needs no VIP: the one address is the task's.
  create('y', 1, ['tiny'], 'dnsrr')
  assert.throws(() => create('z', 0, ['tiny']), /needs 0 new task addresses and a VIP, but network tiny .* has 0 free addresses/)
})

test('a service stored without VIPs (before they existed) gets them from the placement pass; a placed cluster writes nothing', () => {
  m.createNetwork({name: 'net'})
  create('t', 2, ['net'], 'dnsrr') // 10.0.1.2, .3
  const old: Service = {
    id: 'old1',
    name: 'old',
    mode: {replicas: 1},
    networks: [netId('net')],
    command: [],
    createdAt: 1,
    updatedAt: 1,
  }
  store.put(keyOf('service', old.id), old)
  m.placeAll()
  assert.deepEqual(m.read.findService('old').vips, [{networkId: netId('net'), ip: '10.0.0.4'}])
  assert.deepEqual(holders('net').sort(), ['10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5'])
  const clock = store.clock
  m.placeAll()
  assert.equal(store.clock, clock)
  for (const e of store.list()) assert.equal(valueProblem(e.key, e.value), undefined, e.key)
  assert.equal(store.refused, 0)
})
