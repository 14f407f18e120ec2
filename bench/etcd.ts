// Desired state in etcd vs embedded, measured in-process (the manager's own
// code, no CLI or API socket in the path): service create latency, leader
// failover after SIGKILL, and allocations/s with 10 concurrent clients on 3
// managers. etcd here: 3 members of Debian's etcd on 127.0.0.1 (random ports,
// no TLS, temp data dirs on this machine's disk), started and removed by the bench.
import {spawn} from 'node:child_process'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {Etcd3} from 'etcd3'
import {EtcdBackend} from '../src/manager/etcd-backend.js'
import {etcdClient} from '../src/manager/etcd-client.js'
import {DEFAULT_LEADER_TTL_SEC, Leadership} from '../src/manager/etcd-leader.js'
import {Manager} from '../src/manager/manager.js'
import {valueProblem} from '../src/model/shape.js'
import type {Service, Task} from '../src/model/types.js'
import {CLUSTER_KEY, keyOf} from '../src/store/keys.js'
import {Store} from '../src/store/store.js'
import {freePort, startEtcdMember, stopEtcdMember, type EtcdMember} from '../src/store/etcd-process.js'
import {clusterSpec, etcdClusterNodes} from '../test/unit/model-records.js'
import {pct} from './percentile.js'

const SPEC = clusterSpec({id: 'bench'})

export async function threeMembers(dir: string): Promise<{members: EtcdMember[]; endpoints: string[]}> {
  const specs = []
  // Six distinct ports: the kernel may hand out a port freePort just released again, and a member
  // whose port another one took exits at start (seen: b3's peer port was b1's client port; the
  // two left kept the bench waiting).
  const taken = new Set<number>()
  const port = async (): Promise<number> => {
    for (;;) {
      const p = await freePort()
      if (taken.has(p)) continue
      taken.add(p)
      return p
    }
  }
  for (let i = 1; i <= 3; i++)
    specs.push({name: `b${i}`, clientPort: await port(), peerPort: await port(), dataDir: join(dir, `b${i}`)})
  const initialCluster = specs.map((s) => `${s.name}=http://127.0.0.1:${s.peerPort}`).join(',')
  const members = specs.map((s) => startEtcdMember({...s, host: '127.0.0.1', initialCluster, clusterToken: 'sn-bench'}))
  const endpoints = members.map((m) => m.clientUrl)
  const c = new Etcd3({hosts: endpoints})
  try {
    for (let i = 0; ; i++) {
      try {
        await c.put('sn-bench-probe').value('1')
        break
      } catch (e) {
        if (i > 150) throw new Error(`bench etcd did not come up: ${(e as Error).message}`)
        await new Promise((r) => setTimeout(r, 100))
      }
    }
  } catch (e) {
    // The caller never gets the members, so its cleanup could not stop them: stop them here.
    for (const m of members) await stopEtcdMember(m)
    throw e
  } finally {
    c.close()
  }
  return {members, endpoints}
}

export async function benchEtcd(): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), 'sn-bench-etcd-'))
  const clients: Etcd3[] = []
  const backends: EtcdBackend[] = []
  const out: string[] = []
  let members: EtcdMember[] = []
  try {
    const started = await threeMembers(dir)
    members = started.members
    const endpoints = started.endpoints
    const localStore = (id: string) => {
      const s = new Store(join(dir, `store-${id}-${Math.random().toString(36).slice(2)}`), id, {
        validate: valueProblem,
        reapIntervalMs: 0,
      }).open()
      for (const n of etcdClusterNodes()) s.put(keyOf('node', n.id), n)
      return s
    }
    const managers = async (prefix: string) => {
      const ms = ['m1', 'm2', 'm3'].map((id) => {
        const client = etcdClient({endpoints, prefix})
        clients.push(client)
        const b = new EtcdBackend({client, prefix, local: localStore(id), selfId: id, endpoints})
        backends.push(b)
        return b
      })
      await ms[0]!.importRecords([{key: CLUSTER_KEY, value: SPEC}])
      await ms[0]!.write((m) => m.createNetwork({name: 'net', subnet: '10.50.0.0/16'}))
      return ms
    }
    const req = (name: string) => ({name, mode: 'replicated' as const, replicas: 1, networks: ['net'], command: ['sleep', '1']})

    // 1. Latency of one create (a VIP and one task), sequential, 200 each.
    const N = 200
    const emb = localStore('m1')
    emb.put(CLUSTER_KEY, SPEC)
    const em = new Manager(emb, 'm1')
    em.createNetwork({name: 'net', subnet: '10.50.0.0/16'})
    const tEmb: number[] = []
    for (let i = 0; i < N; i++) {
      const t0 = process.hrtime.bigint()
      em.createService(req(`s${i}`))
      tEmb.push(Number(process.hrtime.bigint() - t0) / 1e6)
    }
    const [lat] = await managers('/bench/latency/')
    const tEtcd: number[] = []
    for (let i = 0; i < N; i++) {
      const t0 = process.hrtime.bigint()
      await lat!.write((m) => m.createService(req(`s${i}`)))
      tEtcd.push(Number(process.hrtime.bigint() - t0) / 1e6)
    }
    out.push(`service create, ${N} in a row, 1 replica (manager code in-process; embedded = store file fsync'd per write):`)
    out.push(`  embedded   p50 ${pct(tEmb, 50).toFixed(2).padStart(7)} ms   p99 ${pct(tEmb, 99).toFixed(2).padStart(7)} ms`)
    out.push(`  etcd (3)   p50 ${pct(tEtcd, 50).toFixed(2).padStart(7)} ms   p99 ${pct(tEtcd, 99).toFixed(2).padStart(7)} ms`)

    // 2. Allocations/s: 10 concurrent clients on 3 managers, 300 creates (a VIP and a task address each).
    const ms = await managers('/bench/alloc/')
    const total = 300
    let next = 0
    const t0 = Date.now()
    await Promise.all(
      Array.from({length: 10}, async (_, c) => {
        for (let i = next++; i < total; i = next++) await ms[c % 3]!.write((m) => m.createService(req(`a${i}`)))
      }),
    )
    const secs = (Date.now() - t0) / 1000
    const recs = await ms[0]!.records()
    const addrs: string[] = []
    for (const [k, v] of recs) {
      if (k.startsWith('service/')) for (const x of (v as Service).vips ?? []) addrs.push(`${x.networkId}/${x.ip}`)
      if (k.startsWith('task/')) for (const x of (v as Task).attachments) addrs.push(`${x.networkId}/${x.ip}`)
    }
    const dups = addrs.length - new Set(addrs).size
    const retries = ms.reduce((s, m) => s + m.retries, 0)
    out.push(
      `allocations, 10 concurrent clients on 3 managers, ${total} creates: ${(addrs.length / secs).toFixed(0)} addresses/s ` +
        `(${(total / secs).toFixed(1)} creates/s), ${addrs.length} addresses, ${dups} duplicates, ${retries} transactions retried`,
    )

    // 3. Failover: the leader's process killed with SIGKILL; time until a standby holds the role (agent defaults).
    const child = join(fileURLToPath(import.meta.url), '..', '..', 'test', 'unit', 'etcd-leader-child.ts')
    const times: number[] = []
    for (let round = 0; round < 3; round++) {
      const prefix = `/bench/lead${round}/`
      const p = spawn(
        process.execPath,
        ['--import', 'tsx', child, endpoints[0]!, prefix, 'dying', String(DEFAULT_LEADER_TTL_SEC), '500'],
        {
          stdio: ['ignore', 'pipe', 'inherit'],
        },
      )
      await new Promise<void>((resolve, reject) => {
        p.stdout.on('data', (b: Buffer) => /leader/.test(b.toString()) && resolve())
        p.once('exit', () => reject(new Error('leader process exited')))
      })
      const standbys = ['m2', 'm3'].map((id) => {
        const client = etcdClient({endpoints, prefix})
        clients.push(client)
        const l = new Leadership(client.namespace(prefix), id)
        l.start()
        return l
      })
      await new Promise((r) => setTimeout(r, 1000))
      const k0 = Date.now()
      p.kill('SIGKILL')
      while (!standbys.some((l) => l.isLeader)) await new Promise((r) => setTimeout(r, 10))
      times.push(Date.now() - k0)
      for (const l of standbys) await l.stop()
    }
    out.push(
      `leader failover (lease ttl ${DEFAULT_LEADER_TTL_SEC} s, standbys ask every 500 ms), SIGKILL to a standby leading: ` +
        `${times.map((t) => `${t} ms`).join(', ')}`,
    )
    return out
  } finally {
    for (const b of backends) b.close()
    for (const c of clients) c.close()
    for (const m of members) await stopEtcdMember(m)
    rmSync(dir, {recursive: true, force: true})
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) for (const l of await benchEtcd()) console.log(l)
