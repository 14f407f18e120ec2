// An embedded cluster's desired state is numbered by its one manager (Version.erev), not ordered
// by the Lamport clock that every node's writes advance. A hostile worker lifts every clock to the
// top (gossip bounds one entry's jump, not the sum: this lifts it in one step, what 2^21 bounded
// rounds of its own soft state would do); the manager's later writes still win on a replica, a
// worker cannot stamp a revision, and the manager's revision counter survives a restart. Real
// stores on disk, entries signed by their writers and judged by the authority as gossip judges them.
import assert from 'node:assert/strict'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {after, test} from 'node:test'
import {Authority} from '../../src/gossip/authority.js'
import {certifyNode, generateIdentity, generateNodeKey, signWith, type KeyPair} from '../../src/gossip/identity.js'
import type {NodeRecord} from '../../src/model/types.js'
import {MAX_CLOCK, signedText, type Entry} from '../../src/store/entry.js'
import {keyOf} from '../../src/store/keys.js'
import {Store} from '../../src/store/store.js'
import {nodeRecord} from './model-records.js'

const dir = mkdtempSync(join(tmpdir(), 'sn-erev-'))
const open: Store[] = []
after(() => {
  for (const s of open) s.close()
  rmSync(dir, {recursive: true, force: true})
})

const identity = generateIdentity()
const keys = new Map<string, KeyPair>(['m', 'w', 'r'].map((id) => [id, generateNodeKey()]))
const records: NodeRecord[] = ['m', 'w', 'r'].map((id, i) => {
  const role = id === 'm' ? 'manager' : 'worker'
  const k = keys.get(id)!
  return nodeRecord(id, `172.30.0.${11 + i}`, {role, pubKey: k.publicKey, cert: certifyNode(identity, id, k.publicKey, role)})
})
const sign = (id: string, e: Entry): Entry => ({...e, sig: signWith(keys.get(id)!.privateKey, signedText(e))})

/** The stores' wall clock: tombstones are reaped after 1 s of it. */
let now = 1_000_000
/** A node's store, signing its writes as gossip makes it. */
function store(id: string, sub = ''): Store {
  const s = new Store(join(dir, sub, id), id, {reapIntervalMs: 0, tombstoneTtlMs: 1000, now: () => now}).open()
  s.signer = (e) => signWith(keys.get(id)!.privateKey, signedText(e))
  open.push(s)
  return s
}

/** What gossip would merge of `entries` into `to`: each entry judged by the authority (the refusals returned). */
function deliver(entries: Entry[], to: Store): string[] {
  const authority = new Authority(to, identity.publicKey)
  const refused: string[] = []
  for (const e of entries) {
    const why = authority.refusal(e)
    if (why) refused.push(why)
    else to.merge([e])
  }
  return refused
}
/** Push-pull from `from` to `to`: what beats to's digest, once on from's disk (as gossip offers it). */
async function replicate(from: Store, to: Store): Promise<string[]> {
  await from.sync()
  return deliver(from.since(to.digest()), to)
}

test('a worker that lifts every clock to the top cannot make the embedded manager’s later writes lose', async () => {
  const m = store('m')
  const r = store('r')
  for (const s of [m, r])
    for (const n of records) s.merge([sign(n.id, {key: keyOf('node', n.id), value: n, version: {clock: 1, node: n.id}})])
  m.numberDesired = true
  m.put('service/s1', {id: 's1', name: 'web', replicas: 1})
  assert.equal(m.entry('service/s1')!.version.erev, 1, 'the manager numbers its desired state')
  assert.deepEqual(await replicate(m, r), [])
  assert.equal(r.get<{replicas: number}>('service/s1')?.replicas, 1)

  // The worker's own record, at the highest clock there is: the authority lets it through (its
  // own record, its own role), and every store that merges it has its clock at the top.
  const lift = sign('w', {key: keyOf('node', 'w'), value: records[1]!, version: {clock: MAX_CLOCK, node: 'w'}})
  assert.deepEqual(deliver([lift], m), [])
  assert.deepEqual(deliver([lift], r), [])
  assert.equal(m.clock, MAX_CLOCK, 'the clock stops at the top: it stays a safe integer')

  // The manager scales the service twice: both writes at the same (top) clock, ordered by revision.
  m.put('service/s1', {id: 's1', name: 'web', replicas: 2})
  m.put('service/s1', {id: 's1', name: 'web', replicas: 3})
  m.put('service/s2', {id: 's2', name: 'api', replicas: 1})
  assert.deepEqual(await replicate(m, r), [])
  assert.equal(r.get<{replicas: number}>('service/s1')?.replicas, 3, 'the latest write wins on the replica')
  assert.ok(r.get('service/s2'), 'a new service reaches the replica')

  // A worker cannot number anything: not desired state (a manager's anyway), not its own record.
  const forged = sign('w', {
    key: 'service/s1',
    value: {id: 's1', name: 'evil', replicas: 0},
    version: {clock: MAX_CLOCK, node: 'w', erev: 2 ** 40},
  })
  const own = sign('w', {key: keyOf('node', 'w'), value: records[1]!, version: {clock: 5, node: 'w', erev: 2 ** 40}})
  const refused = deliver([forged, own], r)
  assert.equal(refused.length, 2)
  for (const why of refused) assert.match(why, /^only a manager numbers desired state/)
  assert.equal(r.get<{replicas: number}>('service/s1')?.replicas, 3)

  // The counter is durable: after a restart of the manager's store, its next write goes above.
  const head = m.desiredRevision
  assert.equal(head, 4)
  m.delete('service/s2')
  m.close()
  const again = store('m')
  again.numberDesired = true
  assert.equal(again.desiredRevision, head + 1, 'the tombstone’s revision is restored from the log')
  again.put('service/s1', {id: 's1', name: 'web', replicas: 4})
  assert.equal(again.entry('service/s1')!.version.erev, head + 2)
  assert.deepEqual(await replicate(again, r), [])
  assert.equal(r.get<{replicas: number}>('service/s1')?.replicas, 4)
  assert.equal(r.get('service/s2'), undefined)
  // A replica learns the head as it merges (it would number from there if it were the manager).
  assert.equal(r.desiredRevision, head + 2)
})

test('numbered desired state is deleted for good by revision: a floor the lifted clock cannot block', async () => {
  const m = store('m', 'floor')
  const r = store('r', 'floor')
  for (const s of [m, r])
    for (const n of records) s.merge([sign(n.id, {key: keyOf('node', n.id), value: n, version: {clock: 1, node: n.id}})])
  m.numberDesired = true
  m.put('service/s1', {id: 's1', name: 'web'})
  await replicate(m, r)
  // What a node away keeps of it, offered back after the deletion's tombstone is reaped everywhere.
  const kept = {...r.entry('service/s1')!}
  // The worker lifts every clock to the top; the manager deletes the service there.
  const lift = sign('w', {key: keyOf('node', 'w'), value: records[1]!, version: {clock: MAX_CLOCK, node: 'w'}})
  deliver([lift], m)
  deliver([lift], r)
  m.delete('service/s1')
  assert.deepEqual(await replicate(m, r), [])
  assert.equal(r.get('service/s1'), undefined)
  now += 2000
  assert.equal(m.reap(), 1)
  assert.equal(r.reap(), 1)
  assert.equal(r.deletionFloor, MAX_CLOCK, 'the clock floor is at the top: by clock, no later write could pass')
  assert.equal(r.revisionFloor, 2, 'the revision floor is the deletion’s revision')

  // The deleted version, back from the node that was away: refused by revision, on both.
  for (const s of [m, r]) {
    assert.deepEqual(s.merge([kept]), [])
    assert.match(s.lastRefusal ?? '', /^service\/s1: deleted before its tombstone was reaped \(revision 1 <= 2\)$/)
  }
  // The manager's next writes (at the top clock) pass: a new service, and the deleted key again.
  m.put('service/s2', {id: 's2', name: 'api'})
  m.put('service/s1', {id: 's1', name: 'web again'})
  assert.deepEqual(await replicate(m, r), [])
  assert.ok(r.get('service/s2'), 'a new service passes the floor')
  assert.equal(r.get<{name: string}>('service/s1')?.name, 'web again')

  // The floor outlives a restart, and the manager numbers above it.
  r.close()
  const again = store('r', 'floor')
  assert.equal(again.revisionFloor, 2)
  assert.equal(again.desiredRevision, 4)
})
