// The control plane at scale on etcd (issue 24): the manager's own code through the etcd
// backend on 3 local members (as bench/etcd.ts starts them), 1,000 node records in each
// manager's gossip store, services of 3 replicas on one /16 network. Create latency at each
// size (the cluster filled by transactions that write the records and their allocation keys
// as the backend would), and concurrent creates: 10 clients on 3 managers, with the addresses
// given twice counted from etcd's records and the transactions retried.
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import type {Etcd3} from 'etcd3'
import {EtcdBackend} from '../src/manager/etcd-backend.js'
import {etcdClient} from '../src/manager/etcd-client.js'
import {ALLOC, STATE, allocationsOf} from '../src/manager/etcd-keys.js'
import {macForIp} from '../src/model/allocate.js'
import {formatIpv4, parseIpv4} from '../src/model/ipv4.js'
import {valueProblem} from '../src/model/shape.js'
import type {Service, Task} from '../src/model/types.js'
import {CLUSTER_KEY, keyOf} from '../src/store/keys.js'
import {Store} from '../src/store/store.js'
import {stopEtcdMember, type EtcdMember} from '../src/store/etcd-process.js'
import {clusterSpec, nodeRecord} from '../test/unit/model-records.js'
import {threeMembers} from './etcd.js'
import {pct} from './percentile.js'

const NODES = 1000
const REPLICAS = 3
const SUBNET = '10.80.0.0/16'

export type ScaleEtcdResult = {
  createP50Ms: Record<string, number>
  createsPerSec: number
  duplicateAddresses: number
  lines: string[]
}

export async function benchScaleEtcd(sizes: number[]): Promise<ScaleEtcdResult> {
  const dir = mkdtempSync(join(tmpdir(), 'sn-bench-scale-etcd-'))
  const clients: Etcd3[] = []
  const backends: EtcdBackend[] = []
  const stores: Store[] = []
  let members: EtcdMember[] = []
  const out: ScaleEtcdResult = {createP50Ms: {}, createsPerSec: 0, duplicateAddresses: 0, lines: []}
  try {
    const started = await threeMembers(dir)
    members = started.members
    const endpoints = started.endpoints
    const nodeIds = Array.from({length: NODES}, (_, i) => `n${String(i).padStart(4, '0')}`)
    const localStore = (id: string) => {
      const s = new Store(join(dir, `store-${id}`), id, {validate: valueProblem, reapIntervalMs: 0}).open()
      stores.push(s)
      for (const [i, n] of nodeIds.entries())
        s.put(keyOf('node', n), nodeRecord(n, formatIpv4(parseIpv4('172.31.0.0') + i + 1), {role: i < 3 ? 'manager' : 'worker'}))
      return s
    }
    const managers = async (prefix: string) => {
      const ms = ['n0000', 'n0001', 'n0002'].map((id) => {
        const client = etcdClient({endpoints, prefix})
        clients.push(client)
        const b = new EtcdBackend({
          client,
          prefix,
          local: localStore(`${id}-${prefix.replaceAll('/', '')}`),
          selfId: id,
          endpoints,
        })
        backends.push(b)
        return b
      })
      await ms[0]!.importRecords([{key: CLUSTER_KEY, value: clusterSpec({id: 'scale'})}])
      const net = await ms[0]!.write((m) => m.createNetwork({name: 'net', subnet: SUBNET}))
      return {ms, net}
    }
    const req = (name: string) => ({
      name,
      mode: 'replicated' as const,
      replicas: REPLICAS,
      networks: ['net'],
      command: ['sleep', '1'],
    })

    // 1. Latency of one create at each size, sequential, on one manager.
    const {ms, net} = await managers('/scale/latency/')
    const lat = ms[0]!
    let nextIp = parseIpv4(net.gateway) + 1
    let filled = 0
    const fill = async (to: number) => {
      let batch: [string, string][] = []
      const flush = async () => {
        if (batch.length === 0) return
        // A compare that always holds: etcd3 builds a transaction from a comparison.
        await lat.ns
          .if('scale-fill', 'Version', '>', -1)
          .then(...batch.map(([k, v]) => lat.ns.put(k).value(v)))
          .commit()
        batch = []
      }
      const put = async (key: string, value: Service | Task) => {
        batch.push([STATE + key, JSON.stringify(value)])
        for (const a of allocationsOf(key, value)) batch.push([ALLOC + a, key])
        if (batch.length > 100) await flush()
      }
      for (; filled < to; filled++) {
        const id = `svc${String(filled).padStart(6, '0')}`
        const name = `s${filled}`
        await put(keyOf('service', id), {
          id,
          name,
          mode: {replicas: REPLICAS},
          networks: [net.id],
          command: ['sleep', '100000'],
          endpointMode: 'vip',
          vips: [{networkId: net.id, ip: formatIpv4(nextIp++)}],
          createdAt: 1,
          updatedAt: 1,
        })
        for (let slot = 1; slot <= REPLICAS; slot++) {
          const ip = formatIpv4(nextIp++)
          await put(keyOf('task', `${id}-t${slot}`), {
            id: `${id}-t${slot}`,
            serviceId: id,
            serviceName: name,
            slot,
            nodeId: nodeIds[(filled * REPLICAS + slot) % NODES]!,
            desiredState: 'running',
            attachments: [{networkId: net.id, ip, mac: macForIp(ip)}],
            createdAt: 1,
          })
        }
      }
      await flush()
    }
    for (const size of sizes) {
      await fill(size)
      const times: number[] = []
      const made: string[] = []
      for (let i = 0; i < 20; i++) {
        const name = `new${size}-${i}`
        const t0 = process.hrtime.bigint()
        await lat.write((m) => m.createService(req(name)))
        times.push(Number(process.hrtime.bigint() - t0) / 1e6)
        made.push(name)
      }
      for (const name of made) await lat.write((m) => m.removeService(name))
      out.createP50Ms[String(size)] = Math.round(pct(times, 50) * 100) / 100
      out.lines.push(
        `  etcd (3) ${String(size).padStart(6)} services: create p50 ${pct(times, 50).toFixed(2).padStart(7)} ms  p99 ${pct(times, 99).toFixed(2).padStart(7)} ms (20)`,
      )
    }

    // 2. 10 concurrent clients on 3 managers, 200 creates into an empty cluster.
    const conc = await managers('/scale/concurrent/')
    const total = 200
    let next = 0
    const t0 = Date.now()
    await Promise.all(
      Array.from({length: 10}, async (_, c) => {
        for (let i = next++; i < total; i = next++) await conc.ms[c % 3]!.write((m) => m.createService(req(`c${i}`)))
      }),
    )
    const secs = (Date.now() - t0) / 1000
    const recs = await conc.ms[0]!.records()
    const addrs: string[] = []
    for (const [k, v] of recs) {
      if (k.startsWith('service/')) for (const x of (v as Service).vips ?? []) addrs.push(`${x.networkId}/${x.ip}`)
      if (k.startsWith('task/')) for (const x of (v as Task).attachments) addrs.push(`${x.networkId}/${x.ip}`)
    }
    out.createsPerSec = Math.round((total / secs) * 10) / 10
    out.duplicateAddresses = addrs.length - new Set(addrs).size
    const retries = conc.ms.reduce((s, m) => s + m.retries, 0)
    const sent = conc.ms.reduce((s, m) => s + m.batches, 0)
    const again = conc.ms.reduce((s, m) => s + m.retriedRequests, 0)
    const pipelined = conc.ms.reduce((s, m) => s + m.pipelined, 0)
    const most = Math.max(...conc.ms.map((m) => m.mostInFlight))
    const early = conc.ms.reduce((s, m) => s + m.overUnseen, 0)
    out.lines.push(
      `  etcd (3), 10 concurrent clients on 3 managers, ${total} creates: ${out.createsPerSec} creates/s, ` +
        `${addrs.length} addresses, ${out.duplicateAddresses} duplicates, ${sent} transactions, ${retries} retried (${again} requests in them), ` +
        `${pipelined} sent beside another of their manager's (at most ${most} in flight), ` +
        `${early} decided over a commit of theirs the watch had not brought back yet`,
    )
    return out
  } finally {
    for (const b of backends) b.close()
    for (const c of clients) c.close()
    for (const s of stores) s.close()
    for (const m of members) await stopEtcdMember(m)
    rmSync(dir, {recursive: true, force: true})
  }
}
