// The store's bucket summary (src/store/summary.ts) and its keys by kind (entry-map.ts), kept on
// every change, against the same computed from scratch after random sequences of puts, deletes, merges, forgets, reaps
// and reopens; and two stores that exchange digests only for the buckets where their summaries
// differ (as push-pull does, src/gossip/gossip.ts) end up equal: nothing a whole digest would
// still bring.
import assert from 'node:assert/strict'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {after, test} from 'node:test'
import fc from 'fast-check'
import type {Entry, Version} from '../../src/store/entry.js'
import {Store} from '../../src/store/store.js'
import {bucketOf, differingBuckets, Summary, SUMMARY_BUCKETS, SUMMARY_BYTES, summaryOf, toggle} from '../../src/store/summary.js'

const root = mkdtempSync(join(tmpdir(), 'swarmnet-summary-'))
after(() => rmSync(root, {recursive: true, force: true}))
let dirs = 0

const TTL = 1_000

/** A store whose clock the test moves (tombstones expire when it says). */
function openStore(id: string): {store: Store; clock: {now: number}} {
  const clock = {now: 1_000_000}
  const store = new Store(join(root, `${id}-${dirs++}`), id, {
    tombstoneTtlMs: TTL,
    reapIntervalMs: 0,
    now: () => clock.now,
  }).open()
  return {store, clock}
}

// Few keys, so that operations meet on the same keys; desired-state kinds too (the deletion floor's refusals).
const key = fc.constantFrom(
  'x/a',
  'x/b',
  'x/c',
  'x/d',
  'x',
  'service/s1',
  'service/s2',
  'task/0123456789abcdef01234567',
  'node/n1',
)
const version: fc.Arbitrary<Version> = fc.record(
  {
    clock: fc.integer({min: 0, max: 40}),
    node: fc.constantFrom('a', 'b', 'c'),
    rev: fc.integer({min: 1, max: 3}),
    erev: fc.integer({min: 1, max: 3}),
  },
  {requiredKeys: ['clock', 'node']},
)
const remote: fc.Arbitrary<Entry> = fc
  .record({key, value: fc.option(fc.integer(), {nil: null}), version, deletedAt: fc.integer({min: 0, max: 1_002_000})})
  .map(({key, value, version, deletedAt}) => (value === null ? {key, value, version, deletedAt} : {key, value, version}))

type Op =
  | {op: 'put'; key: string; value: number}
  | {op: 'delete'; key: string}
  | {op: 'merge'; entries: Entry[]}
  | {op: 'forget'; keys: string[]}
  | {op: 'reap'; ms: number}
  | {op: 'reopen'}

const op: fc.Arbitrary<Op> = fc.oneof(
  {weight: 4, arbitrary: fc.record({op: fc.constant('put' as const), key, value: fc.integer()})},
  {weight: 2, arbitrary: fc.record({op: fc.constant('delete' as const), key})},
  {weight: 4, arbitrary: fc.record({op: fc.constant('merge' as const), entries: fc.array(remote, {maxLength: 4})})},
  {weight: 1, arbitrary: fc.record({op: fc.constant('forget' as const), keys: fc.array(key, {maxLength: 3})})},
  {weight: 1, arbitrary: fc.record({op: fc.constant('reap' as const), ms: fc.integer({min: 0, max: 2 * TTL})})},
  {weight: 1, arbitrary: fc.record({op: fc.constant('reopen' as const)})},
)

function apply(s: {store: Store; clock: {now: number}}, o: Op): void {
  switch (o.op) {
    case 'put':
      s.store.put(o.key, o.value)
      return
    case 'delete':
      s.store.delete(o.key)
      return
    case 'merge':
      s.store.merge(o.entries)
      return
    case 'forget':
      s.store.forget(o.keys)
      return
    case 'reap':
      s.clock.now += o.ms
      s.store.reap()
      return
    case 'reopen':
      s.store.close()
      s.store.open()
      return
  }
}

/** The kept summary and its bucket key sets equal what a walk of the entries gives. */
function assertKept(store: Store): void {
  const all = store.all()
  assert.ok(store.summary().equals(summaryOf(all)), 'the kept summary equals one computed from scratch')
  const byBucket = new Map<number, string[]>()
  for (const e of all) byBucket.set(bucketOf(e.key), [...(byBucket.get(bucketOf(e.key)) ?? []), e.key])
  // And a kind's list, from the keys kept by kind, is what a walk of every entry gives.
  for (const prefix of ['x/', 'service/', 'task/', 'node/', 'y/', 'x', 'service/s', '']) {
    const walked = all.filter((e) => e.value !== null && e.key.startsWith(prefix)).sort((a, b) => (a.key < b.key ? -1 : 1))
    assert.deepEqual(store.list(prefix), walked, `list('${prefix}')`)
  }
  for (let b = 0; b < SUMMARY_BUCKETS; b++)
    assert.deepEqual([...store.keysInBucket(b)].sort(), (byBucket.get(b) ?? []).sort(), `the keys of bucket ${b}`)
}

test('the summary kept on every change equals the summary computed from scratch', () => {
  fc.assert(
    fc.property(fc.array(op, {maxLength: 40}), (ops) => {
      const s = openStore('a')
      try {
        for (const o of ops) {
          apply(s, o)
          assertKept(s.store)
        }
      } finally {
        s.store.close()
      }
    }),
    {numRuns: 300},
  )
})

/** One scoped exchange, as push-pull makes it: digests and entries of the differing buckets only. */
async function exchange(a: Store, b: Store): Promise<number[]> {
  await Promise.all([a.sync(), b.sync()])
  const scope = differingBuckets(a.summary(), b.summary())
  const da = a.digestIn(scope)
  const db = b.digestIn(scope)
  const toB = a.since(db, scope)
  const toA = b.since(da, scope)
  b.merge(toB)
  a.merge(toA)
  return scope
}

test('two stores that exchange only the buckets where their summaries differ converge', async () => {
  // Non-desired keys: the deletion floor (which refuses some desired state by design) is not in play.
  const plain = fc.constantFrom('x/a', 'x/b', 'x/c', 'x/d', 'x/e', 'y/1', 'y/2')
  const write = fc.oneof(
    fc.record({op: fc.constant('put' as const), key: plain, value: fc.integer()}),
    fc.record({op: fc.constant('delete' as const), key: plain}),
  )
  const shared = fc
    .record({key: plain, value: fc.option(fc.integer(), {nil: null}), version})
    .map(({key, value, version}): Entry => (value === null ? {key, value, version, deletedAt: 1_000_000} : {key, value, version}))
  await fc.assert(
    fc.asyncProperty(
      fc.array(write, {maxLength: 20}),
      fc.array(write, {maxLength: 20}),
      fc.array(fc.tuple(shared, fc.constantFrom('a', 'b', 'both')), {maxLength: 15}),
      async (wa, wb, merges) => {
        const a = openStore('a')
        const b = openStore('b')
        try {
          for (const o of wa) apply(a, o)
          for (const o of wb) apply(b, o)
          for (const [e, to] of merges) {
            if (to !== 'b') a.store.merge([e])
            if (to !== 'a') b.store.merge([e])
          }
          const scope = await exchange(a.store, b.store)
          // Nothing a whole digest would still bring, both ways: the scoped exchange missed nothing.
          await Promise.all([a.store.sync(), b.store.sync()])
          assert.deepEqual(a.store.since(b.store.digest()), [])
          assert.deepEqual(b.store.since(a.store.digest()), [])
          assert.ok(a.store.summary().equals(b.store.summary()), 'the summaries agree')
          assert.deepEqual(differingBuckets(a.store.summary(), b.store.summary()), [])
          // Where they agreed before, the digests agreed already: only the scope carried anything.
          assert.ok(scope.length <= new Set([...a.store.all(), ...b.store.all()].map((e) => bucketOf(e.key))).size)
        } finally {
          a.store.close()
          b.store.close()
        }
      },
    ),
    {numRuns: 200},
  )
})

test('toggle takes an entry out of a summary and puts it back', () => {
  const s = new Summary()
  s.add('x/a', {clock: 1, node: 'a'})
  s.add('x/b', {clock: 2, node: 'b', rev: 3})
  const sums = s.bytes()
  assert.equal(sums.length, SUMMARY_BYTES)
  toggle(sums, 'x/b', {clock: 2, node: 'b', rev: 3})
  assert.ok(sums.equals(summaryOf([{key: 'x/a', value: 1, version: {clock: 1, node: 'a'}}])))
  toggle(sums, 'x/b', {clock: 2, node: 'b', rev: 3})
  assert.ok(sums.equals(s.bytes()))
  // A version differing only in rev, or erev, sums differently.
  assert.notDeepEqual(summaryOf([{key: 'x/b', value: 1, version: {clock: 2, node: 'b'}}]), s.bytes())
  assert.deepEqual(differingBuckets(s.bytes(), summaryOf([])).sort(), [bucketOf('x/a'), bucketOf('x/b')].sort())
})
