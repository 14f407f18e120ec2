// What the DNS fast path's reverse map (sn_dns_ptrs) holds, from the name table alone: per
// network and address, the name the responder gives a PTR question; one the fast path cannot
// hold marked PASS; nothing for addresses that are gone.
import assert from 'node:assert/strict'
import {test} from 'node:test'
import {SN_DNS_FLAGS, snDnsPtr, snDnsPtrKey} from '../../src/bpf/index.js'
import {desiredDns, wireName} from '../../src/dns/fastpath.js'
import {buildNames, type DnsView} from '../../src/dns/names.js'
import type {Network, Task, TaskStatus} from '../../src/model/types.js'
import {networkRecord, nodeRecord, serviceRecord as svc} from './model-records.js'

const net = (id: string, vni: number | undefined, third: number): Network =>
  networkRecord(id, `10.0.${third}.0/24`, {vni, gateway: `10.0.${third}.1`})
const task = (id: string, s: string, slot: number, atts: [string, string][]): Task => ({
  id,
  serviceId: s,
  serviceName: s,
  slot,
  nodeId: 'n1',
  desiredState: 'running',
  attachments: atts.map(([networkId, ip]) => ({networkId, ip, mac: '02:42:00:00:00:01'})),
  createdAt: 0,
})
const LONG = 'l'.repeat(63)

function view(): DnsView {
  const running: Pick<TaskStatus, 'state' | 'nodeId' | 'gwIp'> = {state: 'running', nodeId: 'n1'}
  return {
    selfId: 'n1',
    nodes: [nodeRecord('n1', '192.168.0.1')],
    networks: [net('front', 4097, 1), net('back', 4098, 2), net('novni', undefined, 3)],
    services: [
      svc('web', ['front', 'back'], {
        vips: [
          {networkId: 'front', ip: '10.0.1.2'},
          {networkId: 'back', ip: '10.0.2.2'},
        ],
      }),
      svc(LONG, ['front'], {vips: [{networkId: 'front', ip: '10.0.1.4'}]}),
      svc('nv', ['novni'], {vips: [{networkId: 'novni', ip: '10.0.3.2'}]}),
    ],
    tasks: [
      task('t1', 'web', 1, [
        ['front', '10.0.1.10'],
        ['back', '10.0.2.10'],
      ]),
      task('t2', 'web', 2, [['front', '10.0.1.11']]),
      task('x'.repeat(63), LONG, 1, [['front', '10.0.1.40']]),
      task('n1t', 'nv', 1, [['novni', '10.0.3.10']]),
    ],
    statuses: new Map(['t1', 't2', 'x'.repeat(63), 'n1t'].map((id) => [id, running])),
  }
}

function ptrs(v: DnsView): Map<string, {name: string | undefined; flags: number}> {
  const want = desiredDns({table: buildNames(v), networks: v.networks, resolver: '172.18.0.1', ttl: 5, gwIfindex: () => 1})
  return new Map(
    [...want.ptrs.values()].map(([k, val]) => {
      const key = snDnsPtrKey.decode(k)
      const p = snDnsPtr.decode(val)
      const bytes = Buffer.from(p.name, 'hex')
      // The rest of the name field is zeros: the map's bytes are the same for the same name.
      assert.ok(bytes.subarray(p.len).every((b) => b === 0))
      const name = p.len ? bytes.subarray(0, p.len) : undefined
      return [`${key.vni}/${key.ip}`, {name: name?.toString('hex'), flags: p.flags}]
    }),
  )
}

const plain = (name: string) => ({name: wireName(name, 255)!.toString('hex'), flags: 0})

test("sn_dns_ptrs: each network's VIPs and task addresses with the responder's names, wire format", () => {
  const got = ptrs(view())
  assert.deepEqual(
    [...got.entries()].sort(),
    [
      ['4097/10.0.1.10', plain('web.1.t1')],
      ['4097/10.0.1.11', plain('web.2.t2')],
      ['4097/10.0.1.2', plain('web')],
      ['4097/10.0.1.4', plain(LONG)],
      // NAME.SLOT.TASKID of 131 bytes: more than the map holds, the slow path's, held so no later network shadows it.
      ['4097/10.0.1.40', {name: undefined, flags: SN_DNS_FLAGS.PASS}],
      ['4098/10.0.2.10', plain('web.1.t1')],
      ['4098/10.0.2.2', plain('web')],
      // novni has no VNI: the fast path cannot look in it (its tasks ask the slow path).
    ].sort(),
  )
  assert.deepEqual(wireName('web.1.t1', 255), Buffer.from('\x03web\x011\x02t1\x00', 'latin1'))
})

test('sn_dns_ptrs: a task that is gone, or a VIP that is, leaves no entry', () => {
  const v = view()
  v.tasks = v.tasks.filter((t) => t.id !== 't2')
  v.services = v.services.map((s) => (s.id === 'web' ? {...s, vips: s.vips!.filter((x) => x.networkId !== 'back')} : s))
  const got = ptrs(v)
  assert.equal(got.has('4097/10.0.1.11'), false, 'the task that went')
  assert.equal(got.has('4098/10.0.2.2'), false, 'the VIP that went')
  assert.deepEqual(got.get('4097/10.0.1.10'), plain('web.1.t1'))
  const stopped = view()
  stopped.statuses = new Map([...stopped.statuses].map(([id, s]) => [id, id === 't1' ? {...s, state: 'failed'} : s]))
  assert.equal(ptrs(stopped).has('4097/10.0.1.10'), false, 'a task no longer running')
})
