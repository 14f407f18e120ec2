// Store values by kind: what each reader of the store may take for granted.
import assert from 'node:assert/strict'
import {test} from 'node:test'
import {valueProblem} from '../../src/model/shape.js'

const good: Record<string, Record<string, unknown>> = {
  cluster: {id: 'c', createdAt: 1, dataPathPort: 4789, defaultAddrPool: '10.0.0.0/8', subnetSize: 24},
  'node/n1': {
    id: 'n1',
    name: 'n1',
    addr: '172.30.0.11',
    gossipPort: 7946,
    role: 'worker',
    state: 'ready',
    mtu: 1500,
    joinedAt: 1,
  },
  'network/w': {
    id: 'w',
    name: 'web',
    driver: 'overlay',
    scope: 'swarm',
    vni: 4097,
    subnet: '10.0.1.0/24',
    gateway: '10.0.1.1',
    attachable: false,
    ingress: false,
    createdAt: 1,
  },
  'service/s': {id: 's', name: 'web', mode: {replicas: 3}, networks: ['w'], command: ['sleep', ''], createdAt: 1, updatedAt: 2},
  'task/a1b2c3d4e5f6a1b2c3d4e5f6': {
    id: 'a1b2c3d4e5f6a1b2c3d4e5f6',
    serviceId: 's',
    serviceName: 'web',
    slot: 1,
    nodeId: 'n1',
    desiredState: 'running',
    attachments: [{networkId: 'w', ip: '10.0.1.2', mac: '02:42:0a:00:01:02'}],
    createdAt: 1,
  },
  'taskstatus/a1b2c3d4e5f6a1b2c3d4e5f6': {
    taskId: 'a1b2c3d4e5f6a1b2c3d4e5f6',
    nodeId: 'n1',
    state: 'running',
    pid: 42,
    netns: 'sn-n1-t',
    restarts: 0,
    gwIp: '172.18.0.2',
    updatedAt: 1,
  },
  'attachment/x': {
    id: 'x',
    name: 'blue',
    networkId: 'w',
    nodeId: 'n1',
    netns: '/proc/42/ns/net',
    ip: '10.0.1.9',
    mac: '02:42:0a:00:01:09',
    createdAt: 1,
  },
  'attachmentstatus/x': {id: 'x', nodeId: 'n1', state: 'attached', netnsIno: 4026531840, updatedAt: 1},
  'drained/n1': {tasks: ['a1b2c3d4e5f6a1b2c3d4e5f6']},
}

test('every kind accepts what the agent writes', () => {
  for (const [k, v] of Object.entries(good)) assert.equal(valueProblem(k, v), undefined, k)
  assert.equal(valueProblem('service/g', {...good['service/s'], id: 'g', mode: {global: true}}), undefined)
  assert.equal(
    valueProblem('network/b', {...good['network/w'], id: 'b', driver: 'bridge', scope: 'local', vni: undefined}),
    undefined,
  )
  const vip = {endpointMode: 'vip', vips: [{networkId: 'w', ip: '10.0.1.2'}]}
  assert.equal(valueProblem('service/s', {...good['service/s'], ...vip}), undefined)
  assert.equal(valueProblem('service/s', {...good['service/s'], endpointMode: 'dnsrr', vips: []}), undefined)
})

test('each kind refuses what its readers would trip on', () => {
  const bad: [string, Record<string, unknown>, RegExp][] = [
    ['cluster', {subnetSize: 4}, /larger than the pool/],
    ['cluster', {dataPathPort: 80}, /dataPathPort/],
    ['node/n1', {id: 'n2'}, /does not match the key/],
    ['node/n1', {addr: '300.1.1.1'}, /addr/],
    ['node/n1', {role: 'king'}, /role/],
    ['network/w', {subnet: '10.0.1.1/24'}, /subnet/],
    ['network/w', {gateway: '10.0.2.1'}, /outside/],
    ['network/w', {vni: 1}, /vni/],
    ['network/w', {name: '../x'}, /name/],
    ['service/s', {mode: {replicas: 1e9}}, /replicas/],
    ['service/s', {mode: {replicas: 2, global: true}}, /mode/],
    ['service/s', {command: 'sleep 1'}, /command/],
    ['service/s', {endpointMode: 'ipvs'}, /endpointMode/],
    ['service/s', {vips: {w: '10.0.1.2'}}, /vips/],
    ['service/s', {vips: [{networkId: 'w', ip: '10.0.1.300'}]}, /vip #0: 'ip'/],
    ['service/s', {endpointMode: 'dnsrr', vips: [{networkId: 'w', ip: '10.0.1.2'}]}, /dnsrr service has no VIPs/],
    [
      'service/s',
      {
        vips: [
          {networkId: 'w', ip: '10.0.1.2'},
          {networkId: 'w', ip: '10.0.1.3'},
        ],
      },
      /second VIP/,
    ],
    ['task/a1b2c3d4e5f6a1b2c3d4e5f6', {attachments: undefined}, /attachments/],
    ['task/a1b2c3d4e5f6a1b2c3d4e5f6', {attachments: [{networkId: 'w', ip: '10.0.1.2'}]}, /attachment #0: 'mac'/],
    ['task/a1b2c3d4e5f6a1b2c3d4e5f6', {slot: -1}, /slot/],
    ['task/a1b2c3d4e5f6a1b2c3d4e5f6', {desiredState: 'paused'}, /desiredState/],
    ['taskstatus/a1b2c3d4e5f6a1b2c3d4e5f6', {netns: '../../proc/1/ns/net'}, /netns/],
    ['taskstatus/a1b2c3d4e5f6a1b2c3d4e5f6', {pid: 0}, /pid/],
    ['taskstatus/a1b2c3d4e5f6a1b2c3d4e5f6', {taskId: 'u'}, /does not match/],
    ['attachment/x', {netns: 'blue'}, /netns/],
    ['attachment/x', {netns: '/run/netns/../../etc/passwd'}, /netns/],
    ['attachment/x', {ip: '10.0.1'}, /ip/],
    ['attachment/x', {name: ''}, /name/],
    ['attachmentstatus/x', {state: 'lost'}, /state/],
    ['attachmentstatus/x', {netnsIno: -1}, /netnsIno/],
    ['drained/n1', {tasks: ['../x']}, /not a list of task ids/],
    ['drained/n1', {tasks: 'a1b2c3d4e5f6a1b2c3d4e5f6'}, /not a list of task ids/],
    ['drained/n1', {tasks: Array(4097).fill('a1b2c3d4e5f6a1b2c3d4e5f6')}, /not a list of task ids/],
  ]
  for (const [k, patch, why] of bad)
    assert.match(valueProblem(k, {...good[k], ...patch}) ?? 'accepted', why, `${k} ${JSON.stringify(patch)}`)
  for (const v of [null, 1, 'x', [], [good['task/a1b2c3d4e5f6a1b2c3d4e5f6']]])
    assert.match(valueProblem('task/a1b2c3d4e5f6a1b2c3d4e5f6', v) ?? 'accepted', /not an object/)
  assert.match(valueProblem('task/a b', good['task/a1b2c3d4e5f6a1b2c3d4e5f6']) ?? 'accepted', /not a valid id/)
  // Task ids become paths: only 24 hex digits (src/model/ids.ts).
  for (const id of ['.', '..', 't', 'A1B2C3D4E5F6A1B2C3D4E5F6'])
    assert.match(valueProblem(`task/${id}`, {...good['task/a1b2c3d4e5f6a1b2c3d4e5f6'], id}) ?? 'accepted', /not a task id/)
  // A kind this version does not know: not ours to judge.
  assert.equal(valueProblem('future/x', 1), undefined)
})
