// The control plane at scale (issue 24), in process: the manager's own code on the embedded
// store (a real Store on this machine's disk, validated as the agent's is), with 1,000 node
// records and services of 3 replicas (a VIP and one address per task on one /16 network).
// At each size (100, 1,000, 10,000 services, up to --services N) the cluster is filled with
// records as a placed cluster holds them (service, VIP, tasks, their nodes' running statuses;
// written straight into the store, so the fill costs the same before and after a change to the
// manager), then measured: service create latency (the manager's call, no socket, no fsync
// wait), one placement pass over the placed cluster (what the loop runs on a change and every
// 3 s), and the API's `service ls` and `service ps` views. The event loop's delay is sampled
// (perf_hooks.monitorEventLoopDelay) during those measurements only, not during the fill.
// Numbers, not assertions. The last line printed alone is one JSON object; null = not measured.
import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {Session} from 'node:inspector/promises'
import {monitorEventLoopDelay} from 'node:perf_hooks'
import {fileURLToPath} from 'node:url'
import {ClusterReader} from '../src/store/cluster-reader.js'
import {serviceListViewSliced, serviceTasksView} from '../src/agent/render.js'
import {Manager} from '../src/manager/manager.js'
import {startManagerLoop} from '../src/manager/loop.js'
import {macForIp} from '../src/model/allocate.js'
import {formatIpv4, parseIpv4} from '../src/model/ipv4.js'
import {valueProblem} from '../src/model/shape.js'
import type {NodeRecord, Service, Task, TaskStatus} from '../src/model/types.js'
import {CLUSTER_KEY, keyOf} from '../src/store/keys.js'
import {Store} from '../src/store/store.js'
import {clusterSpec, nodeRecord} from '../test/unit/model-records.js'
import {benchScaleEtcd} from './scale-etcd.js'
import {pct} from './percentile.js'

export type ScaleJson = {
  createP50EmbeddedMs: Record<'100' | '1000' | '10000', number | null>
  createP50EtcdMs: Record<'100' | '1000' | '10000', number | null>
  placementPassMs: number | null
  eventLoopMaxDelayMs: number | null
  etcdCreatesPerSec: number | null
  duplicateAddresses: number | null
  serviceLsMs: number | null
  servicePsMs: number | null
}

const SIZES = [100, 1000, 10000] as const
const NODES = 1000
const REPLICAS = 3
const SUBNET = '10.80.0.0/16'

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6
const tick = () => new Promise((r) => setImmediate(r))
const round = (x: number) => Math.round(x * 100) / 100

export async function benchScale(
  opts: {
    services?: number
    createsOnly?: boolean
    etcdServices?: number
    cpuProf?: string
    maxInFlight?: number
    concurrentCreates?: number
    warm?: number
    /** etcd: the warm-up on a prefix of its own, through backends of its own (the earlier bench), not the timed ones. */
    warmApart?: boolean
  } = {},
): Promise<{lines: string[]; json: ScaleJson}> {
  const max = opts.services ?? 10000
  const sizes = SIZES.filter((s) => s <= max)
  const json: ScaleJson = {
    createP50EmbeddedMs: {'100': null, '1000': null, '10000': null},
    createP50EtcdMs: {'100': null, '1000': null, '10000': null},
    placementPassMs: null,
    eventLoopMaxDelayMs: null,
    etcdCreatesPerSec: null,
    duplicateAddresses: null,
    serviceLsMs: null,
    servicePsMs: null,
  }
  const lines: string[] = []
  const dir = mkdtempSync(join(tmpdir(), 'sn-bench-scale-'))
  const store = new Store(dir, 'n0000', {validate: valueProblem, reapIntervalMs: 0}).open()
  const loopDelay = monitorEventLoopDelay({resolution: 5})
  try {
    store.put(CLUSTER_KEY, clusterSpec({id: 'scale'}))
    const nodeIds = Array.from({length: NODES}, (_, i) => `n${String(i).padStart(4, '0')}`)
    for (const [i, id] of nodeIds.entries())
      store.put(
        keyOf('node', id),
        nodeRecord(id, formatIpv4(parseIpv4('172.31.0.0') + i + 1), {role: i === 0 ? 'manager' : 'worker'}),
      )
    const manager = new Manager(store, 'n0000')
    const c = new ClusterReader(store, 'n0000')
    const net = manager.createNetwork({name: 'net', subnet: SUBNET})
    let nextIp = parseIpv4(net.gateway) + 1
    const ip = () => formatIpv4(nextIp++)
    let filled = 0
    const now = Date.now()

    // Records as the manager and the nodes would have written them; yields now and then so the
    // store's group commit keeps up (its log is on disk as in the agent).
    const fill = async (to: number) => {
      for (; filled < to; filled++) {
        const id = `svc${String(filled).padStart(6, '0')}`
        const svc: Service = {
          id,
          name: `s${filled}`,
          mode: {replicas: REPLICAS},
          networks: [net.id],
          command: ['sleep', '100000'],
          endpointMode: 'vip',
          vips: [{networkId: net.id, ip: ip()}],
          createdAt: now,
          updatedAt: now,
        }
        store.put(keyOf('service', id), svc)
        for (let slot = 1; slot <= REPLICAS; slot++) {
          const a = ip()
          const t: Task = {
            // task ids are 24 hex digits (src/model/ids.ts): the service's number and the slot, spelled in hex
            id: `${filled.toString(16).padStart(20, '0')}${slot.toString(16).padStart(4, '0')}`,
            serviceId: id,
            serviceName: svc.name,
            slot,
            nodeId: nodeIds[(filled * REPLICAS + slot) % NODES]!,
            desiredState: 'running',
            attachments: [{networkId: net.id, ip: a, mac: macForIp(a)}],
            createdAt: now,
          }
          store.put(keyOf('task', t.id), t)
          const st: TaskStatus = {taskId: t.id, nodeId: t.nodeId, state: 'running', restarts: 0, updatedAt: now}
          store.put(keyOf('taskstatus', t.id), st)
        }
        if (filled % 500 === 0) {
          await store.sync()
          await tick()
        }
      }
      await store.sync()
    }

    lines.push(
      `${NODES} node records, services of ${REPLICAS} replicas on one ${SUBNET} network (a VIP and an address per task), embedded store:`,
    )
    let worstDelay = 0
    for (const size of sizes) {
      await fill(size)
      loopDelay.reset()
      loopDelay.enable()
      // The manager's loop as the agent runs it (the timer's pass left out: measured on its own).
      // Its first pass checks every service: one full placement pass over the placed cluster.
      const loop = opts.createsOnly ? undefined : startManagerLoop(manager, store, () => undefined, {intervalMs: 3_600_000})
      let fullMs = 0
      if (loop) {
        await tick()
        const t0 = process.hrtime.bigint()
        const problems = loop.pass()
        fullMs = ms(t0)
        if (problems.size > 0) throw new Error(`placement found problems: ${[...problems.values()][0]}`)
        await tick()
      }
      // The delay the full pass caused; then the delay around requests alone (the creates and the
      // loop's passes over what they changed, service ps).
      let overall = loopDelay.max / 1e6
      loopDelay.reset()
      // Creates as API requests arrive: one at a time, the loop free in between.
      const samples = size >= 10000 ? 30 : 50
      const times: number[] = []
      const made: string[] = []
      // 10 creates first, not timed, then gone: the first size's creates would otherwise time the
      // manager's code being compiled (the 100-service p50 was then the highest of the three).
      for (let i = 0; i < 10; i++) {
        manager.createService({
          name: `warm${size}-${i}`,
          mode: 'replicated',
          replicas: REPLICAS,
          networks: ['net'],
          command: ['sleep', '1'],
        })
        await tick()
      }
      for (let i = 0; i < 10; i++) manager.removeService(`warm${size}-${i}`)
      await store.sync()
      const prof = opts.cpuProf ? await startProfile() : undefined
      for (let i = 0; i < samples; i++) {
        const name = `new${size}-${i}`
        const t0 = process.hrtime.bigint()
        manager.createService({name, mode: 'replicated', replicas: REPLICAS, networks: ['net'], command: ['sleep', '1']})
        times.push(ms(t0))
        made.push(name)
        await tick()
      }
      if (prof) await prof.stop(join(opts.cpuProf!, `embedded-creates-${size}.cpuprofile`))
      const key = String(size) as '100' | '1000' | '10000'
      json.createP50EmbeddedMs[key] = round(pct(times, 50))
      // GET /services/NAME/tasks (service ps), as api.ts answers it, for services across the cluster.
      const psTimes: number[] = []
      for (let i = 0; i < 5; i++) {
        const ref = `s${Math.floor((i * size) / 5)}`
        const t0 = process.hrtime.bigint()
        const ps = serviceTasksView(c.findService(ref), c)
        psTimes.push(ms(t0))
        if (ps.length !== REPLICAS) throw new Error(`service ps ${ref}: ${ps.length} tasks, not ${REPLICAS}`)
        await tick()
      }
      if (size === sizes[sizes.length - 1]) json.servicePsMs = round(pct(psTimes, 50))
      const psLine = `   service ps p50 ${pct(psTimes, 50).toFixed(2).padStart(7)} ms`
      const createLine = `  ${String(size).padStart(6)} services: create p50 ${pct(times, 50).toFixed(2).padStart(7)} ms  p99 ${pct(times, 99).toFixed(2).padStart(7)} ms (${samples})`
      const requestsDelay = loopDelay.max / 1e6
      if (!loop) {
        loopDelay.disable()
        lines.push(createLine + psLine)
        for (const name of made) manager.removeService(name)
        await store.sync()
        continue
      }
      // A node goes down (its record; membership is not in this bench) and the loop's pass places
      // its tasks elsewhere; then it is back. The pass runs at once, before the debounce would.
      const down = nodeIds[1 + (size % (NODES - 1))]!
      const rec = store.get<NodeRecord>(keyOf('node', down))!
      store.put(keyOf('node', down), {...rec, state: 'down'})
      let t0 = process.hrtime.bigint()
      const moved = loop.pass()
      const changeMs = ms(t0)
      await tick()
      store.put(keyOf('node', down), rec)
      loop.pass()
      loop.stop()
      await tick()
      // GET /services (service ls), as api.ts answers it: rendered in slices, then serialized.
      await tick()
      const beforeLs = loopDelay.max / 1e6
      loopDelay.reset()
      t0 = process.hrtime.bigint()
      const ls = await serviceListViewSliced(c)
      const lsBytes = JSON.stringify(ls).length
      const lsMs = ms(t0)
      await tick()
      const lsDelay = loopDelay.max / 1e6
      loopDelay.disable()
      overall = Math.max(overall, beforeLs, requestsDelay, lsDelay)
      worstDelay = Math.max(worstDelay, overall)
      if (ls.length !== size + samples) throw new Error(`service ls: ${ls.length} services, not ${size + samples}`)
      if (moved.size > 0) throw new Error(`placement found problems: ${[...moved.values()][0]}`)
      lines.push(
        createLine +
          `   placement pass: full ${fullMs.toFixed(1).padStart(8)} ms, after a node went down ${changeMs.toFixed(1).padStart(8)} ms` +
          `   service ls ${lsMs.toFixed(1).padStart(8)} ms (${(lsBytes / 1e6).toFixed(1)} MB, loop held ${lsDelay.toFixed(1)} ms)` +
          psLine +
          `   event loop max delay ${overall.toFixed(1)} ms (around the creates and ps alone ${requestsDelay.toFixed(1)} ms)`,
      )
      if (size === sizes[sizes.length - 1]) {
        json.placementPassMs = round(fullMs)
        json.serviceLsMs = round(lsMs)
      }
      // The measured creates go again, so the next fill's addresses stay free.
      for (const name of made) manager.removeService(name)
      await store.sync()
    }
    // etcd: requests decide over one index kept from the watch, so it is measured up to 10,000 too.
    const etcdMax = Math.min(max, opts.etcdServices ?? 10000)
    if (etcdMax >= 100) {
      const e = await benchScaleEtcd(
        SIZES.filter((s) => s <= etcdMax),
        {
          cpuProf: opts.cpuProf,
          maxInFlight: opts.maxInFlight,
          creates: opts.concurrentCreates,
          warm: opts.warm,
          warmApart: opts.warmApart,
        },
      )
      for (const [k, v] of Object.entries(e.createP50Ms)) json.createP50EtcdMs[k as '100' | '1000' | '10000'] = v
      json.etcdCreatesPerSec = e.createsPerSec
      json.duplicateAddresses = e.duplicateAddresses
      lines.push(...e.lines)
    }
    if (!opts.createsOnly) {
      json.eventLoopMaxDelayMs = round(worstDelay)
      lines.push(
        `  (JSON: the full placement pass, ls and ps at ${sizes[sizes.length - 1]} services; the event loop's max delay over all sizes)`,
      )
    }
    return {lines, json}
  } finally {
    loopDelay.disable()
    store.close()
    rmSync(dir, {recursive: true, force: true})
  }
}

/**
 * --cpu-prof DIR: the embedded creates at each size are profiled in this process (node:inspector,
 * sampled every 50 us), the etcd managers' processes with node's --cpu-prof (written as they
 * exit); read them with bench/cpuprofile-top.ts FILE --min-ms 0.
 */
async function startProfile(): Promise<{stop: (file: string) => Promise<void>}> {
  const s = new Session()
  s.connect()
  await s.post('Profiler.enable')
  await s.post('Profiler.setSamplingInterval', {interval: 50})
  await s.post('Profiler.start')
  return {
    stop: async (file) => {
      const {profile} = await s.post('Profiler.stop')
      s.disconnect()
      writeFileSync(file, JSON.stringify(profile))
    },
  }
}

const USAGE = `usage: node --import tsx bench/scale.ts [options]
  --services N            embedded: sizes 100, 1,000, 10,000 up to N (default 10000)
  --creates-only          embedded: creates and service ps only (no placement passes, no service ls)
  --etcd-services N       etcd: sizes up to N, at most --services (below 100: no etcd part)
  --concurrent-creates N  etcd: timed creates of the 10 clients on 3 managers (default 200)
  --warm N                etcd: creates per manager before the timed ones (default 300), made by
                          the timed managers' own backends into the timed prefix
  --warm-apart            etcd: the warm-up on a prefix of its own, through backends of its own
                          (the bench before i24-etcd4: the timed backends start cold)
  --max-in-flight N       etcd: most batches of a manager in flight at once (default 4)
  --cpu-prof DIR          CPU profiles of the embedded creates and of each etcd manager's timed part`

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (process.argv.includes('--help') || process.argv.includes('-h')) {
    console.log(USAGE)
    process.exit(0)
  }
  const at = process.argv.indexOf('--services')
  const services = at >= 0 ? Number(process.argv[at + 1]) : undefined
  if (services !== undefined && (!Number.isInteger(services) || services < 100)) {
    console.error('--services N: a whole number, 100 or more')
    process.exit(2)
  }
  const e = process.argv.indexOf('--etcd-services')
  const etcdServices = e >= 0 ? Number(process.argv[e + 1]) : undefined
  const p = process.argv.indexOf('--cpu-prof')
  const cpuProf = p >= 0 ? process.argv[p + 1] : undefined
  if (cpuProf !== undefined) mkdirSync(cpuProf, {recursive: true})
  const f = process.argv.indexOf('--max-in-flight')
  const maxInFlight = f >= 0 ? Number(process.argv[f + 1]) : undefined
  const cc = process.argv.indexOf('--concurrent-creates')
  const concurrentCreates = cc >= 0 ? Number(process.argv[cc + 1]) : undefined
  if (concurrentCreates !== undefined && (!Number.isInteger(concurrentCreates) || concurrentCreates < 10)) {
    console.error('--concurrent-creates N: a whole number, 10 or more')
    process.exit(2)
  }
  const w = process.argv.indexOf('--warm')
  const warm = w >= 0 ? Number(process.argv[w + 1]) : undefined
  if (warm !== undefined && (!Number.isInteger(warm) || warm < 0)) {
    console.error('--warm N: a whole number of creates per manager, 0 or more')
    process.exit(2)
  }
  const {lines, json} = await benchScale({
    services,
    createsOnly: process.argv.includes('--creates-only'),
    etcdServices,
    cpuProf,
    maxInFlight,
    concurrentCreates,
    warm,
    warmApart: process.argv.includes('--warm-apart'),
  })
  for (const l of lines) console.log(l)
  console.log(JSON.stringify(json))
}
