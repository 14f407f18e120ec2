// The manager's watch-fed copy of etcd (src/manager/etcd-cache.ts) against a real etcd (one
// member started by the test): after random sequences of puts and deletes from two clients,
// the copy, once it holds the last write's revision, equals a fresh read of the whole prefix;
// also after its watch was dropped while etcd compacted the revisions it would resume from
// (it reads the prefix again). And through the backend: a request's own commit is in the copy
// the next request reads (read-your-writes), with no read of the prefix per request; and the
// index requests decide over (etcd-index.ts), shared by all of a manager's requests and kept from
// the watch, its own commits and the node's store, equals one built by a full scan after random
// sequences of requests on two managers (the other's seen only through the watch), refused
// requests, bursts of requests on one manager (sent as one transaction), raw writes and node
// changes, without being built again.
import assert from 'node:assert/strict'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {after, before, test} from 'node:test'
import fc from 'fast-check'
import {Etcd3} from 'etcd3'
import {EtcdBackend} from '../../src/manager/etcd-backend.js'
import {EtcdCache} from '../../src/manager/etcd-cache.js'
import {etcdClient} from '../../src/manager/etcd-client.js'
import {StateIndex} from '../../src/store/state-index.js'
import {isUserError} from '../../src/model/errors.js'
import type {Network, NodeRecord} from '../../src/model/types.js'
import type {Json} from '../../src/store/json.js'
import {valueProblem} from '../../src/model/shape.js'
import {keyOf} from '../../src/store/keys.js'
import {Store} from '../../src/store/store.js'
import {startTestEtcd, type TestEtcd} from './etcd-fixture.js'
import {clusterSpec, etcdClusterNodes} from './model-records.js'
import {shape} from './state-index-shape.js'

let etcd: TestEtcd
const clients: Etcd3[] = []
const closers: (() => void)[] = []
const dirs: string[] = []
let n = 0

before(async () => {
  etcd = await startTestEtcd()
})
after(async () => {
  for (const c of closers) c()
  for (const c of clients) c.close()
  await etcd?.stop()
  for (const d of dirs) rmSync(d, {recursive: true, force: true})
})

/** Two managers on one prefix, each with its own gossip store holding the cluster's nodes. */
async function twoManagers(prefix: string, beforeCommit?: () => Promise<void>): Promise<[EtcdBackend, EtcdBackend]> {
  const managers = ['m1', 'm2'].map((id) => {
    const dir = mkdtempSync(join(tmpdir(), 'sn-etcd-cache-'))
    dirs.push(dir)
    const local = new Store(dir, id, {validate: valueProblem, reapIntervalMs: 0}).open()
    closers.push(() => local.close())
    for (const node of etcdClusterNodes()) local.put(keyOf('node', node.id), node)
    const c = etcdClient({endpoints: [etcd.endpoint], prefix})
    clients.push(c)
    const b = new EtcdBackend({client: c, prefix, local, selfId: id, endpoints: [etcd.endpoint], beforeCommit})
    closers.push(() => b.close())
    return b
  })
  return managers as [EtcdBackend, EtcdBackend]
}

const client = () => {
  const c = new Etcd3({hosts: etcd.endpoint})
  clients.push(c)
  return c
}

type Op = {by: 0 | 1; key: string; del: boolean; value: string}
const opArb: fc.Arbitrary<Op> = fc.record({
  by: fc.constantFrom(0 as const, 1 as const),
  // Desired-state keys (parsed into records) and others (allocations).
  key: fc.constantFrom('state/service/a', 'state/service/b', 'state/task/t1', 'state/task/t2', 'alloc/x', 'alloc/y'),
  del: fc.boolean(),
  value: fc.string({maxLength: 8}),
})

/** A fresh read of the prefix, as the copy should hold it. */
async function fresh(c: Etcd3, prefix: string): Promise<[string, string, string][]> {
  const r = await c.namespace(prefix).getAll().prefix('').exec()
  return r.kvs.map((kv) => [kv.key.toString(), kv.value.toString(), kv.mod_revision] as [string, string, string]).sort()
}

async function copyOf(cache: EtcdCache): Promise<[string, string, string][]> {
  const s = await cache.snapshot()
  for (const [k, v] of s.records) assert.deepEqual(v, JSON.parse(s.kvs.get(`state/${k}`)!.value), `record ${k} parsed`)
  assert.equal(s.records.size, [...s.kvs.keys()].filter((k) => k.startsWith('state/')).length)
  return [...s.kvs].map(([k, v]) => [k, v.value, v.mod] as [string, string, string]).sort()
}

/** The writes, each from one of two clients; returns the revision of the last. */
async function play(cs: Etcd3[], prefix: string, ops: Op[]): Promise<number> {
  let rev = 0
  for (const o of ops) {
    const ns = cs[o.by]!.namespace(prefix)
    const value = JSON.stringify({v: o.value})
    const r = o.del ? await ns.delete().key(o.key).exec() : await ns.put(o.key).value(value).exec()
    rev = Number(r.header.revision)
  }
  return rev
}

test('the copy equals a fresh read of the prefix after random writes and deletes from two clients', async () => {
  const cs = [client(), client()]
  await fc.assert(
    fc.asyncProperty(fc.array(opArb, {minLength: 1, maxLength: 25}), fc.nat(25), async (ops, cut) => {
      const prefix = `/cache-${++n}/`
      // Some writes before the copy is first read, the rest while it watches.
      const at = Math.min(cut, ops.length)
      await play(cs, prefix, ops.slice(0, at))
      const cache = new EtcdCache(cs[0]!.namespace(prefix))
      closers.push(() => cache.close())
      try {
        await cache.snapshot()
        const rev = await play(cs, prefix, ops.slice(at))
        assert.ok(await cache.reach(rev, 5000), `the copy reached revision ${rev}`)
        assert.deepEqual(await copyOf(cache), await fresh(cs[1]!, prefix))
        assert.equal(cache.listings, 1, 'read whole once, then fed by its watch')
      } finally {
        cache.close()
      }
    }),
    {numRuns: 40},
  )
})

test("a prefix larger than one gRPC message by default (4 MB) is read whole by a manager's client", async () => {
  // 10,000 services of 3 tasks are ~30 MB of records: a manager (re)starting reads them in one range read.
  const prefix = `/cache-${++n}/`
  const writer = client()
  const big = JSON.stringify({pad: 'x'.repeat(1000 * 1000)})
  for (let i = 0; i < 5; i++) await writer.namespace(prefix).put(`state/service/big${i}`).value(big).exec()
  const c = etcdClient({endpoints: [etcd.endpoint], prefix})
  clients.push(c)
  const cache = new EtcdCache(c.namespace(prefix))
  closers.push(() => cache.close())
  const s = await cache.snapshot()
  assert.equal(s.records.size, 5)
  cache.close()
})

test('a copy whose watch was dropped while etcd compacted reads the prefix again, and equals a fresh read', async () => {
  const cs = [client(), client()]
  await fc.assert(
    fc.asyncProperty(fc.array(opArb, {minLength: 1, maxLength: 15}), fc.array(opArb, {maxLength: 15}), async (a, b) => {
      const prefix = `/cache-${++n}/`
      const cache = new EtcdCache(cs[0]!.namespace(prefix))
      closers.push(() => cache.close())
      try {
        await play(cs, prefix, a)
        await cache.snapshot()
        // The watch is gone (as when its stream breaks); meanwhile more writes, and etcd forgets
        // the revisions it would have resumed from.
        cache.drop()
        const rev = await play(cs, prefix, [...b, {by: 1, key: 'alloc/z', del: false, value: 'last'}])
        await cs[1]!.kv.compact({revision: String(rev), physical: true})
        assert.deepEqual(await copyOf(cache), await fresh(cs[1]!, prefix))
        assert.equal(cache.listings, 2, 'read whole again after the watch was dropped')
        // And it watches again from there.
        const rev2 = await play(cs, prefix, b)
        if (b.length > 0) assert.ok(await cache.reach(rev2, 5000))
        assert.deepEqual(await copyOf(cache), await fresh(cs[1]!, prefix))
      } finally {
        cache.close()
      }
    }),
    {numRuns: 15},
  )
})

test('through the backend: each request reads its own commits from the copy, other managers reach it by the watch', async () => {
  const prefix = `/cache-${++n}/`
  const managers = await twoManagers(prefix)
  const [m1, m2] = managers
  await m1.importRecords([{key: 'cluster', value: clusterSpec()}])
  await m1.write((m) => m.createNetwork({name: 'net', subnet: '10.7.0.0/24'}))
  for (let i = 0; i < 10; i++) {
    const by = i % 2 === 0 ? m1 : m2
    // Each create right after the last, alternating managers: the name check reads what was committed.
    await by.write((m) => m.createService({name: `s${i}`, mode: 'replicated', replicas: 1, networks: ['net'], command: []}))
    const names = await by.write((m) => m.read.services().map((s) => s.name))
    assert.deepEqual(names.sort(), Array.from({length: i + 1}, (_, j) => `s${j}`).sort())
  }
  const want = [...(await m1.records())].sort()
  for (const b of managers) {
    const s = await b.cache.snapshot()
    assert.deepEqual([...s.records].sort(), want)
    assert.equal(b.cache.listings, 1, 'one read of the prefix; the rest came by the watch')
  }
})

type IndexOp =
  | {op: 'create'; by: 0 | 1; name: string; replicas: number}
  | {op: 'scale'; by: 0 | 1; name: string; replicas: number}
  | {op: 'rm'; by: 0 | 1; name: string}
  | {op: 'raw'; name: string}
  | {op: 'race'; name: string}
  | {op: 'node'; by: 0 | 1; id: string; state: NodeRecord['state']}
  | {op: 'burst'; by: 0 | 1; reqs: BurstReq[]}
  | {op: 'pipe'; reqs: (BurstReq & {by: 0 | 1})[]}
type BurstReq = {op: 'create' | 'scale'; name: string; replicas: number} | {op: 'rm'; name: string; replicas?: undefined}

const svcName = fc.constantFrom('a', 'b', 'c')
const by = fc.constantFrom(0 as const, 1 as const)
const indexOpArb: fc.Arbitrary<IndexOp> = fc.oneof(
  {weight: 3, arbitrary: fc.record({op: fc.constant('create' as const), by, name: svcName, replicas: fc.nat(3)})},
  {weight: 2, arbitrary: fc.record({op: fc.constant('scale' as const), by, name: svcName, replicas: fc.nat(4)})},
  fc.record({op: fc.constant('rm' as const), by, name: svcName}),
  // A record written into etcd by no manager of this test (another version, a hand): the watch brings it.
  fc.record({op: fc.constant('raw' as const), name: svcName}),
  // Both managers create one name at once: one transaction loses, its decision is taken off the
  // loser's index, it decides again and is refused (or both are, the name being taken already).
  fc.record({op: fc.constant('race' as const), name: svcName}),
  // Requests made at once on one manager: decided one after another, sent as one transaction
  // (group commit), some refused in it (a name taken by the one before, a service gone).
  fc.record({
    op: fc.constant('burst' as const),
    by,
    reqs: fc.array(
      fc.oneof(
        fc.record({op: fc.constantFrom('create' as const, 'scale' as const), name: svcName, replicas: fc.nat(3)}),
        fc.record({op: fc.constant('rm' as const), name: svcName}),
      ),
      {minLength: 2, maxLength: 6},
    ),
  }),
  // Requests on both managers, each made a turn after the one before: a manager's next batch is
  // decided while its last is in flight (pipelined) and goes beside it, or waits when it touches
  // the same keys; the other manager's race with both.
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('pipe' as const),
      reqs: fc.array(
        fc.oneof(
          fc.record({
            op: fc.constantFrom('create' as const, 'scale' as const),
            by,
            name: fc.constantFrom('a', 'b', 'c', 'd', 'e'),
            replicas: fc.nat(3),
          }),
          fc.record({op: fc.constant('rm' as const), by, name: fc.constantFrom('a', 'b', 'c', 'd', 'e')}),
        ),
        {minLength: 2, maxLength: 8},
      ),
    }),
  },
  fc.record({
    op: fc.constant('node' as const),
    by,
    id: fc.constantFrom('w1', 'w2'),
    state: fc.constantFrom('ready' as const, 'down' as const),
  }),
)

/** The index a full scan builds: etcd's records read now, and the store's other keys. */
async function scanned(b: EtcdBackend): Promise<StateIndex> {
  const entries: {key: string; value: Json | null}[] = b.local
    .list('')
    .filter((e) => !/^(cluster|network\/|service\/|task\/|attachment\/)/.test(e.key))
  for (const [key, value] of await b.records()) entries.push({key, value})
  return StateIndex.build(entries)
}

/** Records the copies took from their own commits, as decided, instead of decoding the watch's events (over the tests). */
let ownEvents = 0

/** Both copies caught up with etcd: each manager's index equals a scan of etcd and its store, built once. */
async function assertIndexesMatch(ms: EtcdBackend[], raw: EtcdBackend['ns']): Promise<void> {
  const rev = Number((await raw.get('leader').exec()).header.revision)
  for (const b of ms) {
    // (A manager that served no request has not read its copy yet: this reads it.)
    await b.cache.snapshot()
    assert.ok(await b.cache.reach(rev, 5000), 'the copy reached etcd')
    const s = await b.cache.snapshot()
    // The copy as a fresh read finds it, each record as its value parses: also those its own
    // commits put, taken as decided rather than decoded from the watch (EtcdCache.expect).
    const read = await raw.getAll().prefix('').exec()
    const now = read.kvs.map((kv) => [kv.key.toString(), kv.value.toString(), kv.mod_revision] as [string, string, string])
    assert.equal(Number(read.header.revision), s.revision, 'nothing written since')
    assert.deepEqual(await copyOf(b.cache), now.sort())
    ownEvents += b.cache.ownEvents
    const live = b.index.current(s.records)
    const full = await scanned(b)
    assert.deepEqual(shape(live), shape(full))
    for (const net of full.networks.values()) {
      const first = (g: Generator<string>) => [...Array(4)].map(() => g.next().value as string | undefined)
      for (const start of [undefined, 0.25, 0.9])
        assert.deepEqual(
          first(live.pool(net, new Set(), [], []).free(start)),
          first(full.pool(net, new Set(), [], []).free(start)),
          `free addresses from ${start}`,
        )
    }
    assert.equal(b.index.builds, 1, 'built once, then kept from changes')
    assert.equal(b.cache.listings, 1)
  }
}

test('the index shared by requests equals a full scan after random requests on two managers, pipelined ones, raw writes and node changes', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(indexOpArb, {minLength: 1, maxLength: 14}), async (ops) => {
      const prefix = `/cache-${++n}/`
      // A barrier for 'race': both transactions wait until both managers have decided.
      let barrier: {arrived: number; open: () => void; opened: Promise<void>} | undefined
      // During 'pipe': each transaction is held a few ms on its way, so the next request (made a
      // turn later) is decided while it is in flight whatever the machine's load; without it, a
      // fast etcd could answer every batch within the turn and the property would never pipeline.
      let hold = false
      const ms = await twoManagers(prefix, async () => {
        if (hold) await new Promise((r) => setTimeout(r, 5))
        const b = barrier
        if (!b) return
        if (++b.arrived === 2) {
          barrier = undefined
          b.open()
        }
        await b.opened
      })
      await ms[0].importRecords([{key: 'cluster', value: clusterSpec()}])
      await ms[0].write((m) => m.createNetwork({name: 'net', subnet: '10.9.0.0/24'}))
      const raw = ms[0].ns
      let rawId = 0
      for (const o of ops) {
        try {
          if (o.op === 'create')
            await ms[o.by].write((m) =>
              m.createService({name: o.name, mode: 'replicated', replicas: o.replicas, networks: ['net'], command: []}),
            )
          else if (o.op === 'scale') await ms[o.by].write((m) => m.scaleService(o.name, o.replicas))
          else if (o.op === 'rm') await ms[o.by].write((m) => m.removeService(o.name))
          else if (o.op === 'burst') {
            const results = await Promise.allSettled(
              o.reqs.map((r) =>
                ms[o.by].write((m) =>
                  r.op === 'create'
                    ? m.createService({name: r.name, mode: 'replicated', replicas: r.replicas, networks: ['net'], command: []})
                    : r.op === 'scale'
                      ? m.scaleService(r.name, r.replicas)
                      : m.removeService(r.name),
                ),
              ),
            )
            for (const r of results) if (r.status === 'rejected' && !isUserError(r.reason as Error)) throw r.reason
          } else if (o.op === 'pipe') {
            hold = true
            const made: Promise<unknown>[] = []
            for (const r of o.reqs) {
              const p = ms[r.by].write((m) =>
                r.op === 'create'
                  ? m.createService({name: r.name, mode: 'replicated', replicas: r.replicas, networks: ['net'], command: []})
                  : r.op === 'scale'
                    ? m.scaleService(r.name, r.replicas)
                    : m.removeService(r.name),
              )
              // Refused before the others are made: judged below, with them.
              p.catch(() => undefined)
              made.push(p)
              await new Promise((res) => setImmediate(res))
            }
            const results = await Promise.allSettled(made)
            hold = false
            for (const r of results) if (r.status === 'rejected' && !isUserError(r.reason as Error)) throw r.reason
          } else if (o.op === 'race') {
            const exists = [...(await ms[0].records())].some(
              ([k, v]) => k.startsWith('service/') && (v as {name: string}).name === o.name,
            )
            let open = () => {}
            const opened = new Promise<void>((r) => (open = r))
            if (!exists) barrier = {arrived: 0, open, opened}
            const results = await Promise.allSettled(
              ms.map((b) =>
                b.write((m) => m.createService({name: o.name, mode: 'replicated', replicas: 2, networks: ['net'], command: []})),
              ),
            )
            barrier = undefined
            assert.equal(results.filter((r) => r.status === 'fulfilled').length, exists ? 0 : 1, 'one of the racers made it')
            for (const r of results) if (r.status === 'rejected' && !isUserError(r.reason as Error)) throw r.reason
          } else if (o.op === 'node') {
            const local = ms[o.by].local
            const node = local.get<NodeRecord>(keyOf('node', o.id))!
            local.put(keyOf('node', o.id), {...node, state: o.state})
          } else {
            const id = `raw${++rawId}`
            const net = [...(await ms[0].records())].find(([k]) => k.startsWith('network/'))![1] as Network
            await raw.put(`state/service/${id}`).value(
              JSON.stringify({
                id,
                name: `raw-${o.name}-${rawId}`,
                mode: {replicas: 0},
                networks: [net.id],
                command: [],
                endpointMode: 'vip',
                vips: [{networkId: net.id, ip: `10.9.0.${200 + rawId}`}],
                createdAt: 1,
                updatedAt: 1,
              }),
            )
          }
        } catch (e) {
          // Refused (a name taken, a service gone): the request's writes must not stay in the index.
          if (!isUserError(e as Error)) throw e
        }
      }
      await assertIndexesMatch(ms, raw)
      for (const b of ms) b.close()
    }),
    {numRuns: 16},
  )
  // The copies compared above held records of their own commits taken as decided.
  assert.ok(ownEvents > 0, `records taken from own commits: ${ownEvents}`)
})

// Whether a random 'pipe' above goes beside a batch in flight depends on its requests (refused
// ones, touching keys, the other manager) and on timing: this one always does.
test('the index after a batch decided beside another in flight, and one that waited on it, equals a full scan', async () => {
  let calls = 0
  let armed = false
  let open = () => {}
  const opened = new Promise<void>((r) => (open = r))
  // The first held transaction waits until the second one is being sent: both in flight at once.
  const ms = await twoManagers(`/cache-${++n}/`, async () => {
    if (!armed) return
    const call = ++calls
    if (call === 1) await opened
    if (call === 2) open()
  })
  await ms[0].importRecords([{key: 'cluster', value: clusterSpec()}])
  await ms[0].write((m) => m.createNetwork({name: 'net', subnet: '10.9.0.0/24'}))
  const spec = (name: string) => ({name, mode: 'replicated' as const, replicas: 2, networks: ['net'], command: []})
  await ms[0].write((m) => m.createService(spec('a')))
  armed = true
  const b = ms[0].write((m) => m.createService(spec('b')))
  await new Promise((r) => setImmediate(r))
  const c = ms[0].write((m) => m.createService(spec('c')))
  // On b's keys: waits until b lands, then is decided over it.
  const scaled = ms[0].write((m) => m.scaleService('b', 3))
  await Promise.all([b, c, scaled])
  // (The scale, decided again once b lands, may go beside c or wait for it in turn.)
  assert.ok(ms[0].pipelined >= 1, 'c went beside b')
  assert.ok(ms[0].blocked >= 1, "b's scale waited for it")
  // The other manager's create, over its copy fed by the watch.
  await ms[1].write((m) => m.createService(spec('d')))
  await assertIndexesMatch(ms, ms[0].ns)
})

/** How many range reads (gets) etcd has served, from its own metrics. */
async function rangesServed(): Promise<number> {
  const text = await (await fetch(`${etcd.endpoint}/metrics`)).text()
  let n = 0
  for (const line of text.split('\n'))
    if (line.startsWith('grpc_server_handled_total{') && line.includes('grpc_method="Range"')) n += Number(line.split(' ').pop())
  return n
}

test('a request over a current copy is one transaction: no read of etcd before it; a refusal is checked over a caught-up copy', async () => {
  const prefix = `/cache-${++n}/`
  const [m1, m2] = await twoManagers(prefix)
  await m1.importRecords([{key: 'cluster', value: clusterSpec()}])
  await m1.write((m) => m.createNetwork({name: 'net', subnet: '10.8.0.0/24'}))
  const req = (name: string) => ({name, mode: 'replicated' as const, replicas: 1, networks: ['net'], command: []})
  await m1.write((m) => m.createService(req('warm')))
  const before = await rangesServed()
  for (let i = 0; i < 5; i++) await m1.write((m) => m.createService(req(`s${i}`)))
  // The metrics read itself is no gRPC call; the copy was read whole once, before.
  assert.equal((await rangesServed()) - before, 0, 'no range read for five creates')
  // Another manager removes a service and at once this one creates it again: over a copy not
  // yet told of the removal the create would be refused; it is decided again over a caught-up copy.
  for (let i = 0; i < 5; i++) {
    await m2.write((m) => m.removeService(`s${i}`))
    await m1.write((m) => m.createService(req(`s${i}`)))
  }
  // And a name taken is still refused, in one line.
  await assert.rejects(
    m1.write((m) => m.createService(req('s0'))),
    (e: Error) => isUserError(e),
  )
  const names = (await m2.write((m) => m.read.services().map((s) => s.name))).sort()
  assert.deepEqual(names, ['s0', 's1', 's2', 's3', 's4', 'warm'])
})
