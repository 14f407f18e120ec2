// The store's append-only log: replay, a torn tail cut off, snapshots that
// compact it (and a crash on either side of one), group commit (one fdatasync
// for many writes), and the event loop answering probes while a commit is on
// the disk.
import assert from 'node:assert/strict'
import * as dgram from 'node:dgram'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {after, describe, it} from 'node:test'
import {readDurableState} from '../../src/store/durable.js'
import {logFile, logLine} from '../../src/store/log.js'
import {readSnapshot} from '../../src/store/snapshot.js'
import {Store} from '../../src/store/store.js'

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'swarmnet-log-'))
after(() => fs.rmSync(root, {recursive: true, force: true}))
let n = 0
const dirOf = () => path.join(root, `s${n++}`)
const logsIn = (dir: string) => fs.readdirSync(dir).filter((f) => f.startsWith('log.'))

/** A store that wrote a=1 then b=2 and was closed: its dir and its one log file, to damage. */
async function logOfAB(): Promise<{dir: string; file: string}> {
  const dir = dirOf()
  const s = new Store(dir, 'n1', {reapIntervalMs: 0}).open()
  s.put('a', 1)
  s.put('b', 2)
  await s.sync()
  s.close()
  return {dir, file: path.join(dir, logFile(0))}
}

describe('store log', () => {
  it('replays: what was written is there after reopening, with the clock past it', async () => {
    const dir = dirOf()
    const s = new Store(dir, 'n1', {reapIntervalMs: 0}).open()
    for (let i = 0; i < 50; i++) s.put(`k${i % 20}`, i)
    s.delete('k3')
    await s.sync()
    const clock = s.clock
    const want = s.all()
    // What a kill leaves: the files as they are, no close.
    const again = readDurableState(dir)!
    assert.deepEqual(
      again.entries.sort((a, b) => (a.key < b.key ? -1 : 1)),
      want.sort((a, b) => (a.key < b.key ? -1 : 1)),
    )
    s.close()
    const r = new Store(dir, 'n1', {reapIntervalMs: 0}).open()
    assert.equal(r.get('k19'), 39)
    assert.equal(r.entry('k3')?.value, null)
    assert.equal(r.clock, clock)
    assert.ok(r.put('x', 1).version.clock > clock, 'no version handed out twice')
    assert.equal(readSnapshot(dir)?.entries.length, 0, 'no snapshot rewrite per write: it all went to the log')
    r.close()
  })

  it('a torn last line (a crash mid-write) is cut off; what came before loads, and appends go on after it', async () => {
    const {dir, file} = await logOfAB()
    const whole = fs.readFileSync(file)
    const extra = logLine({key: 'c', value: 3, version: {clock: 3, node: 'n1'}})
    fs.appendFileSync(file, extra.slice(0, extra.length - 7))
    const r = new Store(dir, 'n1', {reapIntervalMs: 0}).open()
    assert.equal(r.get('a'), 1)
    assert.equal(r.get('b'), 2)
    assert.equal(r.get('c'), undefined)
    assert.deepEqual(fs.readFileSync(file), whole, 'the torn tail is gone from the file')
    r.put('d', 4)
    r.close()
    const again = new Store(dir, 'n1', {reapIntervalMs: 0}).open()
    assert.equal(again.get('d'), 4, 'a write after the cut is read back')
    again.close()
  })

  it('a line whose checksum does not match ends the log there', async () => {
    const {dir, file} = await logOfAB()
    const lines = fs.readFileSync(file, 'utf8').split('\n')
    lines[1] = lines[1]!.replace('"value":2', '"value":9')
    fs.writeFileSync(file, lines.join('\n'))
    const r = new Store(dir, 'n1', {reapIntervalMs: 0}).open()
    assert.equal(r.get('a'), 1)
    assert.equal(r.get('b'), undefined, 'a flipped byte is not believed')
    r.close()
  })

  it('compacts: past compactBytes a snapshot is written, a new log begun and the old one removed; nothing is lost', async () => {
    const dir = dirOf()
    const s = new Store(dir, 'n1', {reapIntervalMs: 0, compactBytes: 16 * 1024}).open()
    const pad = 'p'.repeat(200)
    for (let i = 0; i < 1000; i++) {
      s.put(`k${i % 100}`, `${i}${pad}`)
      if (i % 50 === 49) await s.sync()
    }
    s.delete('k7')
    await s.sync()
    const st = s.logStats!
    assert.ok(st.compactions >= 5, `${st.compactions} compactions`)
    const logs = logsIn(dir)
    assert.equal(logs.length, 1, `one log left: ${logs.join(', ')}`)
    const snap = readSnapshot(dir)!
    assert.equal(snap.format, 2)
    assert.equal(logs[0], logFile(snap.log!), 'the snapshot names the log that follows it')
    assert.ok(fs.statSync(path.join(dir, logs[0]!)).size < 16 * 1024 + 4096, 'the log stays near the threshold')
    const want = s.all().sort((a, b) => (a.key < b.key ? -1 : 1))
    s.close()
    const r = new Store(dir, 'n1', {reapIntervalMs: 0}).open()
    assert.deepEqual(
      r.all().sort((a, b) => (a.key < b.key ? -1 : 1)),
      want,
    )
    assert.equal(r.get('k99'), `999${pad}`)
    assert.equal(r.entry('k7')?.value, null)
    r.close()
  })

  it('a crash on either side of a snapshot: the snapshot decides which log counts', async () => {
    const dir = dirOf()
    const s = new Store(dir, 'n1', {reapIntervalMs: 0, compactBytes: 4096}).open()
    for (let i = 0; i < 100; i++) s.put(`k${i}`, 'v'.repeat(100))
    await s.sync()
    // A later commit waits for the compaction the first one started.
    s.put('k0', 'v'.repeat(100))
    await s.sync()
    s.close()
    const gen = readSnapshot(dir)!.log!
    assert.ok(gen > 0)
    // Crash after the snapshot was renamed but before the old log was removed: the old log is ignored.
    fs.writeFileSync(path.join(dir, logFile(gen - 1)), logLine({key: 'ghost', value: 1, version: {clock: 1e6, node: 'n1'}}))
    // Crash after the next log was created but before the snapshot naming it: that log is ignored.
    fs.writeFileSync(path.join(dir, logFile(gen + 1)), logLine({key: 'ghost2', value: 1, version: {clock: 1e6, node: 'n1'}}))
    const r = new Store(dir, 'n1', {reapIntervalMs: 0}).open()
    assert.equal(r.get('ghost'), undefined)
    assert.equal(r.get('ghost2'), undefined)
    assert.equal(r.list('k').length, 100)
    assert.equal(r.list('ghost').length, 0)
    r.close()
  })

  it('reaped tombstones do not come back after a compaction', async () => {
    let now = 1_000_000
    const dir = dirOf()
    const s = new Store(dir, 'n1', {reapIntervalMs: 0, compactBytes: 2048, tombstoneTtlMs: 1000, now: () => now}).open()
    s.put('gone', 1)
    s.delete('gone')
    await s.sync()
    now += 2000
    assert.equal(s.reap(), 1)
    for (let i = 0; i < 50; i++) s.put(`k${i}`, 'v'.repeat(100))
    await s.sync()
    // A later commit waits for the compaction the first one started.
    s.put('k0', 'w')
    await s.sync()
    assert.ok(s.logStats!.compactions > 0)
    s.close()
    const r = new Store(dir, 'n1', {reapIntervalMs: 0, tombstoneTtlMs: 1000, now: () => now}).open()
    assert.equal(r.entry('gone'), undefined)
    r.close()
  })

  it('group commit: 1,000 writes made together reach the disk in a few commits, each acknowledged only once on disk', async () => {
    const dir = dirOf()
    const s = new Store(dir, 'n1', {reapIntervalMs: 0}).open()
    const acks: Promise<void>[] = []
    for (let i = 0; i < 1000; i++) {
      s.put(`k${i}`, i)
      acks.push(s.sync())
    }
    let early = 0
    for (let i = 0; i < 1000; i++) if (!s.isDurable(s.entry(`k${i}`)!)) early++
    assert.ok(early > 0, 'writes are not on disk the moment put returns')
    await Promise.all(acks)
    const st = s.logStats!
    console.log(`# 1,000 writes: ${st.commits} commits (fdatasyncs), largest batch ${st.largestBatch}`)
    assert.ok(st.commits <= 3, `${st.commits} commits`)
    assert.equal(st.appended, 1000)
    for (let i = 0; i < 1000; i++) assert.ok(s.isDurable(s.entry(`k${i}`)!))
    assert.equal(readDurableState(dir)!.entries.length, 1000)
    s.close()
  })

  it('the event loop answers probes while a commit is on the disk', async () => {
    const dir = dirOf()
    const s = new Store(dir, 'n1', {reapIntervalMs: 0, compactBytes: 1 << 30}).open()
    const server = dgram.createSocket('udp4')
    server.on('message', (m, r) => server.send(m, r.port, r.address))
    await new Promise<void>((r) => server.bind(0, '127.0.0.1', r))
    const port = (server.address() as {port: number}).port
    const client = dgram.createSocket('udp4')
    let duringCommit = 0
    let replies = 0
    let worst = 0
    const sentAt = new Map<number, bigint>()
    client.on('message', (m) => {
      replies++
      if (s.committing) duringCommit++
      const t = sentAt.get(m.readUInt32BE(0))
      if (t !== undefined) worst = Math.max(worst, Number(process.hrtime.bigint() - t) / 1e6)
    })
    await new Promise<void>((r) => client.bind(0, '127.0.0.1', r))
    let seq = 0
    const probe = setInterval(() => {
      const b = Buffer.alloc(4)
      b.writeUInt32BE(++seq)
      sentAt.set(seq, process.hrtime.bigint())
      client.send(b, port, '127.0.0.1')
    }, 2)
    const pad = 'w'.repeat(1000)
    for (let round = 0; round < 40; round++) {
      for (let i = 0; i < 50; i++) s.put(`k${i}`, `${round}${pad}`)
      await s.sync()
    }
    clearInterval(probe)
    await new Promise((r) => setTimeout(r, 50))
    client.close()
    server.close()
    s.close()
    console.log(
      `# probes: ${replies} replies, ${duringCommit} handled while a commit was on the disk, slowest ${worst.toFixed(2)} ms; ${s.logStats?.commits ?? 'n/a'} commits`,
    )
    assert.ok(replies > 0)
    assert.ok(duringCommit > 0, 'no probe was answered while a commit was under way: the disk blocks the event loop')
  })
})
