// node promote / demote racing on a real etcd (one member started by the test): two managers
// demoting each other at the same instant. Each request decides over its own copy, then a
// barrier releases both transactions together; the role change is one transaction serialized
// by guard/roles, so the second decides again, sees the first demotion and is refused. Exactly
// one manager stays, every time.
import assert from 'node:assert/strict'
import {test} from 'node:test'
import {certifyNode, generateIdentity, generateNodeKey} from '../../src/gossip/identity.js'
import {generateToken} from '../../src/gossip/token.js'
import {EtcdBackend} from '../../src/manager/etcd-backend.js'
import {etcdClient} from '../../src/manager/etcd-client.js'
import {changeRoleThrough, withRoles} from '../../src/manager/roles.js'
import {valueProblem} from '../../src/model/shape.js'
import type {NodeRecord} from '../../src/model/types.js'
import {keyOf} from '../../src/store/keys.js'
import {Store} from '../../src/store/store.js'
import {etcdSuite} from './etcd-fixture.js'
import {clusterSpec, nodeRecord} from './model-records.js'

const etcd = etcdSuite()

const identity = generateIdentity()
const secrets = {identity, token: generateToken(identity.publicKey).text, managerToken: generateToken(identity.publicKey).text}
const spec = clusterSpec({store: 'etcd'})

function nodes(): NodeRecord[] {
  return [
    ['m1', 'manager'],
    ['m2', 'manager'],
    ['w1', 'worker'],
  ].map(([id, role], i) => {
    const k = generateNodeKey()
    return nodeRecord(id!, `172.30.0.${11 + i}`, {
      role: role as NodeRecord['role'],
      pubKey: k.publicKey,
      cert: certifyNode(identity, id!, k.publicKey, role as NodeRecord['role']),
    })
  })
}

/** Releases the first `parties` arrivals together, in one turn; later arrivals (a retry) pass at once. */
function barrier(parties: number): () => Promise<void> {
  let waiting: (() => void)[] = []
  let open = false
  return () => {
    if (open) return Promise.resolve()
    return new Promise<void>((release) => {
      waiting.push(release)
      if (waiting.length < parties) return
      open = true
      for (const r of waiting) r()
      waiting = []
    })
  }
}

/** Two managers of one cluster (their own prefix), each with its own gossip store holding the same nodes. */
function managers(prefix: string, recs: NodeRecord[], gate: () => Promise<void>) {
  return ['m1', 'm2'].map((id) => {
    const local = etcd.keep(new Store(etcd.dir('sn-etcd-roles-'), id, {validate: valueProblem, reapIntervalMs: 0}).open())
    for (const n of recs) local.put(keyOf('node', n.id), n)
    const client = etcd.keep(etcdClient({endpoints: [etcd.endpoint], prefix}))
    const backend = etcd.keep(
      new EtcdBackend({
        client,
        prefix,
        local,
        selfId: id,
        endpoints: [etcd.endpoint],
        beforeCommit: async (what) => {
          if (what === 'role') await gate()
        },
      }),
    )
    return {id, local, backend}
  })
}

test('two managers demoting each other at the same instant leave exactly one manager (20 times)', async () => {
  const outcomes: string[] = []
  for (let rep = 0; rep < 20; rep++) {
    const recs = nodes()
    const [m1, m2] = managers(`/swarmnet/roles-${rep}/`, recs, barrier(2))
    const demote = (by: typeof m1, other: string) =>
      changeRoleThrough(by!.backend, by!.local, {
        nodes: () => by!.local.values<NodeRecord>('node/'),
        cluster: spec,
        ref: other,
        role: 'worker',
        secrets,
        etcd: undefined,
        isDown: () => false,
        selfId: by!.id,
      })
    const results = await Promise.allSettled([demote(m1, 'm2'), demote(m2, 'm1')])
    const won = results.filter((r) => r.status === 'fulfilled')
    const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected')
    assert.equal(won.length, 1, `rep ${rep}: exactly one demotion holds (${results.map((r) => r.status).join(', ')})`)
    const err = lost[0]!.reason as Error
    assert.match(err.message, /^this node \(m[12]\) is no longer a manager: another manager demoted it$/)
    // What etcd holds, over the roles the nodes joined with: one manager, the winner.
    const roles = await m1!.backend.roles()
    const left = withRoles(recs, roles).filter((n) => n.role === 'manager')
    const winner = results[0]!.status === 'fulfilled' ? m1! : m2!
    assert.deepEqual(
      left.map((n) => n.id),
      [winner.id],
    )
    // The gossip record follows the transaction on the winner's side, re-certified as a worker.
    const loserId = winner.id === 'm1' ? 'm2' : 'm1'
    assert.equal(winner.local.get<NodeRecord>(keyOf('node', loserId))?.role, 'worker')
    outcomes.push(winner.id)
  }
  // Both orders happen or not, the count is the point; the figure goes in the report.
  console.log(
    `winners over 20 races: m1 ${outcomes.filter((w) => w === 'm1').length}, m2 ${outcomes.filter((w) => w === 'm2').length}`,
  )
})

test('a promotion and a demotion racing are taken one after the other: both hold when they fit', async () => {
  const recs = nodes()
  const [m1, m2] = managers('/swarmnet/roles-mixed/', recs, barrier(2))
  const change = (by: typeof m1, ref: string, role: NodeRecord['role']) =>
    changeRoleThrough(by!.backend, by!.local, {
      nodes: () => by!.local.values<NodeRecord>('node/'),
      cluster: spec,
      ref,
      role,
      secrets,
      etcd: role === 'manager' ? {endpoints: [etcd.endpoint], prefix: '/swarmnet/roles-mixed/'} : undefined,
      isDown: () => false,
      selfId: by!.id,
    })
  // m1 promotes w1 while m2 demotes m1: whichever goes first, the other still fits (m2 stays a manager).
  const results = await Promise.allSettled([change(m1, 'w1', 'manager'), change(m2, 'm1', 'worker')])
  const roles = await m1!.backend.roles()
  const byId = new Map(withRoles(recs, roles).map((n) => [n.id, n.role]))
  assert.equal(byId.get('m1'), 'worker')
  assert.equal(byId.get('m2'), 'manager')
  // The promotion by m1 holds only if it was taken before m1's demotion.
  if (results[0]!.status === 'fulfilled') assert.equal(byId.get('w1'), 'manager')
  else {
    assert.match((results[0] as PromiseRejectedResult).reason.message, /no longer a manager/)
    assert.equal(byId.get('w1'), 'worker')
  }
  assert.equal(results[1]!.status, 'fulfilled')
})
