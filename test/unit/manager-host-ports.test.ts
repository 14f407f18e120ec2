// The host-mode port placement rule on its own: placeTasks with a rule, and the rule as derived
// from the store (which nodes another service's tasks hold the port on), and its one line.
import assert from 'node:assert/strict'
import {test} from 'node:test'
import {placeTasks} from '../../src/model/allocate.js'
import {describeHostPortShort, hostPortRule} from '../../src/manager/host-ports.js'
import type {NodeRecord, Service, Task} from '../../src/model/types.js'
import {nodeRecord} from './model-records.js'

const nodes = [{id: 'a'}, {id: 'b'}, {id: 'c'}]
const task = (id: string, slot: number, nodeId: string, serviceId = 's'): Task => ({
  id,
  serviceId,
  serviceName: serviceId,
  slot,
  nodeId,
  desiredState: 'running',
  attachments: [],
  createdAt: 0,
})
const node = (id: string): NodeRecord => nodeRecord(id, '172.30.0.1', {name: `n-${id}`})
const service = (id: string, mode: Service['mode'], ports: Service['ports']): Service => ({
  id,
  name: id,
  mode,
  networks: [],
  command: [],
  ...(ports ? {ports} : {}),
  createdAt: 0,
  updatedAt: 0,
})
const host = (published: number, protocol: 'tcp' | 'udp' = 'tcp') => ({published, target: 80, protocol, mode: 'host' as const})

test('one per node: a second task on a node is not kept but moved; slots beyond the nodes stay unplaced', () => {
  const rule = {onePerNode: true, blocked: new Set<string>()}
  const p = placeTasks({id: 's', mode: {replicas: 4}}, nodes, [task('t1', 1, 'a'), task('t2', 2, 'a')], rule)
  assert.deepEqual(p, [
    {slot: 1, nodeId: 'a', taskId: 't1'},
    {slot: 2, nodeId: 'b'},
    {slot: 3, nodeId: 'c'},
  ])
  // Without the rule, the same input keeps both and places all four.
  assert.equal(placeTasks({id: 's', mode: {replicas: 4}}, nodes, [task('t1', 1, 'a'), task('t2', 2, 'a')]).length, 4)
})

test('blocked nodes take no task, keep none, and a global service skips them', () => {
  const rule = {onePerNode: true, blocked: new Set(['b'])}
  assert.deepEqual(placeTasks({id: 's', mode: {replicas: 3}}, nodes, [task('t1', 1, 'b')], rule), [
    {slot: 1, nodeId: 'a'},
    {slot: 2, nodeId: 'c'},
  ])
  assert.deepEqual(
    placeTasks({id: 's', mode: {global: true}}, nodes, [], rule).map((x) => x.nodeId),
    ['a', 'c'],
  )
})

test('the rule from the store: only services sharing a host-mode port block, ingress ports and other protocols do not', () => {
  const web = service('web', {replicas: 3}, [host(8080), {published: 9090, target: 90, protocol: 'tcp', mode: 'ingress'}])
  const state = {
    nodes: nodes.map((n) => node(n.id)),
    services: [
      web,
      service('api', {replicas: 1}, [host(8080)]),
      service('dns', {replicas: 1}, [host(8080, 'udp')]),
      service('plain', {replicas: 1}, undefined),
    ],
    tasks: [task('x', 1, 'b', 'api'), task('y', 1, 'c', 'dns'), task('z', 1, 'a', 'plain'), task('w', 1, 'a', 'web')],
  }
  const r = hostPortRule(web, state)!
  assert.deepEqual([...r.rule.blocked], ['b'])
  assert.equal(r.rule.onePerNode, true)
  assert.equal(r.short(3, 3), undefined)
  const short = r.short(2, 3)!
  assert.deepEqual(short, {
    want: 3,
    placed: 2,
    ports: ['8080/tcp'],
    liveNodes: 3,
    heldBy: [{node: 'n-b', service: 'api', port: '8080/tcp'}],
  })
  assert.equal(
    describeHostPortShort(web, short),
    'service web: host-mode port 8080/tcp takes one task per node: only 2 of 3 tasks can be placed (3 live nodes; on n-b service api holds 8080/tcp)',
  )
  assert.equal(hostPortRule(service('plain', {replicas: 1}, undefined), state), undefined, 'no host ports: no rule')
  assert.equal(hostPortRule(service('i', {replicas: 9}, [{...host(1), mode: 'ingress'}]), state), undefined)
})
