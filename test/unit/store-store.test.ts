import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {spawn} from 'node:child_process'
import {fileURLToPath} from 'node:url'
import {after, describe, it} from 'node:test'
import {compareVersions, signedText, type Entry} from '../../src/store/entry.js'
import type {Json} from '../../src/store/json.js'
import {Store} from '../../src/store/store.js'
import {networkRecord} from './model-records.js'
import {UserError} from '../../src/model/errors.js'
import {valueProblem} from '../../src/model/shape.js'
import {idOf} from '../../src/store/keys.js'

const HERE = path.dirname(fileURLToPath(import.meta.url))

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

  it('orders by etcd revision before the clock; a version without one loses to any with one', () => {
    assert.ok(compareVersions({clock: 1, node: 'a', rev: 9}, {clock: 900, node: 'z', rev: 8}) > 0)
    assert.ok(compareVersions({clock: 1, node: 'a', rev: 1}, {clock: 900, node: 'z'}) > 0)
    assert.ok(compareVersions({clock: 2, node: 'a', rev: 5}, {clock: 1, node: 'z', rev: 5}) > 0)
  })

  it('a replica keeps the published revision against a later clock, across a restart; the revision is signed', () => {
    const dir = path.join(root, `s${n++}`)
    const s = new Store(dir, 'w1', {reapIntervalMs: 0}).open()
    s.merge([{key: 'service/x', value: {name: 'etcd'}, version: {clock: 3, node: 'm2', rev: 40}}])
    s.merge([{key: 'service/x', value: {name: 'stale'}, version: {clock: 5000, node: 'm1'}}])
    s.merge([{key: 'service/x', value: {name: 'older'}, version: {clock: 5000, node: 'm1', rev: 39}}])
    assert.deepEqual(s.get('service/x'), {name: 'etcd'})
    s.close()
    const again = new Store(dir, 'w1', {reapIntervalMs: 0}).open()
    assert.equal(again.entry('service/x')?.version.rev, 40)
    const e = again.entry('service/x')!
    assert.notEqual(signedText(e), signedText({...e, version: {...e.version, rev: 41}}))
    again.close()
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

  it('digest and since: anti-entropy sends what the peer lacks or holds older, once it is on disk', async () => {
    const a = fresh('a')
    const b = fresh('b')
    a.put('x', 1)
    a.put('y', 2)
    assert.deepEqual(a.since(b.digest()), [], 'nothing leaves before it is durable')
    await a.sync()
    b.merge(a.since(b.digest()))
    b.put('x', 3)
    b.put('z', 4)
    await b.sync()
    assert.deepEqual(
      b
        .since(a.digest())
        .map((e) => e.key)
        .sort(),
      ['x', 'z'],
    )
    a.merge(b.since(a.digest()))
    await a.sync()
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

  it('survives SIGKILL during writes: every write that returned is on disk', async () => {
    const dir = path.join(root, 'durable')
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(HERE, '..', 'fixtures', 'store', 'writer.ts'), dir], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    let out = ''
    const acked = new Promise<void>((resolve) =>
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString()
        // Enough writes that the file is large and rewrites take a while; then kill mid-stream.
        if (out.split('\n').length > 400) resolve()
      }),
    )
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, sig) => resolve(sig)))
    await acked
    child.kill('SIGKILL')
    assert.equal(await exited, 'SIGKILL', 'the writer was killed, it did not finish on its own')
    // Only whole lines are acknowledgements: the last one may have been cut by the kill.
    const lines = out.split('\n').slice(0, -1)
    const want = new Map<string, boolean>() // key -> live (true) or deleted (false)
    for (const l of lines) {
      const [op, id] = l.split(' ') as [string, string]
      want.set(`task/${id}`, op !== 'del')
    }
    assert.ok(lines.some((l) => l.startsWith('del')) && lines.some((l) => l.startsWith('merge')))
    const again = new Store(dir, 'n1', {reapIntervalMs: 0, validate: valueProblem}).open()
    for (const [key, live] of want) {
      if (live) assert.equal(again.get<{id: string}>(key)?.id, idOf(key), `${key} was acknowledged`)
      else assert.equal(again.entry(key)?.value, null, `the delete of ${key} was acknowledged`)
    }
    assert.equal(again.refused, 0)
    // The clock goes on from what is on disk: no version is handed out twice.
    const max = Math.max(...again.all().map((e) => e.version.clock))
    const some = again.list('task/')[0]!.value as Record<string, Json>
    const next = 'c'.repeat(24)
    assert.ok(again.put(`task/${next}`, {...some, id: next}).version.clock > max)
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

describe('values validated by kind', () => {
  const net = (id: string) => networkRecord(id, '10.0.1.0/24', {name: `net-${id}`, gateway: '10.0.1.1', createdAt: 1})
  const checked = (dir?: string) =>
    new Store(dir ?? path.join(root, `v${n++}`), 'n1', {reapIntervalMs: 0, validate: valueProblem}).open()
  const v = (clock: number) => ({clock, node: 'peer'})

  it('a merge applies the good entries and refuses and counts the bad ones, without throwing', () => {
    const s = checked()
    const seen: string[] = []
    s.onChange((k) => seen.push(k))
    const changed = s.merge([
      {key: 'network/a', value: net('a'), version: v(1)},
      {key: 'task/a1a1a1a1a1a1a1a1a1a1a1a1', value: {id: 'a1a1a1a1a1a1a1a1a1a1a1a1'}, version: v(2)}, // no attachments: every reconcile would throw on it
      {key: 'network/b', value: {...net('b'), subnet: '10.0.1.0/33'}, version: v(3)},
      {key: 'network/c', value: net('other'), version: v(4)}, // id does not match its key
      {
        key: 'taskstatus/a2a2a2a2a2a2a2a2a2a2a2a2',
        value: {taskId: 'a2a2a2a2a2a2a2a2a2a2a2a2', nodeId: 'x', state: 'running', netns: '../../etc', restarts: 0, updatedAt: 1},
        version: v(5),
      },
      {key: 'cluster', value: {id: 'c'}, version: v(6)},
      {key: 'task/a3a3a3a3a3a3a3a3a3a3a3a3', value: null, version: v(7), deletedAt: Date.now()}, // a tombstone carries no value to misread
    ])
    assert.deepEqual(
      changed.map((e) => e.key),
      ['network/a', 'task/a3a3a3a3a3a3a3a3a3a3a3a3'],
    )
    assert.deepEqual(seen, ['network/a', 'task/a3a3a3a3a3a3a3a3a3a3a3a3'])
    assert.equal(s.refused, 5)
    assert.match(s.lastRefusal ?? '', /^cluster: /)
    const onDisk = fs.readFileSync(path.join(s.dir, 'state.json'), 'utf8')
    assert.ok(!onDisk.includes('a1a1a1a1a1a1a1a1a1a1a1a1') && !onDisk.includes('network/b') && !onDisk.includes('etc'))
    s.close()
  })

  it('a local put of a malformed value throws, is counted, and changes nothing', () => {
    const s = checked()
    s.put('network/a', net('a'))
    const file = fs.readFileSync(path.join(s.dir, 'state.json'), 'utf8')
    const clock = s.clock
    assert.throws(
      () => s.put('service/x', {id: 'x', name: 'x', mode: {replicas: -1}, networks: [], command: [], createdAt: 1, updatedAt: 1}),
      /refusing to store service\/x: 'replicas'/,
    )
    assert.throws(() => s.put('network/a', {...net('a'), gateway: '10.9.9.9'}), /gateway 10.9.9.9 is outside/)
    assert.equal(s.refused, 2)
    assert.equal(s.clock, clock)
    assert.equal(fs.readFileSync(path.join(s.dir, 'state.json'), 'utf8'), file)
    assert.deepEqual(s.get('network/a'), net('a'))
    // Kinds this version does not know pass untouched: a newer node may write them.
    s.put('future/x', {anything: true})
    s.close()
  })

  it('a malformed value in the state file is left out; the rest loads', () => {
    const dir = path.join(root, 'v-file')
    fs.mkdirSync(dir)
    const entries = [
      {key: 'network/a', value: net('a'), version: v(1)},
      {key: 'task/a1a1a1a1a1a1a1a1a1a1a1a1', value: {id: 'a1a1a1a1a1a1a1a1a1a1a1a1', attachments: 'none'}, version: v(2)},
    ]
    fs.writeFileSync(path.join(dir, 'state.json'), JSON.stringify({format: 1, nodeId: 'n1', clock: 2, entries}))
    const s = checked(dir)
    assert.deepEqual(s.get('network/a'), net('a'))
    assert.equal(s.entry('task/a1a1a1a1a1a1a1a1a1a1a1a1'), undefined)
    assert.equal(s.refused, 1)
    s.close()
  })
})
