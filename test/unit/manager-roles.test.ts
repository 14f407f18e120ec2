// node promote / demote, the checks before anything is written, and what is written.
import assert from 'node:assert/strict'
import {test} from 'node:test'
import {certifyNode, certSerial, checkNodeCert, generateIdentity, generateNodeKey} from '../../src/gossip/identity.js'
import {changeRole} from '../../src/manager/roles.js'
import {generateToken} from '../../src/gossip/token.js'
import {openSecrets} from '../../src/gossip/manager-secrets.js'
import type {NodeRecord} from '../../src/model/types.js'
import {clusterSpec, nodeRecord} from './model-records.js'

const identity = generateIdentity()
const key = generateNodeKey()
const rec = (id: string, role: NodeRecord['role'], extra: Partial<NodeRecord> = {}): NodeRecord =>
  nodeRecord(id, '172.30.0.11', {role, pubKey: key.publicKey, ...extra})
const etcdCluster = clusterSpec({store: 'etcd'})
const etcd = {endpoints: ['https://172.30.0.11:2379'], prefix: '/swarmnet/c/', ca: '/ca.pem'}
const secrets = {
  identity,
  token: generateToken(identity.publicKey).text,
  managerToken: generateToken(identity.publicKey).text,
}
const base = {
  nodes: [rec('m1', 'manager', {managerStatus: 'leader'}), rec('w1', 'worker')],
  cluster: etcdCluster,
  secrets,
  etcd,
  isDown: () => false,
  // The manager making the change is none of the nodes above unless a test says so.
  selfId: 'm0',
  now: 1000,
}

test('promote: the node re-certified as a manager, with the etcd settings it will use and the secrets sealed to it', () => {
  const ch = changeRole({...base, ref: 'w1', role: 'manager'})
  assert.equal(ch.record.role, 'manager')
  assert.ok(checkNodeCert(identity.publicKey, 'w1', key.publicKey, 'manager', ch.record.cert!))
  const {sealed, ...rest} = ch.promotion!
  assert.deepEqual(rest, {nodeId: 'w1', etcd})
  assert.deepEqual(openSecrets(key, sealed), secrets)
  assert.equal(openSecrets(generateNodeKey(), sealed), undefined, 'another node key cannot open them')
})

test('demote: re-certified as a worker, its manager status dropped; never the last manager up', () => {
  const cert = certifyNode(identity, 'm2', key.publicKey, 'manager')
  const nodes = [...base.nodes, rec('m2', 'manager', {managerStatus: 'reachable', cert})]
  const ch = changeRole({...base, nodes, ref: 'm2', role: 'worker'})
  assert.equal(ch.record.role, 'worker')
  // Its manager certificate is revoked: it vouches for nothing wherever the old record still stands.
  assert.deepEqual(ch.revoke, {key: `revoked/${certSerial(cert)}`, value: {serial: certSerial(cert), nodeId: 'm2', at: 1000}})
  assert.notEqual(certSerial(ch.record.cert!), certSerial(cert))
  assert.throws(() => changeRole({...base, nodes, selfId: 'm2', ref: 'm2', role: 'worker'}), /cannot change its own role/)
  assert.equal(ch.record.managerStatus, undefined)
  assert.equal(ch.promotion, undefined)
  assert.throws(() => changeRole({...base, ref: 'm1', role: 'worker'}), /last manager that is up/)
  assert.throws(
    () => changeRole({...base, nodes, ref: 'm1', role: 'worker', isDown: (id) => id === 'm2'}),
    /last manager that is up/,
  )
})

test('refusals: embedded cluster, unknown, down or left node, same role, no identity', () => {
  const {store: _s, ...embedded} = etcdCluster
  assert.throws(() => changeRole({...base, cluster: embedded, ref: 'w1', role: 'manager'}), /embedded: it has one manager/)
  assert.throws(() => changeRole({...base, ref: 'nope', role: 'manager'}), /node nope not found/)
  assert.throws(() => changeRole({...base, ref: 'w1', role: 'manager', isDown: () => true}), /is down/)
  assert.throws(
    () => changeRole({...base, nodes: [rec('w1', 'worker', {state: 'left'})], ref: 'w1', role: 'manager'}),
    /has left/,
  )
  assert.throws(() => changeRole({...base, ref: 'm1', role: 'manager'}), /already a manager/)
  assert.throws(() => changeRole({...base, secrets: undefined, ref: 'w1', role: 'manager'}), /holds no cluster identity/)
})
