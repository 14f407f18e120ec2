// The manager's watch-fed copy of etcd (src/manager/etcd-cache.ts) against a real etcd (one
// member started by the test): after random sequences of puts and deletes from two clients,
// the copy, once it holds the last write's revision, equals a fresh read of the whole prefix;
// also after its watch was dropped while etcd compacted the revisions it would resume from
// (it reads the prefix again). And through the backend: a request's own commit is in the copy
// the next request reads (read-your-writes), with no read of the prefix per request.
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
import {valueProblem} from '../../src/model/shape.js'
import {keyOf} from '../../src/store/keys.js'
import {Store} from '../../src/store/store.js'
import {startTestEtcd, type TestEtcd} from './etcd-fixture.js'
import {clusterSpec, etcdClusterNodes} from './model-records.js'

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
  const managers = ['m1', 'm2'].map((id) => {
    const dir = mkdtempSync(join(tmpdir(), 'sn-etcd-cache-'))
    dirs.push(dir)
    const local = new Store(dir, id, {validate: valueProblem, reapIntervalMs: 0}).open()
    closers.push(() => local.close())
    for (const node of etcdClusterNodes()) local.put(keyOf('node', node.id), node)
    const c = etcdClient({endpoints: [etcd.endpoint], prefix})
    clients.push(c)
    const b = new EtcdBackend({client: c, prefix, local, selfId: id, endpoints: [etcd.endpoint]})
    closers.push(() => b.close())
    return b
  })
  const [m1, m2] = managers as [EtcdBackend, EtcdBackend]
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
