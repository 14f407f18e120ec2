import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {after, describe, it} from 'node:test'
import {compareVersions, type Entry} from '../../src/store/entry.js'
import {Store} from '../../src/store/store.js'
import {UserError} from '../../src/model/errors.js'

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'swarmnet-store-'))
after(() => fs.rmSync(root, {recursive: true, force: true}))
let n = 0
const fresh = (node = 'n1', opts = {}): Store => new Store(path.join(root, `s${n++}`), node, {reapIntervalMs: 0, ...opts}).open()

describe('versions', () => {
  it('orders by clock, then node id', () => {
    assert.ok(compareVersions({clock: 2, node: 'a'}, {clock: 1, node: 'z'}) > 0)
    assert.ok(compareVersions({clock: 1, node: 'b'}, {clock: 1, node: 'a'}) > 0)
    assert.equal(compareVersions({clock: 1, node: 'a'}, {clock: 1, node: 'a'}), 0)
  })
})

describe('store', () => {
  it('put/get/list/delete bump the Lamport clock', () => {
    const s = fresh()
    const e1 = s.put('network/a', {name: 'a'})
    const e2 = s.put('network/b', {name: 'b'})
    s.put('service/x', {name: 'x'})
    assert.equal(e1.version.clock, 1)
    assert.equal(e2.version.clock, 2)
    assert.deepEqual(s.get('network/a'), {name: 'a'})
    assert.deepEqual(
      s.list('network/').map((e) => e.key),
      ['network/a', 'network/b'],
    )
    const t = s.delete('network/a')
    assert.equal(t?.value, null)
    assert.equal(t?.version.clock, 4)
    assert.equal(s.get('network/a'), undefined)
    assert.equal(s.delete('network/a'), undefined)
    assert.deepEqual(
      s.list('network/').map((e) => e.key),
      ['network/b'],
    )
    s.close()
  })

  it('merge: last writer wins, node id breaks ties, tombstones beat older puts', () => {
    const s = fresh('m')
    s.put('k', 'local') // clock 1, node m
    const changed = s.merge([
      {key: 'k', value: 'older', version: {clock: 1, node: 'a'}}, // loses the tie to 'm'
      {key: 'j', value: 'new', version: {clock: 5, node: 'a'}},
    ])
    assert.deepEqual(
      changed.map((e) => e.key),
      ['j'],
    )
    assert.equal(s.get('k'), 'local')
    s.merge([{key: 'k', value: 'tie-winner', version: {clock: 1, node: 'z'}}])
    assert.equal(s.get('k'), 'tie-winner')
    s.merge([{key: 'k', value: null, version: {clock: 2, node: 'a'}, deletedAt: Date.now()}])
    assert.equal(s.get('k'), undefined)
    assert.deepEqual(s.merge([{key: 'k', value: 'stale', version: {clock: 1, node: 'zz'}}]), [])
    assert.equal(s.get('k'), undefined)
    s.close()
  })

  it('merge advances the clock past what it saw', () => {
    const s = fresh()
    s.merge([{key: 'x', value: 1, version: {clock: 41, node: 'other'}}])
    assert.equal(s.clock, 42)
    assert.equal(s.put('y', 2).version.clock, 43)
    s.close()
  })

  it('merge skips malformed entries', () => {
    const s = fresh()
    assert.deepEqual(s.merge([{key: 1}, null, {key: 'a', value: 1, version: {clock: -1, node: 'x'}}]), [])
    s.close()
  })

  it('digest and since: anti-entropy sends what the peer lacks or holds older', () => {
    const a = fresh('a')
    const b = fresh('b')
    a.put('x', 1)
    a.put('y', 2)
    b.merge(a.since(b.digest()))
    b.put('x', 3)
    b.put('z', 4)
    assert.deepEqual(
      b
        .since(a.digest())
        .map((e) => e.key)
        .sort(),
      ['x', 'z'],
    )
    a.merge(b.since(a.digest()))
    assert.deepEqual(a.digest(), b.digest())
    a.close()
    b.close()
  })

  it('emits change events with origin', () => {
    const s = fresh()
    const seen: unknown[] = []
    const off = s.onChange((key, value, old, origin) => seen.push([key, value, old, origin]))
    s.put('k', 1)
    s.put('k', 2)
    s.delete('k')
    s.merge([{key: 'r', value: 'x', version: {clock: 99, node: 'p'}}])
    off()
    s.put('k', 3)
    assert.deepEqual(seen, [
      ['k', 1, undefined, 'local'],
      ['k', 2, 1, 'local'],
      ['k', undefined, 2, 'local'],
      ['r', 'x', undefined, 'remote'],
    ])
    s.close()
  })

  it('survives a kill: what returned is on disk', () => {
    const dir = path.join(root, 'durable')
    const s = new Store(dir, 'n1', {reapIntervalMs: 0}).open()
    s.put('network/a', {name: 'a', vni: 4096})
    s.delete(s.put('gone', 1).key)
    s.merge([{key: 'r', value: true, version: {clock: 10, node: 'z'}}])
    // No close(): a second instance reads the same directory as a restarted process would.
    const again = new Store(dir, 'n1', {reapIntervalMs: 0}).open()
    assert.deepEqual(again.get('network/a'), {name: 'a', vni: 4096})
    assert.equal(again.entry('gone')?.value, null)
    assert.equal(again.get('r'), true)
    assert.equal(again.clock, s.clock)
    assert.equal(again.put('next', 1).version.clock, s.clock + 1)
    s.close()
    again.close()
  })

  it("refuses another node's state directory", () => {
    const dir = path.join(root, 'owned')
    new Store(dir, 'n1', {reapIntervalMs: 0}).open().put('a', 1)
    assert.throws(() => new Store(dir, 'n2', {reapIntervalMs: 0}).open(), /belongs to node n1/)
  })

  it('a corrupt file is a clear error naming the file', () => {
    for (const [name, content, why] of [
      ['c1', '{"format":1,"nodeId":"n1","clock":3,"entr', /not valid JSON/],
      ['c2', '{"format":1,"nodeId":"n1","clock":3,"entries":[{"key":"a"}]}', /entry #0 is malformed/],
      ['c3', '[]', /not an object/],
    ] as const) {
      const dir = path.join(root, name)
      fs.mkdirSync(dir)
      fs.writeFileSync(path.join(dir, 'state.json'), content)
      assert.throws(
        () => new Store(dir, 'n1').open(),
        (e: unknown) => e instanceof UserError && e.message.includes(path.join(dir, 'state.json')) && why.test(e.message),
      )
    }
  })

  it('reaps tombstones after the TTL, and ignores expired ones it never had', () => {
    let now = 1_000_000
    const s = fresh('n1', {tombstoneTtlMs: 1000, now: () => now})
    s.put('a', 1)
    s.delete('a')
    assert.equal(s.reap(), 0)
    now += 1001
    assert.equal(s.reap(), 1)
    assert.equal(s.entry('a'), undefined)
    const stale: Entry = {key: 'b', value: null, version: {clock: 50, node: 'x'}, deletedAt: now - 5000}
    assert.deepEqual(s.merge([stale]), [])
    s.close()
  })
})
