// The VIP side of the desired maps: which backends a VIP has, the flags the
// data path keys on, and Maglev tables that change only with their contents.
import assert from 'node:assert/strict'
import {test} from 'node:test'
import {desiredMaps, type ClusterView} from '../../src/dataplane/desired.js'
import {maglevChunks} from '../../src/dataplane/mapsync.js'
import {maglevTier, slotUniverse} from '../../src/lb/maglev.js'
import type {Service, Task} from '../../src/model/types.js'
import {networkRecord, nodeRecord as node} from './model-records.js'

const net = networkRecord('n1', '10.0.1.0/24')
const task = (id: string, serviceId: string, nodeId: string, ip: string, slot = 1): Task => ({
  id,
  serviceId,
  serviceName: serviceId,
  slot,
  nodeId,
  desiredState: 'running',
  attachments: [{networkId: 'n1', ip, mac: '02:42:0a:00:01:01'}],
  createdAt: 0,
})
const svc = (over: Partial<Service> = {}): Service => ({
  id: 'web',
  name: 'web',
  mode: {replicas: 3},
  networks: ['n1'],
  command: [],
  vips: [{networkId: 'n1', ip: '10.0.1.100'}],
  createdAt: 0,
  updatedAt: 0,
  ...over,
})
const view = (states: Record<string, string>, over: Partial<ClusterView> = {}): ClusterView => ({
  selfId: 'a',
  nodes: [node('a', '172.30.0.11'), node('b', '172.30.0.12')],
  networks: [net],
  tasks: [
    task('client', 'cli', 'a', '10.0.1.2'),
    task('w1', 'web', 'a', '10.0.1.5'),
    task('w2', 'web', 'b', '10.0.1.6', 2),
    task('w3', 'web', 'b', '10.0.1.7', 3),
  ],
  local: [
    {taskId: 'client', networkId: 'n1', hostIfindex: 40},
    {taskId: 'w1', networkId: 'n1', hostIfindex: 41},
  ],
  services: [svc()],
  statuses: new Map(Object.entries(states).map(([k, state]) => [k, {state: state as 'running'}])),
  ...over,
})

test('a VIP: an endpoint flagged VIP with its MAC, running tasks as backends, flags on their endpoints and devices', () => {
  const d = desiredMaps(view({w1: 'running', w2: 'running', w3: 'failed'}))
  assert.deepEqual(d.endpoints.get('4097/10.0.1.100'), {
    vni: 4097,
    ip: '10.0.1.100',
    nodeIp: '0.0.0.0',
    ifindex: 0,
    mac: '02:42:0a:00:01:64',
    local: false,
    vip: true,
  })
  const s = d.services!.get('4097/10.0.1.100')!
  assert.deepEqual(
    s.backends.map((b) => [b.key, b.ip, b.nodeIp]),
    [
      ['w1', '10.0.1.5', '172.30.0.11'],
      ['w2', '10.0.1.6', '172.30.0.12'],
    ],
  )
  assert.equal(s.size, maglevTier(3).size, 'sized by the tier of the scale, not by what runs now')
  assert.deepEqual(s.universe, slotUniverse(10), 'built over the slots of the tier')
  assert.deepEqual(
    s.backends.map((b) => b.owns),
    ['slot1', 'slot2'],
  )
  assert.equal(d.endpoints.get('4097/10.0.1.5')!.backend, true)
  assert.equal(d.endpoints.get('4097/10.0.1.7')!.backend, undefined, 'a failed task is no backend')
  assert.equal(d.devices.get(41)!.backend, true)
  assert.equal(d.devices.get(40)!.backend, undefined)
  const chunks = maglevChunks(s)
  assert.equal(chunks.flat().length, s.size)
  assert.deepEqual(new Set(chunks.flat()), new Set(['10.0.1.5', '10.0.1.6']))
})

test('table ids follow contents: the same backends give the same id, a change a new one', () => {
  const a = desiredMaps(view({w1: 'running', w2: 'running'})).services!.get('4097/10.0.1.100')!
  const b = desiredMaps(view({w2: 'running', w1: 'running'})).services!.get('4097/10.0.1.100')!
  const c = desiredMaps(view({w1: 'running', w2: 'running', w3: 'running'})).services!.get('4097/10.0.1.100')!
  assert.equal(a.tableId, b.tableId)
  assert.notEqual(a.tableId, c.tableId)
})

test('dnsrr services and networks without a local task get no VIP', () => {
  const dnsrr = desiredMaps(view({w1: 'running'}, {services: [svc({endpointMode: 'dnsrr', vips: undefined})]}))
  assert.equal(dnsrr.services!.size, 0)
  const noLocal = desiredMaps(view({w2: 'running'}, {selfId: 'c', local: []}))
  assert.equal(noLocal.services!.size, 0)
  assert.equal(noLocal.endpoints.size, 0)
})

test('a task that stops, or is scaled away, moves only its own slots of the table', () => {
  const slots = (states: Record<string, string>, replicas = 3) =>
    maglevChunks(desiredMaps(view(states, {services: [svc({mode: {replicas}})]})).services!.get('4097/10.0.1.100')!).flat()
  const all = slots({w1: 'running', w2: 'running', w3: 'running'})
  assert.deepEqual(new Set(all), new Set(['10.0.1.5', '10.0.1.6', '10.0.1.7']))
  for (const [gone, ip] of [
    ['w1', '10.0.1.5'],
    ['w2', '10.0.1.6'],
    ['w3', '10.0.1.7'],
  ] as const) {
    const states: Record<string, string> = {w1: 'running', w2: 'running', w3: 'running', [gone]: 'failed'}
    const after = slots(states)
    assert.equal(after.length, all.length, 'the same table size')
    let moved = 0
    for (let i = 0; i < all.length; i++) {
      if (all[i] !== ip) assert.equal(after[i], all[i], `slot ${i} moved when ${gone} stopped`)
      else moved++
      assert.notEqual(after[i], ip)
    }
    assert.ok(moved > 0)
  }
  // Scaled 3 -> 2 (w3's slot is no longer asked for): the same, within the tier.
  const scaled = slots({w1: 'running', w2: 'running'}, 2)
  for (let i = 0; i < all.length; i++) if (all[i] !== '10.0.1.7') assert.equal(scaled[i], all[i])
  // and back: w3 takes its slots back (the table is a function of what runs, not of history).
  assert.deepEqual(slots({w1: 'running', w2: 'running', w3: 'running'}), all)
})
