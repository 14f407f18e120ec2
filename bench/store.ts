// The store's acknowledged writes per second with durability: writes are
// acknowledged only after store.sync() (on disk: group-committed log, one
// write + fdatasync per batch), from C concurrent writers each waiting for its
// acknowledgement before its next write, as API clients do. Also the longest
// event-loop stall seen meanwhile (a UDP echo probed every 2 ms, as a SWIM
// probe would be answered). Real files in a temp directory on this machine's disk.
import * as dgram from 'node:dgram'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {Store} from '../src/store/store.js'

export type StoreBenchRow = {
  writers: number
  writes: number
  seconds: number
  perSecond: number
  commits: number
  worstProbeMs: number
}

async function one(writers: number, perWriter: number): Promise<StoreBenchRow> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swarmnet-bench-store-'))
  const store = new Store(dir, 'bench', {reapIntervalMs: 0}).open()
  const server = dgram.createSocket('udp4')
  server.on('message', (m, r) => server.send(m, r.port, r.address))
  await new Promise<void>((r) => server.bind(0, '127.0.0.1', r))
  const client = dgram.createSocket('udp4')
  let worst = 0
  const sent = new Map<number, bigint>()
  client.on('message', (m) => {
    const t = sent.get(m.readUInt32BE(0))
    if (t !== undefined) worst = Math.max(worst, Number(process.hrtime.bigint() - t) / 1e6)
  })
  await new Promise<void>((r) => client.bind(0, '127.0.0.1', r))
  let seq = 0
  const port = (server.address() as {port: number}).port
  const probe = setInterval(() => {
    const b = Buffer.alloc(4)
    b.writeUInt32BE(++seq)
    sent.set(seq, process.hrtime.bigint())
    client.send(b, port, '127.0.0.1')
  }, 2)
  // A value the size of a task record.
  const value = {id: 'x', serviceName: 'web', slot: 1, nodeId: 'n1', desiredState: 'running', pad: 'p'.repeat(300)}
  const t0 = process.hrtime.bigint()
  await Promise.all(
    Array.from({length: writers}, async (_, w) => {
      for (let i = 0; i < perWriter; i++) {
        store.put(`task/w${w}-${i}`, value)
        await store.sync()
      }
    }),
  )
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9
  clearInterval(probe)
  await new Promise((r) => setTimeout(r, 20))
  const commits = store.logStats?.commits ?? 0
  store.close()
  client.close()
  server.close()
  fs.rmSync(dir, {recursive: true, force: true})
  const writes = writers * perWriter
  return {writers, writes, seconds, perSecond: writes / seconds, commits, worstProbeMs: worst}
}

export async function benchStore(): Promise<StoreBenchRow[]> {
  const rows: StoreBenchRow[] = []
  for (const w of [1, 8, 64]) rows.push(await one(w, Math.max(20, Math.floor(2000 / w))))
  return rows
}

export function formatStore(rows: StoreBenchRow[]): string {
  const out = ['writers  acknowledged writes   writes/s   commits (fdatasync)   slowest probe reply']
  for (const r of rows)
    out.push(
      `${String(r.writers).padStart(7)}  ${String(r.writes).padStart(19)}  ${r.perSecond.toFixed(0).padStart(9)}   ${String(r.commits).padStart(19)}   ${r.worstProbeMs.toFixed(2).padStart(15)} ms`,
    )
  return out.join('\n')
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(formatStore(await benchStore()))
