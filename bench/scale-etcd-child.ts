// One manager of bench/scale-etcd.ts's concurrent creates, in a process of its own as a user
// runs one per node: the manager's own code through the etcd backend, with 1,000 node records in
// its gossip store. The bench's clients (in the parent) send it requests over the IPC channel
// and wait for each answer, as a CLI waits for the agent's API.
//   argv: JSON {endpoints, prefix, selfId, dir, nodes}
// Messages in: {op:'setup', subnet} (the cluster record and the network), {op:'warm', prefix,
// subnet, count, setup} (creates made before the timed ones, by the three managers together, so a
// running manager's code is compiled, for the records it makes and those it reads from the
// others' commits: on the timed prefix through the backend the timed creates use; on another
// prefix through a backend of its own, its cluster record and network first with setup), {op:'start'} (the
// timed part begins: the event loop's use is counted from here), {op:'create', id, req},
// {op:'stats', id}, {op:'close'}. Out: {op:'ready'}, {id, ok, value} or {id, error}.
// It exits when told to close or when the channel closes (the parent gone, however it ended).
import {rmSync, writeFileSync} from 'node:fs'
import {Session} from 'node:inspector/promises'
import {join} from 'node:path'
import {performance, type EventLoopUtilization} from 'node:perf_hooks'
import {EtcdBackend} from '../src/manager/etcd-backend.js'
import {etcdClient} from '../src/manager/etcd-client.js'
import type {ServiceRequest} from '../src/manager/manager.js'
import {formatIpv4, parseIpv4} from '../src/model/ipv4.js'
import {valueProblem} from '../src/model/shape.js'
import {CLUSTER_KEY, keyOf} from '../src/store/keys.js'
import {Store} from '../src/store/store.js'
import {clusterSpec, nodeRecord} from '../test/unit/model-records.js'

export type ChildConfig = {
  endpoints: string[]
  prefix: string
  selfId: string
  dir: string
  nodes: number
  /** Most batches of the manager in flight at once (the backend's maxInFlight; absent: its default). */
  maxInFlight?: number
  /** A directory: the timed part ('start' to 'stats') is profiled into manager-<selfId>.cpuprofile there. */
  cpuProf?: string
}

export type ChildStats = {
  retries: number
  batches: number
  retriedRequests: number
  pipelined: number
  mostInFlight: number
  overUnseen: number
  /** Time deciding batches and waiting for their transactions, ms (from the warm-up on: 'start' does not reset them). */
  decideMs: number
  txnMs: number
  /** Time from a create's arrival here to its answer, summed, ms (timed part only). */
  requestMs: number
  requests: number
  /** The event loop's busy share from 'start' to 'stats' (perf_hooks.eventLoopUtilization). */
  loopBusy: number
  /** CPU time the process used over the same span (user + system), ms: busy computing, or waiting for a core. */
  cpuMs: number
  /** Of which in the kernel (system time: the store's log writes and fdatasync, sockets), ms. */
  systemMs: number
}

export type ToChild =
  | {op: 'setup'; id: number; subnet: string}
  | {op: 'warm'; id: number; prefix: string; subnet: string; count: number; setup?: boolean}
  | {op: 'start'}
  | {op: 'create'; id: number; req: ServiceRequest}
  | {op: 'stats'; id: number}
  | {op: 'close'}

export type FromChild = {op: 'ready'} | {id: number; ok: true; value: unknown} | {id: number; ok: false; error: string}

const cfg = JSON.parse(process.argv[2] ?? '') as ChildConfig
const send = (m: FromChild) => process.send!(m)
const storeDir = join(cfg.dir, `store-${cfg.selfId}`)
const localStore = (dir: string): Store => {
  const s = new Store(dir, cfg.selfId, {validate: valueProblem, reapIntervalMs: 0}).open()
  for (let i = 0; i < cfg.nodes; i++) {
    const n = `n${String(i).padStart(4, '0')}`
    s.put(keyOf('node', n), nodeRecord(n, formatIpv4(parseIpv4('172.31.0.0') + i + 1), {role: i < 3 ? 'manager' : 'worker'}))
  }
  return s
}
const local = localStore(storeDir)
const client = etcdClient({endpoints: cfg.endpoints, prefix: cfg.prefix})
const backend = new EtcdBackend({client, prefix: cfg.prefix, local, selfId: cfg.selfId, endpoints: cfg.endpoints})
if (cfg.maxInFlight !== undefined) backend.maxInFlight = cfg.maxInFlight
let since: EventLoopUtilization | undefined
let cpuSince: NodeJS.CpuUsage | undefined
let closed = false
let profiler: Session | undefined
let decide0 = 0
let txn0 = 0
/** The backend's counts at 'start': the warm-up on the timed prefix goes through the same backend. */
let base = {retries: 0, batches: 0, retriedRequests: 0, pipelined: 0, overUnseen: 0}
let requestMs = 0
let requests = 0

function close(code: number): void {
  if (closed) return
  closed = true
  backend.close()
  client.close()
  local.close()
  rmSync(storeDir, {recursive: true, force: true})
  process.exit(code)
}

process.on('disconnect', () => close(0))
process.on('message', (m: ToChild) => {
  const reply = (id: number, p: Promise<unknown>) =>
    p.then(
      (value) => send({id, ok: true, value}),
      (e: unknown) => send({id, ok: false, error: e instanceof Error ? e.message : String(e)}),
    )
  if (m.op === 'close') close(0)
  else if (m.op === 'start') {
    since = performance.eventLoopUtilization()
    cpuSince = process.cpuUsage()
    decide0 = backend.decideMs
    txn0 = backend.txnMs
    const {retries, batches, retriedRequests, pipelined, overUnseen} = backend
    base = {retries, batches, retriedRequests, pipelined, overUnseen}
    if (cfg.cpuProf) {
      profiler = new Session()
      profiler.connect()
      void profiler
        .post('Profiler.enable')
        .then(() => profiler!.post('Profiler.setSamplingInterval', {interval: 100}))
        .then(() => profiler!.post('Profiler.start'))
    }
  } else if (m.op === 'create') {
    const t0 = performance.now()
    void reply(
      m.id,
      backend
        .write((mg) => mg.createService(m.req))
        .finally(() => {
          requestMs += performance.now() - t0
          requests++
        }),
    )
  } else if (m.op === 'setup')
    void reply(
      m.id,
      (async () => {
        await backend.importRecords([{key: CLUSTER_KEY, value: clusterSpec({id: 'scale'})}])
        return backend.write((mg) => mg.createNetwork({name: 'net', subnet: m.subnet}))
      })(),
    )
  else if (m.op === 'warm')
    void reply(
      m.id,
      (async () => {
        // On the timed prefix: the backend the timed creates use (its cache, index and pipeline
        // objects). Elsewhere: a backend of its own, closed after (the earlier warm-up: see scale-etcd.ts).
        const here = m.prefix === cfg.prefix
        const dir = join(cfg.dir, `warm-${cfg.selfId}-${m.setup ? 'setup' : 'creates'}`)
        const c = here ? client : etcdClient({endpoints: cfg.endpoints, prefix: m.prefix})
        const s = here ? local : localStore(dir)
        const b = here
          ? backend
          : new EtcdBackend({client: c, prefix: m.prefix, local: s, selfId: cfg.selfId, endpoints: cfg.endpoints})
        try {
          if (m.setup) {
            await b.importRecords([{key: CLUSTER_KEY, value: clusterSpec({id: 'warm'})}])
            await b.write((mg) => mg.createNetwork({name: 'net', subnet: m.subnet}))
          }
          let next = 0
          // 3 at a time, so batches of several requests are compiled too.
          const lane = async () => {
            for (let i = next++; i < m.count; i = next++)
              await b.write((mg) =>
                mg.createService({
                  name: `w${cfg.selfId}-${i}`,
                  mode: 'replicated',
                  replicas: 3,
                  networks: ['net'],
                  command: ['sleep', '1'],
                }),
              )
          }
          await Promise.all([lane(), lane(), lane()])
        } finally {
          if (!here) {
            b.close()
            c.close()
            s.close()
            rmSync(dir, {recursive: true, force: true})
          }
        }
      })(),
    )
  else if (m.op === 'stats') {
    const stats: ChildStats = {
      retries: backend.retries - base.retries,
      batches: backend.batches - base.batches,
      retriedRequests: backend.retriedRequests - base.retriedRequests,
      pipelined: backend.pipelined - base.pipelined,
      mostInFlight: backend.mostInFlight,
      overUnseen: backend.overUnseen - base.overUnseen,
      decideMs: backend.decideMs - decide0,
      txnMs: backend.txnMs - txn0,
      requestMs,
      requests,
      loopBusy: since ? performance.eventLoopUtilization(since).utilization : 0,
      cpuMs: cpuSince ? (({user, system}) => (user + system) / 1000)(process.cpuUsage(cpuSince)) : 0,
      systemMs: cpuSince ? process.cpuUsage(cpuSince).system / 1000 : 0,
    }
    // The profile is on disk before the answer (the parent closes this process soon after).
    const p = profiler
    profiler = undefined
    void reply(
      m.id,
      p
        ? p.post('Profiler.stop').then(({profile}) => {
            writeFileSync(join(cfg.cpuProf!, `manager-${cfg.selfId}.cpuprofile`), JSON.stringify(profile))
            p.disconnect()
            return stats
          })
        : Promise.resolve(stats),
    )
  }
})
send({op: 'ready'})
