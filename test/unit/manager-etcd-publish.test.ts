// etcd as the one authority for desired state, on a real etcd (one member started by the test):
// the leader publishes etcd's state at a revision to gossip (EtcdBackend.mirror), so what one
// manager committed reaches every node even when that manager died before writing gossip, and
// what gossip holds against etcd is replaced whoever wrote it. Replicas order published records
// by the etcd revision in their version, not by clock. Each manager has its own gossip store; a
// replica (a worker) takes the leader's entries the way gossip hands them over (Store.merge).
import assert from 'node:assert/strict'
import {test} from 'node:test'
import {
  certSerial,
  certifyNode,
  checkNodeCert,
  generateIdentity,
  generateNodeKey,
  type KeyPair,
} from '../../src/gossip/identity.js'
import {openSecrets} from '../../src/gossip/manager-secrets.js'
import {revokedKey} from '../../src/gossip/revocation.js'
import {generateToken} from '../../src/gossip/token.js'
import {EtcdBackend} from '../../src/manager/etcd-backend.js'
import {etcdClient, type EtcdSettings} from '../../src/manager/etcd-client.js'
import {ROLES, ROLE_GUARD} from '../../src/manager/etcd-keys.js'
import {startEtcdManager, type EtcdManager} from '../../src/manager/etcd-manager.js'
import {NOBODY_DOWN} from '../../src/membership/view.js'
import {changeRole, promotionKey, type Promotion, type RolePublisher} from '../../src/manager/roles.js'
import {valueProblem} from '../../src/model/shape.js'
import type {NodeRecord, Service} from '../../src/model/types.js'
import {keyOf} from '../../src/store/keys.js'
import {Store} from '../../src/store/store.js'
import {etcdSuite} from './etcd-fixture.js'
import {clusterSpec, nodeRecord, serviceRecord} from './model-records.js'

const etcd = etcdSuite()
let n = 0

const identity = generateIdentity()
const secrets = {identity, token: generateToken(identity.publicKey).text, managerToken: generateToken(identity.publicKey).text}
const spec = clusterSpec({store: 'etcd'})

/** A cluster of its own: m1, m2 managers, w1 a worker (with its node key, to open a promotion). */
function cluster() {
  const prefix = `/swarmnet/publish-${++n}/`
  const keys = new Map<string, KeyPair>()
  const recs = (
    [
      ['m1', 'manager'],
      ['m2', 'manager'],
      ['w1', 'worker'],
    ] as const
  ).map(([id, role], i) => {
    const k = generateNodeKey()
    keys.set(id, k)
    return nodeRecord(id, `172.30.0.${11 + i}`, {role, pubKey: k.publicKey, cert: certifyNode(identity, id, k.publicKey, role)})
  })
  const settings: EtcdSettings = {endpoints: [etcd.endpoint], prefix}
  const store = (id: string) => {
    return etcd.keep(new Store(etcd.dir('sn-etcd-pub-'), id, {validate: valueProblem, reapIntervalMs: 0}).open())
  }
  const manager = (id: string, down: (id: string) => boolean = () => false) => {
    const local = store(id)
    for (const r of recs) local.put(keyOf('node', r.id), r)
    const client = etcd.keep(etcdClient(settings))
    const membership = {isDown: down, downNow: down}
    const backend = etcd.keep(new EtcdBackend({client, prefix, local, selfId: id, endpoints: [etcd.endpoint], membership}))
    return {id, local, backend, client}
  }
  const pub: RolePublisher = {secrets: () => secrets, etcd: () => settings}
  return {recs, keys, settings, manager, store, pub}
}

/** A replicated service's replica count as a store holds it. */
const replicas = (s: Store, id: string) =>
  (s.get<Service>(keyOf('service', id))?.mode as {replicas?: number} | undefined)?.replicas

/** The whole of a's store handed to b, as gossip would (anti-entropy sends every entry that beats b's). */
const replicate = (from: Store, to: Store) => to.merge(from.all())

test('a role committed to etcd by a manager that dies before writing gossip reaches every node', async () => {
  const c = cluster()
  const m1 = c.manager('m1')
  const m2 = c.manager('m2')
  const w1 = c.store('w1')
  replicate(m2.local, w1)
  await m1.backend.importRecords([{key: 'cluster', value: spec}])
  // m1 promotes w1 exactly as `node promote` does (changeRoleThrough): the transaction over roles/
  // commits; then m1 dies before the gossip record is written (apply never runs), client and all.
  let applied = false
  await m1.backend.changeRole((roles) => {
    const ch = changeRole({
      nodes: m1.local.values<NodeRecord>('node/').map((r) => ({...r, role: roles.get(r.id) ?? r.role})),
      cluster: spec,
      ref: 'w1',
      role: 'manager',
      secrets,
      etcd: c.settings,
      isDown: () => false,
      selfId: 'm1',
      now: Date.now(),
    })
    return {nodeId: ch.record.id, role: ch.record.role, apply: () => void (applied = true)}
  })
  assert.equal(applied, true)
  m1.backend.close()
  m1.client.close()
  m1.local.close()
  assert.equal((await m2.backend.roles()).get('w1'), 'manager', 'etcd holds the promotion')
  assert.equal(m2.local.get<NodeRecord>(keyOf('node', 'w1'))?.role, 'worker', 'gossip does not yet')

  // m2 leads: one pass publishes etcd's roles.
  await m2.backend.mirror(c.pub)
  replicate(m2.local, w1)
  for (const s of [m2.local, w1]) {
    const rec = s.get<NodeRecord>(keyOf('node', 'w1'))!
    assert.equal(rec.role, 'manager')
    assert.ok(checkNodeCert(identity.publicKey, 'w1', rec.pubKey!, 'manager', rec.cert!), 'certified as a manager')
    // The old worker certificate is revoked, and w1 can open the secrets it needs as a manager.
    assert.ok(s.get(revokedKey(certSerial(c.recs[2]!.cert!))), 'the worker certificate is revoked')
    const p = s.get<Promotion>(promotionKey('w1'))!
    assert.equal(p.etcd.prefix, c.settings.prefix)
    assert.equal(openSecrets(c.keys.get('w1')!, p.sealed)?.managerToken, secrets.managerToken)
  }
  // Published once: the next pass finds nothing to change.
  assert.equal((await m2.backend.mirror(c.pub)).changed, 0)
})

test('a gossip record forged or left by a dead manager against etcd is replaced, and replicas keep etcd’s', async () => {
  const c = cluster()
  const m2 = c.manager('m2')
  const w1 = c.store('w1')
  await m2.backend.importRecords([{key: 'cluster', value: spec}])
  const net = await m2.backend.write((m) => m.createNetwork({name: 'net'}))
  const svc = await m2.backend.write((m) =>
    m.createService({name: 'web', mode: 'replicated', replicas: 1, networks: ['net'], command: ['sleep', '1']}),
  )
  // etcd: m1 demoted (roles/m1 = worker), as a role change writes it (guard/roles bumped in the same transaction).
  await m2.backend.ns
    .put(ROLES + 'm1')
    .value('worker')
    .exec()
  await m2.backend.ns.put(ROLE_GUARD).value(String(Date.now())).exec()
  replicate(m2.local, w1)

  // m1, demoted in etcd and then dead, had written in its own store (its clock past everything it
  // had seen) a manager record for itself re-certified by the identity it held, and a changed
  // service with a revision far beyond etcd's: both reach the leader's store and the replica.
  const m1 = c.store('m1')
  replicate(m2.local, m1)
  const forgedCert = certifyNode(identity, 'm1', c.recs[0]!.pubKey!, 'manager')
  m1.put(keyOf('node', 'm1'), {...c.recs[0]!, cert: forgedCert})
  const forged: Service = {...m1.get<Service>(keyOf('service', svc.id))!, mode: {replicas: 7}}
  m1.put(keyOf('service', svc.id), forged, 1_000_000_000)
  const stale: Service = {...forged, mode: {replicas: 9}}
  replicate(m1, m2.local)
  replicate(m1, w1)
  assert.equal(replicas(w1, svc.id), 7)

  await m2.backend.mirror(c.pub)
  replicate(m2.local, w1)
  for (const s of [m2.local, w1]) {
    assert.equal(replicas(s, svc.id), 1, 'the service as etcd holds it')
    const rec = s.get<NodeRecord>(keyOf('node', 'm1'))!
    assert.equal(rec.role, 'worker', 'm1 as etcd holds it')
    assert.ok(checkNodeCert(identity.publicKey, 'm1', rec.pubKey!, 'worker', rec.cert!))
    assert.ok(s.get(revokedKey(certSerial(forgedCert))), 'the forged manager certificate is revoked')
  }

  // Replicas order published state by revision, not clock: the service as m1 last wrote it
  // unpublished (a clock far ahead, no revision), coming back from m1 that was away, wins nowhere.
  replicate(m2.local, m1)
  m1.put(keyOf('service', svc.id), stale)
  assert.ok(m1.entry(keyOf('service', svc.id))!.version.clock > m2.local.entry(keyOf('service', svc.id))!.version.clock)
  const fresh = c.store('w2')
  replicate(m2.local, fresh)
  replicate(m1, fresh)
  replicate(m1, w1)
  assert.equal(replicas(fresh, svc.id), 1)
  assert.equal(replicas(w1, svc.id), 1)
  // A later commit (another manager's, copied to its store at its revision, below the forged one
  // the correction had to beat) reaches the replicas with the leader's next pass.
  const m3 = c.manager('m3')
  replicate(m2.local, m3.local)
  await m3.backend.write((m) => m.scaleService('web', 3))
  replicate(m3.local, w1)
  replicate(m3.local, m2.local)
  await m2.backend.mirror(c.pub)
  replicate(m2.local, w1)
  assert.equal(replicas(w1, svc.id), 3)
  assert.equal(w1.get(keyOf('network', net.id)) !== undefined, true)
})

test('after compaction past its revision, a new leader reads etcd again and converges', async () => {
  const c = cluster()
  const m1 = c.manager('m1')
  const m2 = c.manager('m2')
  await m1.backend.importRecords([{key: 'cluster', value: spec}])
  await m1.backend.write((m) => m.createNetwork({name: 'net'}))
  // m2, a standby, has its copy at this revision; then its watch breaks (a network cut).
  await m2.backend.write(() => undefined)
  const at = m2.backend.cache.revision
  m2.backend.cache.drop()
  const listings = m2.backend.cache.listings
  // Meanwhile m1 creates a service and promotes w1, and dies before either reaches gossip; etcd
  // compacts its history past m2's revision.
  const late = serviceRecord('0123456789abcdef', [], {name: 'late'})
  await m1.backend.ns.put('state/service/0123456789abcdef').value(JSON.stringify(late)).exec()
  await m1.backend.ns
    .put(ROLES + 'w1')
    .value('manager')
    .exec()
  const last = await m1.backend.ns.put(ROLE_GUARD).value(String(Date.now())).exec()
  await m1.backend.ns.kv.compact({revision: last.header.revision, physical: true})
  assert.ok(Number(last.header.revision) > at + 2)
  m1.backend.close()
  m1.client.close()

  await m2.backend.mirror(c.pub)
  assert.equal(m2.backend.cache.listings, listings + 1, 'the copy was read again whole')
  assert.ok(m2.backend.cache.revision >= Number(last.header.revision))
  assert.equal(m2.local.get<Service>('service/0123456789abcdef')?.name, 'late')
  assert.equal(m2.local.entry('service/0123456789abcdef')?.version.rev, Number(last.header.revision) - 2)
  assert.equal(m2.local.get<NodeRecord>(keyOf('node', 'w1'))?.role, 'manager')
})

test('a node removed by a manager that dies before its gossip record spreads is removed on every node', async () => {
  const c = cluster()
  // w1 is down: m1 may remove it. m1 commits the removal; the record it writes stays in its own
  // store, which dies with it before gossip carries anything (it is never replicated here).
  const m1 = c.manager('m1', (id) => id === 'w1')
  const m2 = c.manager('m2')
  const w2 = c.store('w2')
  await m1.backend.importRecords([{key: 'cluster', value: spec}])
  await m1.backend.write((m) => m.removeNode('w1'))
  assert.equal(m1.local.get<NodeRecord>(keyOf('node', 'w1'))?.state, 'left')
  m1.backend.close()
  m1.client.close()
  m1.local.close()
  assert.equal(m2.local.get<NodeRecord>(keyOf('node', 'w1'))?.state, 'ready')

  await m2.backend.mirror(c.pub)
  replicate(m2.local, w2)
  for (const s of [m2.local, w2]) {
    assert.equal(s.get<NodeRecord>(keyOf('node', 'w1'))?.state, 'left')
    assert.ok(s.get(revokedKey(certSerial(c.recs[2]!.cert!))), 'its certificate is revoked')
  }
  assert.equal((await m2.backend.mirror(c.pub)).changed, 0)
})

/** Resolves once cond holds; fails with what after ms (a margin for a loaded machine, not a speed). */
async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`not within ${ms} ms: ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

test('a leader demoted in etcd stands aside: the next leader publishes its record at once, which reaches it', async () => {
  const c = cluster()
  const running: EtcdManager[] = []
  const log: string[] = []
  // Two managers' agents as the node's role starts them (manager-role.ts), each with its gossip store.
  const start = (id: string) => {
    const local = c.store(id)
    for (const r of c.recs) local.put(keyOf('node', r.id), r)
    const ha = startEtcdManager({
      settings: c.settings,
      local,
      selfId: id,
      membership: NOBODY_DOWN,
      log: (m) => log.push(`${id}: ${m}`),
      roles: c.pub,
      leadership: {ttlSec: 2, pollMs: 100},
      intervalMs: 200,
    })
    running.push(ha)
    return {id, local, ha}
  }
  try {
    const m1 = start('m1')
    await m1.ha.backend.importRecords([{key: 'cluster', value: spec}])
    await until(() => m1.ha.leadership.isLeader, 20_000, 'm1 leads')
    const m2 = start('m2')
    await until(() => m2.ha.leadership.leader === 'm1', 20_000, 'm2 stands by under m1')
    // etcd: m1 demoted by a manager that died between its commit and its gossip record (roles/m1 =
    // worker, guard/roles bumped, as a role change writes them). Only a leader publishes a record
    // etcd contradicts, and m1 cannot publish its own.
    await m2.ha.backend.ns
      .put(ROLES + 'm1')
      .value('worker')
      .exec()
    await m2.ha.backend.ns.put(ROLE_GUARD).value(String(Date.now())).exec()
    // m1 stands aside, m2 leads and publishes m1's record as a worker's (re-certified).
    await until(
      () => m2.local.get<NodeRecord>(keyOf('node', 'm1'))?.role === 'worker',
      20_000,
      `m2 publishes m1 demoted\n${log.join('\n')}`,
    )
    assert.equal(m1.ha.leadership.isLeader, false, 'the demoted manager no longer leads')
    assert.equal(m2.ha.leadership.isLeader, true)
    assert.ok(log.some((l) => l.startsWith('m1: leader: etcd no longer counts this node as a manager')))
    // Gossip carries it to m1, whose agent follows its record (node-role.ts follow) and stops managing.
    replicate(m2.local, m1.local)
    const rec = m1.local.get<NodeRecord>(keyOf('node', 'm1'))!
    assert.equal(rec.role, 'worker')
    assert.ok(checkNodeCert(identity.publicKey, 'm1', rec.pubKey!, 'worker', rec.cert!), 'certified as a worker')
    assert.ok(m1.local.get(revokedKey(certSerial(c.recs[0]!.cert!))), 'its manager certificate is revoked')
    // Standing aside, it claims nothing while etcd says so, though the role is free to take.
    await m2.ha.leadership.stop()
    await new Promise((r) => setTimeout(r, 3000))
    assert.equal(m1.ha.leadership.isLeader, false, 'a manager demoted in etcd does not claim the role')
  } finally {
    for (const ha of running.reverse()) await ha.stop()
  }
})
