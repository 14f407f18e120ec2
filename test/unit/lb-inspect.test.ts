// inspect lb's join of the LB maps with the store: frontends per VIP, backends named by task and
// node, live flows counted from forward conntrack entries that have not seen a FIN or RST.
import assert from 'node:assert/strict'
import {test} from 'node:test'
import {lbView, type LbMaps, type LbNames} from '../../src/lb/inspect.js'
import {networkRecord, nodeRecord} from './model-records.js'

const net = networkRecord('n1', '10.0.1.0/24', {name: 'front', gateway: '10.0.1.1', createdAt: 1})
const task = (id: string, slot: number, ip: string, nodeId: string) => ({
  id,
  serviceId: 's1',
  serviceName: 'web',
  slot,
  nodeId,
  desiredState: 'running' as const,
  attachments: [{networkId: 'n1', ip, mac: '02:42:00:00:00:00'}],
  createdAt: 1,
})
const node = (id: string, name: string, addr: string) => nodeRecord(id, addr, {name, joinedAt: 1})
const svc = (id: string, name: string, extra: object) => ({
  id,
  name,
  mode: {replicas: 2},
  networks: ['n1'],
  command: [],
  createdAt: 1,
  updatedAt: 1,
  ...extra,
})

const names: LbNames = {
  networks: [net],
  services: [
    svc('s1', 'web', {endpointMode: 'vip', vips: [{networkId: 'n1', ip: '10.0.1.2'}]}),
    svc('s2', 'rr', {endpointMode: 'dnsrr'}),
    svc('s3', 'late', {endpointMode: 'vip', vips: [{networkId: 'n1', ip: '10.0.1.9'}]}),
  ],
  tasks: [task('t1', 1, '10.0.1.3', 'a'), task('t2', 2, '10.0.1.4', 'b')],
  nodes: [node('a', 'n1', '172.30.0.11'), node('b', 'n2', '172.30.0.12')],
}

const ct = (src: string, dst: string, addr: string, dir: number, flags = 0) => ({
  key: {vni: 4097, src, dst, sport: 40000, dport: 80, proto: 6, dir},
  value: {addr, table: 1, flags},
})

const maps: LbMaps = {
  services: [
    {key: {vni: 4097, vip: '10.0.1.2'}, value: {table: 7, size: 211, count: 2}},
    {key: {vni: 4097, vip: '10.0.1.77'}, value: {table: 8, size: 101, count: 0}},
  ],
  backends: [
    {key: {vni: 4097, vip: '10.0.1.2', ip: '10.0.1.4'}, value: {node_ip: '172.30.0.12'}},
    {key: {vni: 4097, vip: '10.0.1.2', ip: '10.0.1.3'}, value: {node_ip: '172.30.0.11'}},
  ],
  ct: [
    ct('10.0.1.20', '10.0.1.2', '10.0.1.3', 0),
    ct('10.0.1.21', '10.0.1.2', '10.0.1.3', 0),
    ct('10.0.1.22', '10.0.1.2', '10.0.1.4', 0),
    // a closing flow, and the reply entries of the open ones: not counted
    ct('10.0.1.23', '10.0.1.2', '10.0.1.4', 0, 0x1),
    ct('10.0.1.3', '10.0.1.20', '10.0.1.2', 1),
    ct('10.0.1.4', '10.0.1.22', '10.0.1.2', 1),
  ],
}

test('per service: its VIP, its backends by task and node, live flows per backend', () => {
  const v = lbView(maps, names)
  assert.deepEqual(
    v.map((s) => s.service),
    ['?', 'late', 'web'],
  )
  const web = v.find((s) => s.service === 'web')!
  assert.deepEqual(web.frontends, [
    {
      network: 'front',
      vni: 4097,
      vip: '10.0.1.2',
      programmed: true,
      tableSize: 211,
      backends: [
        {ip: '10.0.1.3', task: 'web.1', node: 'n1', flows: 2},
        {ip: '10.0.1.4', task: 'web.2', node: 'n2', flows: 1},
      ],
    },
  ])
})

test('a VIP the store has but the maps do not is shown as not programmed; one only the maps have, as ?', () => {
  const v = lbView(maps, names)
  const late = v.find((s) => s.service === 'late')!
  assert.equal(late.frontends[0]!.programmed, false)
  assert.deepEqual(late.frontends[0]!.backends, [])
  const stray = v.find((s) => s.service === '?')!
  assert.equal(stray.frontends[0]!.vip, '10.0.1.77')
  assert.equal(stray.frontends[0]!.programmed, true)
  assert.equal(
    v.some((s) => s.service === 'rr'),
    false,
    'dnsrr services have no frontend',
  )
})

test('published ports: per service, as the store has them, with the tasks behind them', () => {
  const ingress = {...net, id: 'ing', name: 'ingress', vni: 4096, subnet: '10.0.0.0/24', gateway: '10.0.0.1', ingress: true}
  const withIngress = (t: ReturnType<typeof task>, ip: string) => ({
    ...t,
    attachments: [...t.attachments, {networkId: 'ing', ip, mac: '02:42:00:00:00:01'}],
  })
  const v = lbView(maps, {
    ...names,
    networks: [net, ingress],
    services: [
      svc('s1', 'web', {
        endpointMode: 'vip',
        vips: [{networkId: 'n1', ip: '10.0.1.2'}],
        ports: [
          {published: 53, target: 53, protocol: 'udp', mode: 'ingress'},
          {published: 8080, target: 80, protocol: 'tcp', mode: 'ingress'},
        ],
      }),
      svc('s2', 'rr', {endpointMode: 'dnsrr', ports: [{published: 9000, target: 90, protocol: 'tcp', mode: 'host'}]}),
      svc('s3', 'plain', {endpointMode: 'dnsrr'}),
    ],
    tasks: [
      withIngress(task('t1', 1, '10.0.1.3', 'a'), '10.0.0.3'),
      withIngress(task('t2', 2, '10.0.1.4', 'b'), '10.0.0.4'),
      {...task('t3', 1, '10.0.1.5', 'b'), serviceId: 's2', serviceName: 'rr'},
      {...task('t4', 2, '10.0.1.6', 'a'), serviceId: 's2', serviceName: 'rr', desiredState: 'shutdown' as const},
    ],
  })
  const web = v.find((s) => s.service === 'web')!
  assert.deepEqual(web.ports, [
    {
      published: 8080,
      target: 80,
      protocol: 'tcp',
      mode: 'ingress',
      nodes: ['n1', 'n2'],
      backends: [
        {task: 'web.1', node: 'n1', ip: '10.0.0.3'},
        {task: 'web.2', node: 'n2', ip: '10.0.0.4'},
      ],
    },
    {
      published: 53,
      target: 53,
      protocol: 'udp',
      mode: 'ingress',
      nodes: ['n1', 'n2'],
      backends: [
        {task: 'web.1', node: 'n1', ip: '10.0.0.3'},
        {task: 'web.2', node: 'n2', ip: '10.0.0.4'},
      ],
    },
  ])
  const rr = v.find((s) => s.service === 'rr')!
  assert.deepEqual(rr.frontends, [], 'a dnsrr service with a host-mode port: listed for it, no frontend')
  assert.deepEqual(rr.ports, [
    {published: 9000, target: 90, protocol: 'tcp', mode: 'host', nodes: ['n2'], backends: [{task: 'rr.1', node: 'n2'}]},
  ])
  assert.equal(
    v.some((s) => s.service === 'plain'),
    false,
  )
})

test('a backend whose task is being stopped is marked draining; an address a running task holds now is named by it', () => {
  const stopping = {...task('t2', 2, '10.0.1.4', 'b'), desiredState: 'shutdown' as const}
  const v = lbView(maps, {...names, tasks: [task('t1', 1, '10.0.1.3', 'a'), stopping]})
  assert.deepEqual(
    v.find((s) => s.service === 'web')!.frontends[0]!.backends.map((b) => [b.task, b.draining]),
    [
      ['web.1', undefined],
      ['web.2', true],
    ],
  )
  // The same address given to a new task while the old one still drains: the running one it is.
  const reused = {...task('t3', 3, '10.0.1.4', 'a')}
  const w = lbView(maps, {...names, tasks: [stopping, task('t1', 1, '10.0.1.3', 'a'), reused]})
  assert.deepEqual(
    w.find((s) => s.service === 'web')!.frontends[0]!.backends.map((b) => [b.task, b.draining]),
    [
      ['web.1', undefined],
      ['web.3', undefined],
    ],
  )
})
