// Every manager does what the first does: the cluster identity and the join
// tokens reach a new manager sealed (in the join answer, or to its node key
// in its promotion record), so a second manager admits joins and changes
// roles with the first one gone; a demoted node forgets them.
import assert from 'node:assert/strict'
import {after, describe, it} from 'node:test'
import {checkNodeCert, generateNodeKey} from '../../src/gossip/identity.js'
import {requestJoin} from '../../src/gossip/join.js'
import {
  adoptedTokens,
  checkManagerSecrets,
  openSecrets,
  sealSecretsTo,
  secretsFor,
  type ManagerSecrets,
} from '../../src/gossip/manager-secrets.js'
import {rotateToken} from '../../src/gossip/token.js'
import {openAsNode, sealToNode} from '../../src/gossip/node-seal.js'
import {generateToken, parseToken} from '../../src/gossip/token.js'
import {configAsManager, configAsWorker} from '../../src/agent/role-config.js'
import type {NodeConfig} from '../../src/agent/config.js'
import {changeRole} from '../../src/manager/roles.js'
import type {ClusterSpec, NodeRecord} from '../../src/model/types.js'
import {GossipLab, freePort, type LabGossipOptions, type LabNode} from './gossip-lab.js'

const lab = new GossipLab()
after(() => lab.close())

const etcdCluster: ClusterSpec = {
  id: 'c1',
  createdAt: 1,
  dataPathPort: 4789,
  defaultAddrPool: '10.0.0.0/8',
  subnetSize: 24,
  store: 'etcd',
}
const etcd = {endpoints: ['https://127.0.0.1:2379'], prefix: '/swarmnet/c1/'}

/** What a manager's agent hands gossip to answer joins (src/manager/join-answering.ts); the lab adds the admission. */
function joinFor(s: ManagerSecrets): LabGossipOptions['join'] {
  return {
    identity: s.identity,
    tokens: () => [
      {token: parseToken(s.token), role: 'worker'},
      {token: parseToken(s.managerToken), role: 'manager'},
    ],
    managerSecrets: () => s,
  }
}

describe('node seal: a secret only one node key opens', () => {
  it('opens with the recipient key only; a changed byte or another label does not open', () => {
    const k = generateNodeKey()
    const sealed = sealToNode(k.publicKey, Buffer.from('the identity'), 'l')
    assert.equal(openAsNode(k, sealed, 'l')?.toString(), 'the identity')
    assert.equal(openAsNode(generateNodeKey(), sealed, 'l'), undefined)
    assert.equal(openAsNode(k, sealed, 'other'), undefined)
    const b = Buffer.from(sealed, 'base64')
    for (const i of [0, 40, b.length - 1]) {
      const t = Buffer.from(b)
      t[i] = (t[i] as number) ^ 1
      assert.equal(openAsNode(k, t.toString('base64'), 'l'), undefined, `byte ${i} changed`)
    }
    assert.equal(openAsNode(k, 'not base64 at all!', 'l'), undefined)
    assert.throws(() => sealToNode('AAAA', Buffer.from('x'), 'l'), /not an Ed25519 node key/)
  })

  it('secrets that do not hang together are refused (tokens of another identity, a private half that does not match)', () => {
    const s = {identity: lab.identity, token: lab.token.text, managerToken: generateToken(lab.identity.publicKey).text}
    assert.deepEqual(checkManagerSecrets(s), s)
    const other = generateNodeKey()
    assert.equal(checkManagerSecrets({...s, token: generateToken(other.publicKey).text}), undefined)
    assert.equal(checkManagerSecrets({...s, identity: {...s.identity, privateKey: other.privateKey}}), undefined)
    assert.equal(checkManagerSecrets({...s, managerToken: 7}), undefined)
    const k = generateNodeKey()
    assert.equal(openSecrets(k, sealSecretsTo(k.publicKey, {...s, token: generateToken(other.publicKey).text})), undefined)
  })
})

describe('a second manager admits joins and changes roles with the first one gone', () => {
  const secrets: ManagerSecrets = {
    identity: lab.identity,
    token: lab.token.text,
    managerToken: generateToken(lab.identity.publicKey).text,
  }
  let m1: LabNode
  let m2: LabNode
  let m2secrets: ManagerSecrets

  it('join --manager: the sealed answer carries the identity and the tokens; a worker join does not', async () => {
    m1 = await lab.manager('m1', {gossip: {join: joinFor(secrets)}})
    m1.store.put('cluster', etcdCluster)
    const addr = lab.newAddr()
    const port = await freePort(addr)
    const nodeKey = generateNodeKey()
    lab.keys.set('m2', nodeKey)
    const r = await requestJoin({
      manager: {addr: m1.addr, port: m1.port},
      token: secrets.managerToken,
      node: {id: 'm2', name: 'm2', addr, gossipPort: port, mtu: 1500, pubKey: nodeKey.publicKey},
    })
    assert.equal(r.role, 'manager')
    assert.deepEqual(r.secrets, secrets)
    m2secrets = r.secrets!
    const s = lab.openStore('m2')
    s.merge(r.entries)
    m2 = await lab.start('m2', addr, port, {store: s, gossip: {join: joinFor(m2secrets)}})

    const w = await requestJoin({
      manager: {addr: m1.addr, port: m1.port},
      token: secrets.token,
      node: {id: 'w0', name: 'w0', addr: lab.newAddr(), gossipPort: 1, mtu: 1500, pubKey: generateNodeKey().publicKey},
    })
    assert.equal(w.role, 'worker')
    assert.equal(w.secrets, undefined, 'a worker gets no manager secret')
  })

  it('with m1 stopped, a new worker joins through m2, certified by the cluster identity', async () => {
    await lab.stop(m1)
    const key = generateNodeKey()
    const addr = lab.newAddr()
    const r = await requestJoin({
      manager: {addr: m2.addr, port: m2.port},
      token: secrets.token,
      node: {id: 'w1', name: 'w1', addr, gossipPort: 1, mtu: 1500, pubKey: key.publicKey},
    })
    assert.equal(r.identity, lab.identity.publicKey)
    const rec = r.entries.find((e) => e.key === 'node/w1')?.value as NodeRecord
    assert.ok(checkNodeCert(lab.identity.publicKey, 'w1', key.publicKey, 'worker', rec.cert!))
    assert.ok(m2.store.get('node/w1'), 'm2 recorded the new node')
    lab.keys.set('w1', key)
  })

  it('m2 promotes w1 (which opens the secrets and can admit in turn), then demotes it (which forgets them)', async () => {
    const key = lab.keys.get('w1')!
    const nodes = m2.store.values<NodeRecord>('node/')
    const up = changeRole({
      nodes,
      cluster: etcdCluster,
      ref: 'w1',
      role: 'manager',
      secrets: m2secrets,
      etcd,
      isDown: () => false,
      selfId: 'm2',
      now: Date.now(),
    })
    assert.ok(checkNodeCert(lab.identity.publicKey, 'w1', key.publicKey, 'manager', up.record.cert!))
    const w1cfg = {
      nodeId: 'w1',
      name: 'w1',
      role: 'worker',
      nodeKey: key,
      cert: 'old',
      clusterIdentity: lab.identity.publicKey,
    } as NodeConfig
    const asManager = configAsManager(w1cfg, up.record.cert!, up.promotion!, key)
    assert.equal(asManager.warning, undefined)
    assert.equal(asManager.cfg.role, 'manager')
    assert.deepEqual(asManager.cfg.identity, lab.identity)
    assert.equal(asManager.cfg.token, secrets.token)
    assert.equal(asManager.cfg.managerToken, secrets.managerToken)
    assert.deepEqual(asManager.cfg.etcd, etcd)
    // Opened by another node, the same promotion gives no secret.
    assert.ok(configAsManager({...w1cfg, nodeKey: generateNodeKey()}, up.record.cert!, up.promotion!, generateNodeKey()).warning)

    m2.store.put('node/w1', up.record)
    const nodes2 = m2.store.values<NodeRecord>('node/')
    const down = changeRole({
      nodes: nodes2,
      cluster: etcdCluster,
      ref: 'w1',
      role: 'worker',
      secrets: m2secrets,
      etcd: undefined,
      isDown: (id) => id === 'm1',
      selfId: 'm2',
      now: Date.now(),
    })
    assert.ok(checkNodeCert(lab.identity.publicKey, 'w1', key.publicKey, 'worker', down.record.cert!))
    const demoted = configAsWorker(asManager.cfg, down.record.cert!)
    assert.equal(demoted.role, 'worker')
    for (const k of ['identity', 'token', 'managerToken', 'etcd'] as const) assert.equal(k in demoted, false, `${k} is gone`)
    assert.deepEqual(demoted.nodeKey, key, 'its own node key stays')
  })

  it('a manager without the secrets refuses a manager join before recording anything', async () => {
    const bare = await lab.manager('m3', {
      gossip: {join: {identity: lab.identity, tokens: () => [{token: parseToken(secrets.managerToken), role: 'manager'}]}},
    })
    await assert.rejects(
      requestJoin({
        manager: {addr: bare.addr, port: bare.port},
        token: secrets.managerToken,
        node: {id: 'm4', name: 'm4', addr: lab.newAddr(), gossipPort: 1, mtu: 1500, pubKey: generateNodeKey().publicKey},
      }),
      {message: 'join refused: this manager cannot admit managers'},
    )
    assert.equal(bare.store.get('node/m4'), undefined)
  })
})

describe('a join token rotated on one manager reaches the others', () => {
  it('one record per other manager; each opens only its own, and only for the identity it holds', () => {
    const s = {identity: lab.identity, token: lab.token.text, managerToken: generateToken(lab.identity.publicKey).text}
    const rotated = {...s, token: rotateToken(s.token).text}
    const k2 = generateNodeKey()
    const k3 = generateNodeKey()
    const recs = secretsFor(
      [
        {id: 'm1', pubKey: generateNodeKey().publicKey},
        {id: 'm2', pubKey: k2.publicKey},
        {id: 'm3', pubKey: k3.publicKey},
        {id: 'old'},
      ],
      'm1',
      rotated,
    )
    assert.deepEqual(
      recs.map((r) => r.key),
      ['secrets/m2', 'secrets/m3'],
    )
    const [r2, r3] = recs.map((r) => r.value)
    assert.deepEqual(adoptedTokens(k2, lab.identity.publicKey, r2), {token: rotated.token, managerToken: s.managerToken})
    assert.equal(adoptedTokens(k2, lab.identity.publicKey, r3), undefined, "another manager's copy")
    assert.equal(adoptedTokens(k3, generateNodeKey().publicKey, r3), undefined, 'another identity')
    assert.equal(adoptedTokens(k3, lab.identity.publicKey, {sealed: 7}), undefined)
    assert.equal(adoptedTokens(k3, lab.identity.publicKey, null), undefined)
  })
})
