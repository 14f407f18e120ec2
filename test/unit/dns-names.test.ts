// The name model: what a task on this node may resolve, from the store alone.
import assert from 'node:assert/strict'
import {test} from 'node:test'
import {buildNames, resolve, reverseIp, rotated, type DnsView} from '../../src/dns/names.js'
import type {Network, NodeRecord, Task, TaskStatus} from '../../src/model/types.js'
import {networkRecord, nodeRecord, serviceRecord as svc} from './model-records.js'

const node = (id: string): NodeRecord => nodeRecord(id, `192.168.0.${id.slice(1)}`)
const net = (id: string, third: number): Network =>
  networkRecord(id, `10.0.${third}.0/24`, {name: `${id}-name`, vni: 4096 + third, gateway: `10.0.${third}.1`, attachable: true})
const task = (id: string, s: string, slot: number, nodeId: string, atts: [string, string][]): Task => ({
  id,
  serviceId: s,
  serviceName: s,
  slot,
  nodeId,
  desiredState: 'running',
  attachments: atts.map(([networkId, ip]) => ({networkId, ip, mac: '02:42:00:00:00:01'})),
  createdAt: 0,
})

function view(): DnsView {
  const statuses = new Map<string, Pick<TaskStatus, 'state' | 'nodeId' | 'gwIp'>>([
    ['t1', {state: 'running', nodeId: 'n1', gwIp: '172.18.0.2'}],
    ['t2', {state: 'running', nodeId: 'n2', gwIp: '172.18.0.2'}],
    ['t3', {state: 'starting', nodeId: 'n2'}],
    ['t4', {state: 'running', nodeId: 'n1', gwIp: '172.18.0.3'}],
    ['r1', {state: 'running', nodeId: 'n1', gwIp: '172.18.0.4'}],
    ['r2', {state: 'running', nodeId: 'n3'}],
  ])
  return {
    selfId: 'n1',
    nodes: [node('n1'), node('n2'), node('n3')],
    networks: [net('front', 1), net('back', 2)],
    services: [
      svc('web', ['front'], {vips: [{networkId: 'front', ip: '10.0.1.2'}], aliases: [{networkId: 'front', names: ['www']}]}),
      svc('db', ['back'], {vips: [{networkId: 'back', ip: '10.0.2.2'}]}),
      svc('rr', ['front'], {endpointMode: 'dnsrr'}),
    ],
    tasks: [
      task('t1', 'web', 1, 'n1', [['front', '10.0.1.10']]),
      task('t2', 'web', 2, 'n2', [['front', '10.0.1.11']]),
      task('t3', 'web', 3, 'n2', [['front', '10.0.1.12']]),
      task('t4', 'db', 1, 'n1', [['back', '10.0.2.10']]),
      task('r1', 'rr', 1, 'n1', [['front', '10.0.1.20']]),
      task('r2', 'rr', 2, 'n3', [['front', '10.0.1.21']]),
    ],
    statuses,
  }
}

const WEB = '172.18.0.2' // web.1, on front
const DB = '172.18.0.3' // db.1, on back

test('a service name gives its VIP, tasks.NAME its running tasks only', () => {
  const t = buildNames(view())
  assert.deepEqual(resolve(t, WEB, 'web', 'A'), {rcode: 'NOERROR', a: ['10.0.1.2'], rotate: false, name: 'web'})
  assert.deepEqual(resolve(t, WEB, 'Tasks.Web.', 'A'), {
    rcode: 'NOERROR',
    a: ['10.0.1.10', '10.0.1.11'],
    rotate: false,
    name: 'tasks.web',
  })
})

test('names are scoped to the networks of the asking task', () => {
  const t = buildNames(view())
  assert.deepEqual(resolve(t, DB, 'web', 'A'), {rcode: 'NXDOMAIN'})
  assert.deepEqual(resolve(t, WEB, 'db', 'A'), {rcode: 'NXDOMAIN'})
  assert.deepEqual(resolve(t, DB, 'db', 'A'), {rcode: 'NOERROR', a: ['10.0.2.2'], rotate: false, name: 'db'})
  // An asker that is no task of this node sees no cluster name at all.
  assert.deepEqual(resolve(t, '172.18.0.99', 'web', 'A'), {rcode: 'NXDOMAIN'})
  // Not a cluster name: forwarded upstream.
  assert.equal(resolve(t, WEB, 'example.com', 'A'), 'forward')
})

test('aliases resolve like the name, with tasks.ALIAS', () => {
  const t = buildNames(view())
  assert.deepEqual(resolve(t, WEB, 'www', 'A'), {rcode: 'NOERROR', a: ['10.0.1.2'], rotate: false, name: 'www'})
  assert.deepEqual((resolve(t, WEB, 'tasks.www', 'A') as {a: string[]}).a, ['10.0.1.10', '10.0.1.11'])
})

test('dnsrr: the name gives the running tasks, rotating; a down node takes its tasks out', () => {
  const v = view()
  const r = resolve(buildNames(v), WEB, 'rr', 'A') as {a: string[]; rotate: boolean}
  assert.deepEqual(r.a, ['10.0.1.20', '10.0.1.21'])
  assert.equal(r.rotate, true)
  assert.deepEqual(rotated(r.a, 1), ['10.0.1.21', '10.0.1.20'])
  assert.deepEqual(rotated(r.a, 2), r.a)
  const down = buildNames({...v, membership: {isDown: (id) => id === 'n3'}})
  assert.deepEqual((resolve(down, WEB, 'rr', 'A') as {a: string[]}).a, ['10.0.1.20'])
})

test('task names and hostnames, PTR of VIPs and task addresses', () => {
  const t = buildNames(view())
  assert.deepEqual((resolve(t, WEB, 'web.2.t2', 'A') as {a: string[]}).a, ['10.0.1.11'])
  assert.deepEqual((resolve(t, WEB, 'web.1', 'A') as {a: string[]}).a, ['10.0.1.10'])
  assert.deepEqual(resolve(t, WEB, '2.1.0.10.in-addr.arpa', 'PTR'), {rcode: 'NOERROR', ptr: 'web'})
  assert.deepEqual(resolve(t, WEB, '11.1.0.10.in-addr.arpa.', 'PTR'), {rcode: 'NOERROR', ptr: 'web.2.t2'})
  // The PTR of an address on a network the asker is not on is not ours to give.
  assert.equal(resolve(t, WEB, '2.2.0.10.in-addr.arpa', 'PTR'), 'forward')
  assert.equal(reverseIp('1.2.3.256.in-addr.arpa'), undefined)
})

test('AAAA of a known name: NOERROR with no answer, never NXDOMAIN', () => {
  const t = buildNames(view())
  assert.deepEqual(resolve(t, WEB, 'web', 'AAAA'), {rcode: 'NOERROR', empty: true})
  assert.deepEqual(resolve(t, WEB, 'tasks.web', 'MX'), {rcode: 'NOERROR', empty: true})
})

test('attachments resolve by their name once attached', () => {
  const v = view()
  const att = {
    id: 'x1',
    name: 'probe',
    networkId: 'front',
    nodeId: 'n2',
    netns: '/run/netns/probe',
    ip: '10.0.1.50',
    mac: '02:42:0a:00:01:32',
    createdAt: 0,
  }
  const pending = buildNames({...v, attachments: [att], attachmentStatus: () => undefined})
  assert.equal(resolve(pending, WEB, 'probe', 'A'), 'forward')
  const t = buildNames({...v, attachments: [att], attachmentStatus: () => ({state: 'attached'})})
  assert.deepEqual((resolve(t, WEB, 'probe', 'A') as {a: string[]}).a, ['10.0.1.50'])
  assert.deepEqual(resolve(t, WEB, '50.1.0.10.in-addr.arpa', 'PTR'), {rcode: 'NOERROR', ptr: 'probe'})
})

/** The view with published ports: web publishes tcp 8080->80 and udp 5353->53, rr tcp 9000->90. */
function withPorts(): DnsView {
  const v = view()
  return {
    ...v,
    services: v.services.map((s) =>
      s.id === 'web'
        ? {
            ...s,
            ports: [
              {protocol: 'tcp', target: 80, published: 8080, mode: 'ingress'},
              {protocol: 'udp', target: 53, published: 5353, mode: 'ingress'},
            ],
          }
        : s.id === 'rr'
          ? {...s, ports: [{protocol: 'tcp', target: 90, published: 9000, mode: 'host'}]}
          : s,
    ),
  }
}

test('SRV: _TARGET._tcp.NAME and _PUBLISHED._tcp.NAME point at the VIP name with the target port', () => {
  const t = buildNames(withPorts())
  const vip = {rcode: 'NOERROR', srv: [{port: 80, target: 'web', ip: '10.0.1.2'}]}
  assert.deepEqual(resolve(t, WEB, '_80._tcp.web', 'SRV'), vip)
  assert.deepEqual(resolve(t, WEB, '_8080._TCP.Web.', 'SRV'), vip)
  assert.deepEqual(resolve(t, WEB, '_53._udp.web', 'SRV'), {rcode: 'NOERROR', srv: [{port: 53, target: 'web', ip: '10.0.1.2'}]})
  // An alias names the same service: the records point at the alias.
  assert.deepEqual(resolve(t, WEB, '_80._tcp.www', 'SRV'), {rcode: 'NOERROR', srv: [{port: 80, target: 'www', ip: '10.0.1.2'}]})
})

test('SRV: dnsrr points at each running task by its name', () => {
  const v = withPorts()
  assert.deepEqual(resolve(buildNames(v), WEB, '_90._tcp.rr', 'SRV'), {
    rcode: 'NOERROR',
    srv: [
      {port: 90, target: 'rr.1', ip: '10.0.1.20'},
      {port: 90, target: 'rr.2', ip: '10.0.1.21'},
    ],
  })
  // The targets resolve, and a task that stops serving leaves the records.
  assert.deepEqual((resolve(buildNames(v), WEB, 'rr.2', 'A') as {a: string[]}).a, ['10.0.1.21'])
  const down = buildNames({...v, membership: {isDown: (id) => id === 'n3'}})
  assert.deepEqual(resolve(down, WEB, '_9000._tcp.rr', 'SRV'), {
    rcode: 'NOERROR',
    srv: [{port: 90, target: 'rr.1', ip: '10.0.1.20'}],
  })
})

test('SRV: an unknown port or protocol is NOERROR and empty, an unknown or out-of-scope service NXDOMAIN', () => {
  const t = buildNames(withPorts())
  const empty = {rcode: 'NOERROR', empty: true}
  assert.deepEqual(resolve(t, WEB, '_81._tcp.web', 'SRV'), empty)
  assert.deepEqual(resolve(t, WEB, '_80._udp.web', 'SRV'), empty)
  assert.deepEqual(resolve(t, WEB, '_http._tcp.web', 'SRV'), empty)
  assert.deepEqual(resolve(t, WEB, '_80._tcp.web', 'A'), empty)
  // A service with no published port has no SRV record.
  assert.deepEqual(resolve(buildNames(view()), WEB, '_80._tcp.web', 'SRV'), empty)
  // db exists on back only; the asker on front gets NXDOMAIN, never a forward.
  assert.deepEqual(resolve(t, WEB, '_80._tcp.db', 'SRV'), {rcode: 'NXDOMAIN'})
  assert.deepEqual(resolve(t, DB, '_80._tcp.web', 'SRV'), {rcode: 'NXDOMAIN'})
  assert.deepEqual(resolve(t, WEB, '_80._tcp.tasks.web', 'SRV'), {rcode: 'NXDOMAIN'})
  // Not the cluster's: forwarded.
  assert.equal(resolve(t, WEB, '_443._tcp.example.com', 'SRV'), 'forward')
})
