// `network connect` / `disconnect` as the agent API runs them (src/agent/attach-wait.ts), on a
// real store and the real manager: the answer waits for the report of the node that wires the
// namespace (here node b, whose reports are written into the store as gossip would bring them),
// and a refusal or silence leaves no attachment behind.
import assert from 'node:assert/strict'
import {beforeEach, test} from 'node:test'
import {connectAndWait, disconnectAndWait, attachTimeout, type AttachWaitContext} from '../../src/agent/attach-wait.js'
import {ClusterReader} from '../../src/store/cluster-reader.js'
import type {Manager} from '../../src/manager/manager.js'
import type {AttachmentStatus, NetworkAttachment} from '../../src/model/types.js'
import {keyOf} from '../../src/store/keys.js'
import type {Store} from '../../src/store/store.js'
import {managerFixture} from './manager-fixture.js'

let m: Manager
let store: Store
let ctx: AttachWaitContext

beforeEach(() => {
  ;({store, m} = managerFixture('sn-attach-wait-', [
    ['a', '172.30.0.11'],
    ['b', '172.30.0.12'],
  ]))
  m.createNetwork({name: 'att', subnet: '10.30.0.0/24', attachable: true})
  ctx = {
    controller: new ClusterReader(store, 'a'),
    write: async (fn) => fn(m),
    changes: (fn) => store.onChange(() => fn()),
    durable: () => store.sync(),
  }
})

const REQ = {network: 'att', netns: '/run/netns/blue', node: 'n-b'}
/** What node b reports about the attachment, as its gossip would bring it here. */
const report = (id: string, state: AttachmentStatus['state'], message?: string) =>
  store.put(keyOf('attachmentstatus', id), {id, nodeId: 'b', state, ...(message ? {message} : {}), updatedAt: Date.now()})
/** The attachment the call is waiting on, once the manager has written it. */
const written = () => m.attachments()[0]
/** Lets every pending callback run: a promise still pending after this is waiting on something. */
const settle = () => new Promise((r) => setImmediate(r))

async function pending<T>(p: Promise<T>): Promise<boolean> {
  let done = false
  p.then(
    () => (done = true),
    () => (done = true),
  )
  await settle()
  return !done
}

test('connect answers only once the node reports the namespace attached', async () => {
  const call = connectAndWait(ctx, REQ, 10_000)
  assert.equal(await pending(call), true, 'the record alone is not an answer')
  const a = written()!
  assert.equal(a.nodeId, 'b')
  report(a.id, 'attached')
  const got = await call
  assert.equal(got.id, a.id)
  assert.deepEqual(
    m.attachments().map((x) => x.name),
    ['blue'],
  )
})

test('connect refused by the node: one line naming the node and its reason, the attachment removed', async () => {
  const call = connectAndWait(ctx, REQ, 10_000)
  await settle()
  report(written()!.id, 'failed', "/run/netns/blue is this node's own network namespace")
  await assert.rejects(call, {
    message: "node n-b cannot attach /run/netns/blue: /run/netns/blue is this node's own network namespace",
  })
  assert.deepEqual(m.attachments(), [])
})

test('connect to a path that is no namespace there (gone, and reaped by the manager at once): refused, nothing left', async () => {
  const call = connectAndWait(ctx, REQ, 10_000)
  await settle()
  const id = written()!.id
  report(id, 'gone', '/run/netns/blue is not a network namespace')
  m.reapAttachments()
  await assert.rejects(call, /cannot attach \/run\/netns\/blue: \/run\/netns\/blue is not a network namespace/)
  assert.deepEqual(m.attachments(), [])
  assert.equal(store.get(keyOf('attachmentstatus', id)), undefined)
})

test('connect with no report in time: a timeout that says so, the attachment removed', async () => {
  await assert.rejects(
    connectAndWait(ctx, REQ, 50),
    /node n-b did not attach \/run\/netns\/blue within 0\.05 s.*nothing was attached/,
  )
  assert.deepEqual(m.attachments(), [])
})

test('disconnect answers once the node has removed the interface (its status gone), or says it has not', async () => {
  const a: NetworkAttachment = m.connect(REQ)
  report(a.id, 'attached')
  const call = disconnectAndWait(ctx, 'att', 'blue', 10_000)
  assert.equal(await pending(call), true, 'the record removed is not yet the interface removed')
  assert.deepEqual(m.attachments(), [])
  // The manager leaves a live node's status to that node.
  m.reapAttachments()
  assert.equal(await pending(call), true)
  store.delete(keyOf('attachmentstatus', a.id))
  assert.equal((await call).id, a.id)

  const b = m.connect(REQ)
  report(b.id, 'attached')
  await assert.rejects(disconnectAndWait(ctx, 'att', 'blue', 50), /node n-b did not remove the interface of blue within 0\.05 s/)
  assert.deepEqual(m.attachments(), [], 'removed all the same')
  await assert.rejects(disconnectAndWait(ctx, 'att', 'nope', 50), /has no attachment nope/)
})

test('the timeout of a request: 30 s by default, a whole number of ms within bounds', () => {
  assert.equal(attachTimeout(undefined), 30_000)
  assert.equal(attachTimeout(1500), 1500)
  for (const bad of [0, -1, 1.5, '30', 600_001]) assert.throws(() => attachTimeout(bad), /timeoutMs/)
})
