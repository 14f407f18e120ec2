/**
 * The DNS name table's upkeep per store change (issue 24), in process, on a real store: a cluster
 * of --tasks tasks in --services services (the lab-scale bench's shape: one overlay network, three
 * nodes, this node n1 running a third of the tasks), then --changes changes, each one task's
 * status going from running to starting or back (a restart: out of the names, then in again),
 * and after each the table read as the node reads it:
 *
 *   rebuild      buildNames over every record (what src/dns/node-dns.ts did on the read after any change)
 *   rebuildFast  then the fast path's entries from it (desiredDns with its entry cache: what the
 *                reconciler's map step read each pass, twice a pass)
 *   kept         NameKeeper.table() (src/dns/name-keeper.ts: only what the change touched)
 *   keptFast     FastPathKeeper.desired() (fastpath.ts: only the entries of what changed)
 *
 * The same changes are made twice, first read the old way, then the new (apart, so that one's
 * garbage is not collected in the other's time).
 *
 * Prints median, p99 and max in ms for each, and the load average.
 *
 *   node --import tsx bench/dns-names.ts [--tasks 1000] [--services 10] [--changes 300]
 */
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {readFileSync} from 'node:fs'
import {buildNames, type NameTable} from '../src/dns/names.js'
import {NameKeeper} from '../src/dns/name-keeper.js'
import {desiredDns, FastPathKeeper} from '../src/dns/fastpath.js'
import {EntryCache} from '../src/dataplane/entry-cache.js'
import {formatIpv4} from '../src/model/ipv4.js'
import type {Task, TaskStatus} from '../src/model/types.js'
import {ClusterReader} from '../src/store/cluster-reader.js'
import {keyOf} from '../src/store/keys.js'
import {Store} from '../src/store/store.js'
import {networkRecord, nodeRecord, serviceRecord} from '../test/unit/model-records.js'
import {pct} from './percentile.js'

const NODES = ['n1', 'n2', 'n3']
const SELF = 'n1'

export interface DnsNamesFigures {
  tasks: number
  changes: number
  /** ms per change: median, p99, max. */
  rebuild: Stats
  rebuildFast: Stats
  kept: Stats
  keptFast: Stats
  names: number
}

type Stats = {p50: number; p99: number; max: number}

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6
const stats = (xs: number[]) => ({p50: pct(xs, 50), p99: pct(xs, 99), max: Math.max(...xs)})

export function benchDnsNames(o: {tasks: number; services: number; changes: number}): DnsNamesFigures {
  const dir = mkdtempSync(join(tmpdir(), 'sn-bench-dns-names-'))
  const store = new Store(dir, SELF, {reapIntervalMs: 0}).open()
  try {
    for (const [i, id] of NODES.entries()) store.put(keyOf('node', id), nodeRecord(id, `192.168.0.${i + 1}`))
    const net = networkRecord('snscale', '10.128.0.0/14', {vni: 4200, gateway: '10.128.0.1'})
    store.put(keyOf('network', net.id), net)
    const per = o.tasks / o.services
    const base = 0x0a800000
    for (let s = 0; s < o.services; s++) {
      const sid = `svc${String(s).padStart(4, '0')}`
      store.put(
        keyOf('service', sid),
        serviceRecord(sid, [net.id], {
          name: `scale${s}`,
          createdAt: s,
          vips: [{networkId: net.id, ip: formatIpv4(base + 2 + s)}],
        }),
      )
      for (let r = 1; r <= per; r++) {
        const n = s * per + r
        const id = `task${String(n).padStart(6, '0')}`
        const nodeId = NODES[n % 3]!
        const t: Task = {
          id,
          serviceId: sid,
          serviceName: `scale${s}`,
          slot: r,
          nodeId,
          desiredState: 'running',
          attachments: [{networkId: net.id, ip: formatIpv4(base + 1000 + n), mac: '02:42:00:00:00:01'}],
          createdAt: 0,
        }
        store.put(keyOf('task', id), t)
        store.put(keyOf('taskstatus', id), status(id, nodeId, 'running', n))
      }
    }
    const reader = new ClusterReader(store, SELF)
    const rebuild = () =>
      buildNames({
        selfId: SELF,
        nodes: reader.nodes(),
        networks: reader.networks(),
        services: reader.services(),
        tasks: reader.tasks(),
        statuses: reader.statuses(),
        attachments: reader.attachments(),
        attachmentStatus: (id) => reader.attachmentStatus(id),
      })
    const keeper = new NameKeeper({source: store, selfId: SELF})
    const fast = new FastPathKeeper(() => keeper.drainChanges())
    const cache = new EntryCache()
    const input = (table: NameTable) => ({
      table,
      networks: reader.networks(),
      resolver: '172.18.0.1',
      ttl: 600,
      gwIfindex: () => 7,
    })
    const times = {rebuild: [] as number[], rebuildFast: [] as number[], kept: [] as number[], keptFast: [] as number[]}
    const tasks = reader.tasks()
    let c = 0
    // One change: a different task each time, every one twice in a row (out of the names, then back in).
    const change = () => {
      const t = tasks[Math.floor(c / 2) % tasks.length]!
      store.put(keyOf('taskstatus', t.id), status(t.id, t.nodeId, c % 2 === 0 ? 'starting' : 'running', Number(t.id.slice(4))))
      c++
    }
    // Before: the table built again from every record, the fast path's entries from it (with their cache).
    desiredDns({...input(rebuild()), cache})
    for (let i = 0; i < o.changes; i++) {
      change()
      let t0 = process.hrtime.bigint()
      const table = rebuild()
      times.rebuild.push(ms(t0))
      t0 = process.hrtime.bigint()
      desiredDns({...input(table), cache})
      times.rebuildFast.push(ms(t0))
    }
    // After: the same changes again (the same tasks out, then in), kept.
    c = 0
    fast.desired(input(keeper.table()))
    for (let i = 0; i < o.changes; i++) {
      change()
      let t0 = process.hrtime.bigint()
      const table = keeper.table()
      times.kept.push(ms(t0))
      t0 = process.hrtime.bigint()
      fast.desired(input(table))
      times.keptFast.push(ms(t0))
    }
    const kept = fast.desired(input(keeper.table()))
    const full = desiredDns(input(rebuild()))
    if (kept.names.size !== full.names.size || kept.ptrs.size !== full.ptrs.size)
      throw new Error('the kept entries are not the rebuilt ones')
    keeper.stop()
    return {
      tasks: o.tasks,
      changes: o.changes,
      rebuild: stats(times.rebuild),
      rebuildFast: stats(times.rebuildFast),
      kept: stats(times.kept),
      keptFast: stats(times.keptFast),
      names: kept.names.size,
    }
  } finally {
    store.close()
    rmSync(dir, {recursive: true, force: true})
  }
}

function status(taskId: string, nodeId: string, state: TaskStatus['state'], n: number): TaskStatus {
  const gw = nodeId === SELF ? {gwIp: formatIpv4(0xac120000 + 2 + n)} : {}
  return {taskId, nodeId, state, restarts: 0, updatedAt: 0, ...gw}
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const arg = (name: string, d: number) => {
    const i = process.argv.indexOf(name)
    return i >= 0 ? Number(process.argv[i + 1]) : d
  }
  const tasks = arg('--tasks', 1000)
  const f = benchDnsNames({tasks, services: arg('--services', 10), changes: arg('--changes', 300)})
  const row = (k: 'rebuild' | 'rebuildFast' | 'kept' | 'keptFast') =>
    `  ${k.padEnd(12)} p50 ${f[k].p50.toFixed(3)} ms  p99 ${f[k].p99.toFixed(3)} ms  max ${f[k].max.toFixed(3)} ms`
  console.log(`dns names: ${f.tasks} tasks (${f.names} names), ${f.changes} changes, read after each`)
  console.log([row('rebuild'), row('rebuildFast'), row('kept'), row('keptFast')].join('\n'))
  console.log(`  load ${readFileSync('/proc/loadavg', 'utf8').trim()}`)
}
