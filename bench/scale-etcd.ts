// The control plane at scale on etcd (issue 24): the manager's own code through the etcd
// backend on 3 local members (as bench/etcd.ts starts them), 1,000 node records in each
// manager's gossip store, services of 3 replicas on one /16 network. Create latency at each
// size (the cluster filled by transactions that write the records and their allocation keys
// as the backend would), and concurrent creates: 10 clients on 3 managers, with the addresses
// given twice counted from etcd's records and the transactions retried.
import {fork, type ChildProcess} from 'node:child_process'
import {mkdtempSync, rmSync} from 'node:fs'
import {cpus, loadavg, tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'
import type {Etcd3, Watcher} from 'etcd3'
import {EtcdBackend} from '../src/manager/etcd-backend.js'
import {etcdClient} from '../src/manager/etcd-client.js'
import {ALLOC, STATE, allocationsOf} from '../src/manager/etcd-keys.js'
import {macForIp} from '../src/model/allocate.js'
import {formatIpv4, parseIpv4} from '../src/model/ipv4.js'
import {valueProblem} from '../src/model/shape.js'
import type {Service, Task} from '../src/model/types.js'
import type {Json} from '../src/store/json.js'
import {CLUSTER_KEY, keyOf} from '../src/store/keys.js'
import {Store} from '../src/store/store.js'
import {stopEtcdMember, type EtcdMember} from '../src/store/etcd-process.js'
import {clusterSpec, nodeRecord} from '../test/unit/model-records.js'
import type {ChildConfig, ChildStats, FromChild, ToChild} from './scale-etcd-child.js'
import {threeMembers} from './etcd.js'
import {pct} from './percentile.js'
import {machineBusy, machineCpu, mainThreadCpuMs, threadsCpuMs} from './proc-cpu.js'

const NODES = 1000
const REPLICAS = 3
const SUBNET = '10.80.0.0/16'
/** Creates each manager process makes, the three together on a prefix of the warm-up, before the concurrent creates are timed. */
const WARM = 300

const CHILD = join(dirname(fileURLToPath(import.meta.url)), 'scale-etcd-child.ts')

type Child = {post: (m: ToChild) => void; call: (m: ToChild & {id: number}) => Promise<unknown>}

/**
 * Starts one manager process (`node --import tsx scale-etcd-child.ts`), added to `children` at
 * once so the bench's cleanup stops it whatever happens next; resolves when it is ready. A child
 * that exits fails its pending calls with its exit status instead of leaving the bench waiting.
 */
function startChild(children: ChildProcess[], cfg: ChildConfig): Promise<Child> {
  const proc = fork(CHILD, [JSON.stringify(cfg)], {
    // tsx resolved from here, so the child loads wherever the bench was started from.
    execArgv: ['--import', import.meta.resolve('tsx')],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  children.push(proc)
  const pending = new Map<number, {resolve: (v: unknown) => void; reject: (e: Error) => void}>()
  let nextId = 1
  let ready: () => void = () => undefined
  let failed: (e: Error) => void = () => undefined
  const up = new Promise<void>((res, rej) => {
    ready = res
    failed = rej
  })
  proc.on('message', (m: FromChild) => {
    if ('op' in m) return ready()
    const p = pending.get(m.id)
    pending.delete(m.id)
    if (m.ok) p?.resolve(m.value)
    else p?.reject(new Error(`manager ${cfg.selfId}: ${m.error}`))
  })
  // A send to a child that is gone: its exit (below) says why.
  proc.on('error', (e) => failed(e))
  proc.on('exit', (code, signal) => {
    const e = new Error(`manager ${cfg.selfId} (pid ${proc.pid}) exited: ${signal ?? `status ${code}`}`)
    failed(e)
    for (const p of pending.values()) p.reject(e)
    pending.clear()
  })
  const child: Child = {
    post: (m) => proc.send(m),
    call: (m) =>
      new Promise((resolve, reject) => {
        const id = nextId++
        pending.set(id, {resolve, reject})
        proc.send({...m, id})
      }),
  }
  return up.then(() => child)
}

/** CPU time an etcd member has used, ms (its threads' run time: proc-cpu.ts). */
const cpuMsOf = (m: EtcdMember): number => threadsCpuMs(m.proc.pid)

/** Asks the child to close, SIGKILL after 3 s; resolves once it has exited. */
async function stopChild(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return
  const gone = new Promise<void>((r) => proc.once('exit', () => r()))
  if (proc.connected) proc.send({op: 'close'} satisfies ToChild)
  else proc.kill('SIGTERM')
  const t = setTimeout(() => proc.kill('SIGKILL'), 3000)
  await gone
  clearTimeout(t)
}

/**
 * etcd alone, measured the same way: transactions carrying what a create writes (a service and its
 * 3 tasks as a manager wrote them, copied from etcd, and their 5 allocation keys: the name and 4 addresses; each compared
 * absent, and the network compared at its revision), with 3 other clients watching the prefix as
 * the managers' copies do. 200 creates, first one per transaction from 10 lanes (the clients'
 * concurrency), then in batches of the size the managers' transactions had on average, from 3
 * lanes (one per manager). No manager logic, index, gossip store or IPC: the rate these reach is
 * what the members on this machine allow, whatever the managers do.
 */
async function bareCreates(
  endpoints: string[],
  members: EtcdMember[],
  recs: ReadonlyMap<string, Json>,
  sample: Service,
  clients: Etcd3[],
  managerTxns: number,
  managerCreates: number,
): Promise<string[]> {
  const prefix = '/scale/bare/'
  const svc = JSON.stringify(recs.get(keyOf('service', sample.id)))
  const tasks = [...recs]
    .filter(([k, v]) => k.startsWith('task/') && (v as Task).serviceId === sample.id)
    .map(([, v]) => JSON.stringify(v))
  const watchers: Watcher[] = []
  const lines: string[] = []
  const writer = etcdClient({endpoints, prefix})
  clients.push(writer)
  const ns = writer.namespace(prefix)
  await ns.put('state/network/net').value('{}')
  const netMod = (await ns.get('state/network/net').exec()).kvs[0]!.mod_revision
  for (let w = 0; w < 3; w++) {
    const c = etcdClient({endpoints, prefix})
    clients.push(c)
    const watcher = await c.namespace(prefix).watch().prefix('').create()
    // Decoded as the managers' copies decode them.
    watcher.on('data', (res) => {
      for (const ev of res.events) void [ev.kv.key.toString(), ev.kv.value.toString(), ev.kv.mod_revision]
    })
    watchers.push(watcher)
  }
  let n = 0
  const run = async (lanes: number, perTxn: number, total: number) => {
    let next = 0
    const times: number[] = []
    const cpu0 = members.map(cpuMsOf)
    const own0 = process.cpuUsage()
    const t0 = Date.now()
    await Promise.all(
      Array.from({length: lanes}, async () => {
        while (next < total) {
          const k = Math.min(perTxn, total - next)
          next += k
          let b = ns.if('state/network/net', 'Mod', '==', netMod)
          const puts: [string, string][] = []
          for (let j = 0; j < k; j++) {
            const id = `b${n++}`
            puts.push([`state/service/${id}`, svc])
            tasks.forEach((t, i) => puts.push([`state/task/${id}-${i}`, t]))
            // Its name and its 4 addresses (the VIP and one per task), as allocationsOf gives them.
            for (let a = 0; a < 5; a++) puts.push([`alloc/bare/${id}/${a}`, `service/${id}`])
          }
          for (const [key] of puts) b = b.and(key, 'Mod', '==', 0)
          const s0 = process.hrtime.bigint()
          const res = await b.then(...puts.map(([key, v]) => ns.put(key).value(v))).commit()
          times.push(Number(process.hrtime.bigint() - s0) / 1e6)
          if (!res.succeeded) throw new Error('bare transaction refused')
        }
      }),
    )
    const secs = (Date.now() - t0) / 1000
    const cpu = members.map((m, i) => cpuMsOf(m) - cpu0[i]!)
    const own = (({user, system}) => (user + system) / 1000)(process.cpuUsage(own0))
    lines.push(
      `  etcd (3) alone, the same writes (${puts1(tasks.length)} keys a create, 3 watchers), ${total} creates, ${lanes} in flight, ${perTxn} a transaction: ` +
        `${Math.round((total / secs) * 10) / 10} creates/s, ${times.length} transactions, p50 ${pct(times, 50).toFixed(1)} ms; ` +
        `etcd members ${cpu.map(Math.round).join(' / ')} ms of CPU over ${Math.round(secs * 1000)} ms, ` +
        `the writer and the 3 watchers (etcd3 in this process) ${Math.round(own)} ms`,
    )
  }
  try {
    await run(10, 1, 200)
    await run(3, Math.max(1, Math.round(managerCreates / Math.max(1, managerTxns))), 200)
  } finally {
    for (const w of watchers) await w.cancel().catch(() => undefined)
  }
  return lines
}

const puts1 = (tasks: number) => 1 + tasks + 5

/**
 * The whole machine over the timed creates, per create: the CPU each manager process, each etcd
 * member and the bench's own process (the 10 clients) used, their sum, the rate that sum allows
 * on all cores if nothing else ran (cores x 1,000 / ms a create), and how busy the cores were,
 * with what the rest of the machine (other work, not this bench) took of them.
 */
function cpuBudget(
  creates: number,
  secs: number,
  managers: number[],
  members: number[],
  own: number,
  machine: {share: number; busyMs: number; totalMs: number},
): string {
  const per = (ms: number) => ms / creates
  const f = (ms: number) => per(ms).toFixed(2)
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0)
  const ours = sum(managers) + sum(members) + own
  const cores = cpus().length
  const others = Math.max(0, machine.busyMs - ours)
  // All cores' time over the span, as /proc/stat counted it (the same window as the busy share).
  const span = machine.totalMs > 0 ? machine.totalMs : secs * 1000 * cores
  return (
    `  CPU a create over the timed creates: managers ${managers.map(f).join(' + ')} = ${f(sum(managers))} ms, ` +
    `etcd members ${members.map(f).join(' + ')} = ${f(sum(members))} ms, the clients' process ${f(own)} ms; ` +
    `${f(ours)} ms in all: at most ${Math.round((cores * 1000) / per(ours))} creates/s on ${cores} free cores; ` +
    `the cores were ${Math.round(machine.share * 100)}% busy (this bench ${Math.round((ours / span) * 100)}%, ` +
    `the rest of the machine ${Math.round((others / span) * 100)}%; load average ${loadavg()
      .map((x) => x.toFixed(1))
      .join(' ')})`
  )
}

export type ScaleEtcdResult = {
  createP50Ms: Record<string, number>
  createsPerSec: number
  duplicateAddresses: number
  lines: string[]
}

export async function benchScaleEtcd(
  sizes: number[],
  opts: {cpuProf?: string; maxInFlight?: number; creates?: number; warm?: number; warmApart?: boolean} = {},
): Promise<ScaleEtcdResult> {
  const dir = mkdtempSync(join(tmpdir(), 'sn-bench-scale-etcd-'))
  const clients: Etcd3[] = []
  const backends: EtcdBackend[] = []
  const stores: Store[] = []
  const children: ChildProcess[] = []
  let members: EtcdMember[] = []
  const out: ScaleEtcdResult = {createP50Ms: {}, createsPerSec: 0, duplicateAddresses: 0, lines: []}
  try {
    const started = await threeMembers(dir)
    members = started.members
    const endpoints = started.endpoints
    const nodeIds = Array.from({length: NODES}, (_, i) => `n${String(i).padStart(4, '0')}`)
    const localStore = (id: string): Store => {
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

    // 2. 10 concurrent clients on 3 managers, 200 creates into the cluster of the warm-up's services. Each manager runs
    // in a process of its own (scale-etcd-child.ts), as a user runs one per node: in one process
    // the three shared one event loop, busy 98-100% of this phase, so the figure was that loop's.
    // The clients stay here: each one sends a create to its manager over the IPC channel and waits
    // for the answer (client c to manager c % 3: 4, 3 and 3 clients), taking the next name from one
    // counter, so a quicker manager serves more. A client costs one message each way.
    const prefix = '/scale/concurrent/'
    const conc = await Promise.all(
      ['n0000', 'n0001', 'n0002'].map((selfId) =>
        startChild(children, {
          endpoints,
          prefix,
          selfId,
          dir,
          nodes: NODES,
          cpuProf: opts.cpuProf,
          maxInFlight: opts.maxInFlight,
        }),
      ),
    )
    await conc[0]!.call({op: 'setup', id: 0, subnet: SUBNET})
    // The warm-up: the three managers create together, as in the timed part, so each has
    // compiled its code for its own records and the others' (their commits, decoded from its
    // watch); alone on a prefix each, the first timed creates still met the others' records, and V8
    // compiled and deoptimized through the timed part. They make it through the backends the timed
    // creates use, into the timed prefix (its records stay: the timed creates go into a cluster of
    // 3 x warm services): a manager runs one backend for its life, and a second one, fresh for the
    // timed part, met its objects' fields and listeners anew, and V8 threw away code compiled for the
    // first (the timed part's "wrong map" and "wrong call target" deopts: bench/README.md).
    // --warm-apart: on a prefix of its own, through backends of its own (the bench before).
    const warmPrefix = opts.warmApart ? '/scale/warm/' : prefix
    if (opts.warmApart) await conc[0]!.call({op: 'warm', id: 0, prefix: warmPrefix, subnet: SUBNET, count: 0, setup: true})
    await Promise.all(conc.map((c) => c.call({op: 'warm', id: 0, prefix: warmPrefix, subnet: SUBNET, count: opts.warm ?? WARM})))
    const total = opts.creates ?? 200
    let next = 0
    const answers: Service[] = []
    for (const c of conc) c.post({op: 'start'})
    const etcdCpu0 = members.map(cpuMsOf)
    const managerCpu0 = children.map((p) => threadsCpuMs(p.pid))
    const managerMain0 = children.map((p) => mainThreadCpuMs(p.pid))
    const machine0 = machineCpu()
    const ownCpu0 = process.cpuUsage()
    const t0 = Date.now()
    await Promise.all(
      Array.from({length: 10}, async (_, c) => {
        for (let i = next++; i < total; i = next++)
          answers.push((await conc[c % 3]!.call({op: 'create', id: 0, req: req(`c${i}`)})) as Service)
      }),
    )
    const secs = (Date.now() - t0) / 1000
    const etcdCpu = members.map((m, i) => cpuMsOf(m) - etcdCpu0[i]!)
    const managerCpu = children.map((p, i) => threadsCpuMs(p.pid) - managerCpu0[i]!)
    // Of the managers' CPU, their main threads' (JavaScript) and the rest (V8's compiler and GC, libuv's pool).
    const managerMain = children.map((p, i) => mainThreadCpuMs(p.pid).main - managerMain0[i]!.main)
    const ownCpu = (({user, system}) => (user + system) / 1000)(process.cpuUsage(ownCpu0))
    const machine = machineBusy(machine0, machineCpu())
    const stats = (await Promise.all(conc.map((c) => c.call({op: 'stats', id: 0})))) as ChildStats[]
    // etcd's content, read by a manager of this process over the same prefix.
    const readerClient = etcdClient({endpoints, prefix})
    clients.push(readerClient)
    const reader = new EtcdBackend({client: readerClient, prefix, local: localStore('reader'), selfId: 'reader', endpoints})
    backends.push(reader)
    const recs = await reader.records()
    const addrs: string[] = []
    for (const [k, v] of recs) {
      if (k.startsWith('service/')) for (const x of (v as Service).vips ?? []) addrs.push(`${x.networkId}/${x.ip}`)
      if (k.startsWith('task/')) for (const x of (v as Task).attachments) addrs.push(`${x.networkId}/${x.ip}`)
    }
    // The managers' answers: each service's VIP, given once over all three, and as etcd holds it.
    const answered = answers.flatMap((s) => (s.vips ?? []).map((x) => `${x.networkId}/${x.ip}`))
    const unlike = answers.filter(
      (s) => JSON.stringify((recs.get(keyOf('service', s.id)) as Service | undefined)?.vips) !== JSON.stringify(s.vips),
    ).length
    const inEtcd = addrs.length - new Set(addrs).size
    const inAnswers = answered.length - new Set(answered).size
    out.createsPerSec = Math.round((total / secs) * 10) / 10
    out.duplicateAddresses = inEtcd + inAnswers + unlike
    const sum = (f: (s: ChildStats) => number) => stats.reduce((a, s) => a + f(s), 0)
    const most = Math.max(...stats.map((s) => s.mostInFlight))
    out.lines.push(
      `  etcd (3), 10 concurrent clients on 3 managers (a process each), ${total} creates: ${out.createsPerSec} creates/s, ` +
        `${addrs.length} addresses, ${out.duplicateAddresses} duplicates (${inEtcd} in etcd, ${inAnswers} among the ${answers.length} answers, ` +
        `${unlike} answers unlike etcd's record), ${sum((s) => s.batches)} transactions, ` +
        `${sum((s) => s.retries)} retried (${sum((s) => s.retriedRequests)} requests in them), ` +
        `${sum((s) => s.pipelined)} sent beside another of their manager's (at most ${most} in flight), ` +
        `${sum((s) => s.overUnseen)} decided over a commit of theirs the watch had not brought back yet; ` +
        `per create in a manager ${(sum((s) => s.requestMs) / sum((s) => s.requests)).toFixed(1)} ms from arrival to answer, ` +
        `per batch deciding ${(sum((s) => s.decideMs) / sum((s) => s.batches)).toFixed(2)} ms, its transaction ${(sum((s) => s.txnMs) / sum((s) => s.batches)).toFixed(1)} ms; ` +
        `managers' event loops busy ${stats.map((s) => `${Math.round(s.loopBusy * 100)}%`).join(' / ')} ` +
        `(CPU used ${stats.map((s) => Math.round(s.cpuMs)).join(' / ')} ms, of which system ${stats.map((s) => Math.round(s.systemMs)).join(' / ')} ms, of ${Math.round(secs * 1000)} ms; ` +
        `etcd members ${etcdCpu.map(Math.round).join(' / ')} ms, the clients' process ${Math.round(ownCpu)} ms; ${cpus().length} cores)`,
    )
    out.lines.push(cpuBudget(total, secs, managerCpu, etcdCpu, ownCpu, machine))
    const mainMs = managerMain.reduce((x, y) => x + y, 0)
    const allMs = managerCpu.reduce((x, y) => x + y, 0)
    out.lines.push(
      `  the managers' CPU a create by thread: main threads (JavaScript, the event loop) ${(mainMs / total).toFixed(2)} ms, ` +
        `their other threads (V8's optimizing compiler and GC workers, libuv's pool: the store's log) ${((allMs - mainMs) / total).toFixed(2)} ms`,
    )
    // 3. The same writes to the same members without the managers: what etcd alone sustains here.
    out.lines.push(
      ...(await bareCreates(
        endpoints,
        members,
        recs,
        answers[0]!,
        clients,
        sum((s) => s.batches),
        total,
      )),
    )
    return out
  } finally {
    await Promise.all(children.map(stopChild))
    for (const b of backends) b.close()
    for (const c of clients) c.close()
    for (const s of stores) s.close()
    for (const m of members) await stopEtcdMember(m)
    rmSync(dir, {recursive: true, force: true})
  }
}
