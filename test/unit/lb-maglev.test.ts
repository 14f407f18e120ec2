import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {MAGLEV_EMPTY, lbTable, maglevSize, maglevTable, maglevTier, slotKey, slotUniverse} from '../../src/lb/maglev.js'

const keysOf = (n: number) => Array.from({length: n}, (_, i) => `10.0.1.${i + 2}`)
const counts = (t: Uint32Array, n: number) => {
  const c = new Array<number>(n).fill(0)
  for (const x of t) c[x]!++
  return c
}
// The backend key in each slot: tables built from different key lists compare by key, not index.
const named = (t: Uint32Array, keys: readonly string[]) => [...t].map((i) => keys[i]!)

// Removing or adding one backend also moves a few slots of the others (the paper's
// section 5.3 measures this "extra" disruption; it shrinks as M/N grows). Measured
// with M = maglevSize(N), over every removal and 50 added keys: removing, at most
// 2.4% of the table (N = 10 and 50); adding, at most 4.6% (N = 3), 3.7% (N = 10),
// 2.4% (N = 50). Flows that are already established keep their backend through
// the conntrack map whatever the table does; these bounds are for new flows.
const EXTRA_BOUND = 0.03
const ADD_EXTRA_BOUND = 0.05

describe('maglev', () => {
  it('table size: the smallest prime >= 100 x max(1, backends)', () => {
    assert.equal(maglevSize(0), 101)
    assert.equal(maglevSize(1), 101)
    assert.equal(maglevSize(3), 307)
    assert.equal(maglevSize(10), 1009)
    assert.equal(maglevSize(100), 10007)
    assert.throws(() => maglevSize(-1), /invalid backend count/)
    assert.throws(() => maglevTable(['a'], 100), /not a prime/)
  })

  it('no backends: every slot is empty', () => {
    const t = maglevTable([], 101)
    assert.equal(t.length, 101)
    assert.ok(t.every((x) => x === MAGLEV_EMPTY))
  })

  it('every slot is filled, and each backend gets floor(M/N) or ceil(M/N) slots (within 1% of M/N)', () => {
    for (const n of [1, 2, 3, 7, 10, 64]) {
      const m = maglevSize(n)
      const t = maglevTable(keysOf(n), m)
      assert.ok(
        t.every((x) => x < n),
        `n=${n}: a slot is empty or out of range`,
      )
      const c = counts(t, n)
      assert.ok(Math.max(...c) - Math.min(...c) <= 1, `n=${n}: counts ${Math.min(...c)}..${Math.max(...c)}`)
      for (const x of c) assert.ok(Math.abs(x - m / n) <= 0.01 * (m / n), `n=${n}: ${x} slots vs ${m / n}`)
    }
  })

  it('is the same on every call and whatever order the keys come in (they are sorted first)', () => {
    const keys = keysOf(10)
    const m = maglevSize(10)
    const a = named(maglevTable(keys, m), keys)
    assert.deepEqual(named(maglevTable(keys, m), keys), a)
    const shuffled = [...keys].reverse()
    shuffled.push(shuffled.splice(3, 1)[0]!)
    assert.deepEqual(named(maglevTable(shuffled, m), shuffled), a)
    // and not the same for different keys: the hash looks at them
    const other = keysOf(11).slice(1)
    assert.notDeepEqual(named(maglevTable(other, m), other), a)
  })

  it('removing one of N backends moves its slots and at most 3% of the others', () => {
    for (const n of [3, 10, 50]) {
      const keys = keysOf(n)
      const m = maglevSize(n)
      const before = named(maglevTable(keys, m), keys)
      let worst = 0
      for (let r = 0; r < n; r++) {
        const rest = keys.filter((_, i) => i !== r)
        const after = named(maglevTable(rest, m), rest)
        let extra = 0
        for (let s = 0; s < m; s++) {
          assert.notEqual(after[s], keys[r])
          if (before[s] !== keys[r] && after[s] !== before[s]) extra++
        }
        worst = Math.max(worst, extra / m)
      }
      assert.ok(worst <= EXTRA_BOUND, `n=${n}: removing one backend moved ${(worst * 100).toFixed(2)}% of other slots`)
    }
  })

  it('adding a backend to N gives it 1/(N+1) of the slots and moves at most 5% between the others', () => {
    for (const n of [3, 10, 50]) {
      const keys = keysOf(n)
      const m = maglevSize(n)
      const before = named(maglevTable(keys, m), keys)
      let worst = 0
      for (let k = 0; k < 10; k++) {
        const added = `10.0.2.${k}`
        const more = [...keys, added]
        const after = named(maglevTable(more, m), more)
        let toNew = 0
        let extra = 0
        for (let s = 0; s < m; s++) {
          if (after[s] === added) toNew++
          else if (after[s] !== before[s]) extra++
        }
        assert.ok(Math.abs(toNew / m - 1 / (n + 1)) <= 0.01, `n=${n}: the new backend got ${toNew} of ${m}`)
        worst = Math.max(worst, extra / m)
      }
      assert.ok(worst <= ADD_EXTRA_BOUND, `n=${n}: adding moved ${(worst * 100).toFixed(2)}% between old backends`)
    }
  })

  it('refuses duplicate keys and more backends than slots', () => {
    assert.throws(() => maglevTable(['a', 'a'], 101), /distinct/)
    assert.throws(() => maglevTable(keysOf(4), 3), /do not fit/)
  })
})

// The table the sync builds (src/dataplane/desired.ts): Maglev over a service's
// task slots 1..capacity of its tier, each slot's share to the task that holds
// it, and shares nobody holds by rendezvous to the backends there are.
const tasksIn = (slots: readonly number[]) => slots.map((s) => ({key: `task-${s}`, owns: slotKey(s)}))
const byKey = (t: Uint32Array, b: ReadonlyArray<{key: string}>) => [...t].map((i) => (i === MAGLEV_EMPTY ? '' : b[i]!.key))
const range = (n: number) => Array.from({length: n}, (_, i) => i + 1)

describe('lb table (Maglev over task slots)', () => {
  it('tiers: M is prime, >= 100 x capacity, whole chunks of 256 slots, and the same for every scale of a tier', () => {
    assert.deepEqual(maglevTier(0), {capacity: 10, size: 1021})
    assert.deepEqual(maglevTier(10), {capacity: 10, size: 1021})
    assert.deepEqual(maglevTier(11), {capacity: 20, size: 2039})
    assert.deepEqual(maglevTier(100), {capacity: 160, size: 16381})
    for (const scale of [1, 5, 17, 33, 200, 1000]) {
      const {capacity, size} = maglevTier(scale)
      assert.ok(capacity >= scale && size >= 100 * capacity && size <= (capacity / 10) * 1024, `scale ${scale}`)
      assert.doesNotThrow(() => maglevTable(['x'], size), `scale ${scale}: ${size} is prime`)
    }
    assert.throws(() => maglevTier(-1), /invalid backend count/)
  })

  it('removing any one backend moves exactly its own slots, none of the others (scale 3, 10, 50)', () => {
    for (const n of [3, 10, 50]) {
      const {capacity, size} = maglevTier(n)
      const u = slotUniverse(capacity)
      const all = tasksIn(range(n))
      const before = byKey(lbTable(u, size, all), all)
      for (let r = 0; r < n; r++) {
        const rest = all.filter((_, i) => i !== r)
        const after = byKey(lbTable(u, size, rest), rest)
        for (let s = 0; s < size; s++) {
          if (before[s] === all[r]!.key) assert.notEqual(after[s], all[r]!.key)
          else assert.equal(after[s], before[s], `n=${n}: removing ${all[r]!.key} moved slot ${s}`)
        }
      }
      // Two gone, in either order: still only theirs (the table depends on what runs, not on history).
      const two = all.filter((_, i) => i !== 0 && i !== n - 1)
      const after2 = byKey(lbTable(u, size, two), two)
      for (let s = 0; s < size; s++)
        if (before[s] !== all[0]!.key && before[s] !== all[n - 1]!.key) assert.equal(after2[s], before[s])
    }
  })

  it('a full service is spread as evenly as plain Maglev; a partial one within 10% of M/N', () => {
    for (const n of [1, 3, 7, 10, 20, 40]) {
      const {capacity, size} = maglevTier(n)
      const b = tasksIn(range(n))
      const c = counts(lbTable(slotUniverse(capacity), size, b), n)
      assert.equal(
        c.reduce((x, y) => x + y, 0),
        size,
      )
      const mean = size / n
      const bound = n === capacity ? 1 : 0.1 * mean
      assert.ok(
        Math.max(...c) - mean <= bound && mean - Math.min(...c) <= bound,
        `n=${n}: counts ${Math.min(...c)}..${Math.max(...c)} vs ${mean}`,
      )
    }
  })

  it('adding a backend moves slots only to it, about 1/N of the table', () => {
    const {capacity, size} = maglevTier(10)
    const u = slotUniverse(capacity)
    const nine = tasksIn(range(9))
    const ten = tasksIn(range(10))
    const before = byKey(lbTable(u, size, nine), nine)
    const after = byKey(lbTable(u, size, ten), ten)
    let toNew = 0
    for (let s = 0; s < size; s++) {
      if (after[s] === 'task-10') toNew++
      else assert.equal(after[s], before[s])
    }
    assert.ok(Math.abs(toNew / size - 1 / 10) <= 0.01, `the new one got ${toNew} of ${size}`)
  })

  it('the same whatever order the backends come in; two tasks claiming one slot resolve alike; no backends: empty', () => {
    const {capacity, size} = maglevTier(5)
    const u = slotUniverse(capacity)
    const b = tasksIn(range(5))
    const a = byKey(lbTable(u, size, b), b)
    const rev = [...b].reverse()
    assert.deepEqual(byKey(lbTable(u, size, rev), rev), a)
    const dup = [...b, {key: 'task-0', owns: slotKey(1)}]
    const dupRev = [...dup].reverse()
    assert.deepEqual(byKey(lbTable(u, size, dup), dup), byKey(lbTable(u, size, dupRev), dupRev))
    assert.ok(lbTable(u, size, []).every((x) => x === MAGLEV_EMPTY))
  })
})
