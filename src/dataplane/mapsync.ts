// Writing the store-owned maps (MAP_OWNERSHIP's 'mirror' rule) from the
// desired state: stale keys out first, then what is missing or different.
// A map that cannot take more (E2BIG) or fails otherwise is reported and
// skipped, and the sync goes on with the next map: one full table must not
// leave the others stale.
import {
  snBackend,
  snBackendKey,
  snDevice,
  snEndpoint,
  snEndpointKey,
  snGateway,
  snMaglevKey,
  snNetwork,
  snService,
  snServiceKey,
  u32,
  SN_DEV_FLAGS,
  SN_EP_FLAGS,
  SN_MAGLEV_CHUNK,
  SN_NET_FLAGS,
} from '../bpf/codecs.js'
import type {BpfMap} from '../bpf/map.js'
import {lbTable, MAGLEV_EMPTY} from '../lb/maglev.js'
import {parseIpv4} from '../model/ipv4.js'
import {encodeMesh} from './mesh.js'
import {NO_CACHE, type Entry, type EntryCache} from './entry-cache.js'
import {MIRRORED, planMirror, type DesiredMaps, type DesiredService, type Entries, type MirroredMap} from './desired.js'

export type {MirroredMap}

export interface MapSyncError {
  map: MirroredMap | 'sn_maglev'
  /** Entries that could not be written or deleted in this sync. */
  failed: number
  message: string
}

export interface SyncReport {
  written: number
  deleted: number
  errors: MapSyncError[]
}

const entry = (k: Buffer, v: Buffer): Entry => [k.toString('hex'), [k, v]]

/**
 * The desired state as the maps' own bytes. With `cache`, an entry whose inputs are those of an
 * entry of the last call is taken from it rather than encoded again (entry-cache.ts): each key
 * below names every field its entry is made of.
 */
export function encodeDesired(
  want: DesiredMaps,
  cache: Pick<EntryCache, 'get' | 'turn'> = {...NO_CACHE, turn: () => {}},
): Record<MirroredMap, Entries> {
  const entries = <T>(items: Iterable<T>, key: (t: T) => string, make: (t: T) => Entry): Entries => {
    const out: Entries = new Map()
    for (const t of items) {
      const e = cache.get(key(t), () => make(t))
      if (e) out.set(e[0], e[1])
    }
    return out
  }
  const services = [...(want.services?.values() ?? [])]
  const out: Record<MirroredMap, Entries> = {
    sn_dns_names: want.dns?.names ?? new Map(),
    sn_dns_ptrs: want.dns?.ptrs ?? new Map(),
    sn_dns_scopes: want.dns?.scopes ?? new Map(),
    sn_networks: entries(
      want.networks,
      ([vni, n]) => `net\0${vni}\0${n.subnet}\0${n.prefixLen}\0${n.ingress}\0${n.mtu}`,
      ([vni, n]) =>
        entry(
          u32.encode(vni),
          snNetwork.encode({subnet: n.subnet, prefix_len: n.prefixLen, flags: n.ingress ? SN_NET_FLAGS.INGRESS : 0, mtu: n.mtu}),
        ),
    ),
    sn_endpoints: entries(
      want.endpoints.values(),
      (e) => `ep\0${e.vni}\0${e.ip}\0${e.nodeIp}\0${e.ifindex}\0${e.mac}\0${e.local}\0${e.vip}\0${e.backend}`,
      (e) =>
        entry(
          snEndpointKey.encode({vni: e.vni, ip: e.ip}),
          snEndpoint.encode({
            node_ip: e.nodeIp,
            ifindex: e.ifindex,
            mac: e.mac,
            flags: (e.local ? SN_EP_FLAGS.LOCAL : 0) | (e.vip ? SN_EP_FLAGS.VIP : 0) | (e.backend ? SN_EP_FLAGS.BACKEND : 0),
          }),
        ),
    ),
    sn_devices: entries(
      want.devices,
      ([ifindex, d]) => `dev\0${ifindex}\0${d.vni}\0${d.ip}\0${d.backend}`,
      ([ifindex, d]) =>
        entry(u32.encode(ifindex), snDevice.encode({vni: d.vni, ip: d.ip, flags: d.backend ? SN_DEV_FLAGS.BACKEND : 0})),
    ),
    sn_backends: entries(
      services.flatMap((s) => [...s.backends, ...(s.draining ?? [])].map((b) => ({s, b}))),
      ({s, b}) => `be\0${s.vni}\0${s.vip}\0${b.ip}\0${b.nodeIp}`,
      ({s, b}) => entry(snBackendKey.encode({vni: s.vni, vip: s.vip, ip: b.ip}), snBackend.encode({node_ip: b.nodeIp, flags: 0})),
    ),
    sn_services: entries(
      services,
      (s) => `svc\0${s.vni}\0${s.vip}\0${s.tableId}\0${s.size}\0${s.backends.length}`,
      (s) =>
        entry(
          snServiceKey.encode({vni: s.vni, vip: s.vip}),
          snService.encode({table: s.tableId, size: s.size, count: s.backends.length, flags: 0}),
        ),
    ),
    sn_gateways: entries(
      want.gateways ?? [],
      ([ifindex, g]) => `gw\0${ifindex}\0${g.gwIp}\0${g.ingressIp}`,
      ([ifindex, g]) => entry(u32.encode(ifindex), snGateway.encode({gw_ip: g.gwIp, ingress_ip: g.ingressIp ?? '0.0.0.0'})),
    ),
    ...encodeMesh(want.mesh),
  }
  cache.turn()
  return out
}

type TableInput = Pick<DesiredService, 'size' | 'backends' | 'universe'>

/** slot -> index into s.backends (MAGLEV_EMPTY: none), over the service's universe (its backends' keys when it has none). */
function slotsOf(s: TableInput): Uint32Array {
  return lbTable(
    s.universe ?? s.backends.map((b) => b.key),
    s.size,
    s.backends.map((b) => ({key: b.key, owns: s.universe ? b.owns : b.key})),
  )
}

/** A service's Maglev table as sn_maglev's values: slot -> backend address, in chunks of SN_MAGLEV_CHUNK. */
export function maglevChunks(s: TableInput): string[][] {
  const slots = slotsOf(s)
  const chunks: string[][] = []
  for (let at = 0; at < s.size; at += SN_MAGLEV_CHUNK) {
    chunks.push(
      [...slots.subarray(at, Math.min(at + SN_MAGLEV_CHUNK, s.size))].map((i) =>
        i === MAGLEV_EMPTY ? '0.0.0.0' : s.backends[i]!.ip,
      ),
    )
  }
  return chunks
}

/** The same chunks already encoded (what maglevChunks + snMaglevChunk.encode give), without a string per slot. */
export function maglevChunkBuffers(s: TableInput): Buffer[] {
  const slots = slotsOf(s)
  const addrs = s.backends.map((b) => parseIpv4(b.ip))
  const chunks: Buffer[] = []
  const whole = Buffer.alloc(Math.ceil(s.size / SN_MAGLEV_CHUNK) * SN_MAGLEV_CHUNK * 4)
  for (let at = 0; at < s.size; at += SN_MAGLEV_CHUNK) {
    const buf = whole.subarray(at * 4, (at + SN_MAGLEV_CHUNK) * 4)
    const end = Math.min(at + SN_MAGLEV_CHUNK, s.size)
    for (let slot = at; slot < end; slot++) {
      const i = slots[slot]!
      if (i !== MAGLEV_EMPTY) buf.writeUInt32BE(addrs[i]!, (slot - at) * 4)
    }
    chunks.push(buf)
  }
  return chunks
}

/**
 * The Maglev tables' side of a sync ('tables' rule): tables are written whole
 * under their id before any service points at them, and deleted once none
 * does. `written` remembers which contents each id was written with by this
 * agent, so an unchanged table is not written again.
 */
export interface TableState {
  map: BpfMap
  written: Map<number, string>
  /**
   * Tables computed ahead of the sync that writes them (prepareTable), by contents: equal contents
   * give equal tables. Datapath computes one per turn of the event loop before a sync, so that the
   * sync after every service's backends changed does not compute them all in one stretch.
   */
  prepared?: Map<string, Buffer[]>
}

/**
 * Computes `s`'s table ahead unless it is written already or computed: true when it computed one
 * (a Maglev table of a large tier is milliseconds). What no service wants any more is forgotten
 * by the caller (forgetPrepared).
 */
export function prepareTable(t: TableState, s: DesiredService): boolean {
  if (t.written.get(s.tableId) === s.contents) return false
  t.prepared ??= new Map()
  if (t.prepared.has(s.contents)) return false
  t.prepared.set(s.contents, maglevChunkBuffers(s))
  return true
}

/** Tables computed ahead that none of `services` is made of any more. */
export function forgetPrepared(t: TableState, services: Iterable<DesiredService>): void {
  if (!t.prepared || t.prepared.size === 0) return
  const wanted = new Set([...services].map((s) => s.contents))
  for (const c of t.prepared.keys()) if (!wanted.has(c)) t.prepared.delete(c)
}

function writeTables(
  t: TableState,
  services: Iterable<DesiredService>,
): {written: number; failed: DesiredService[]; first?: string} {
  const failed: DesiredService[] = []
  let first: string | undefined
  const pending = new Map<number, DesiredService>()
  const entries: Array<[Buffer, Buffer]> = []
  for (const s of services) {
    if (t.written.get(s.tableId) === s.contents || pending.has(s.tableId)) continue
    try {
      ;(t.prepared?.get(s.contents) ?? maglevChunkBuffers(s)).forEach((c, i) =>
        entries.push([snMaglevKey.encode({table: s.tableId, chunk: i}), c]),
      )
      pending.set(s.tableId, s)
    } catch (e) {
      failed.push(s)
      first ??= (e as Error).message
    }
  }
  // One batched write for every new table: programming 10,000 services is a few dozen syscalls, not one per chunk.
  const bad = new Set<number>()
  for (const f of t.map.updateMany(entries)) {
    const {table} = snMaglevKey.decode(f.key)
    first ??= f.error.message
    bad.add(table)
  }
  let written = 0
  for (const [id, s] of pending) {
    if (bad.has(id)) {
      t.written.delete(id)
      failed.push(s)
    } else {
      t.written.set(id, s.contents)
      t.prepared?.delete(s.contents)
      written++
    }
  }
  return {written, failed, first}
}

/** Tables that no entry of sn_services points at (read back: a service whose new table failed keeps its old one). */
function deleteStaleTables(t: TableState, servicesMap: BpfMap): number {
  const live = new Set(servicesMap.entries().map(([, v]) => snService.decode(v).table))
  const stale: Buffer[] = []
  for (const [k] of t.map.entries()) {
    const {table} = snMaglevKey.decode(k)
    if (live.has(table)) continue
    stale.push(k)
    t.written.delete(table)
  }
  const r = t.map.deleteMany(stale)
  if (r.failures.length > 0) throw r.failures[0]!.error
  return r.deleted
}

/**
 * Of the keys a sync removes from `name`, those of a backend that leaves: every entry of
 * sn_backends, and the endpoints flagged as backends. The table a service points at until
 * sn_services flips may still pick them (and the load balancer looks both up for a pick), so
 * they go after the flip, not before: no moment where a slot names a backend that is not there.
 */
function backendsLeaving(name: MirroredMap, remove: Buffer[], have: ReadonlyMap<string, Buffer>): Buffer[] {
  if (name === 'sn_backends') return remove
  if (name !== 'sn_endpoints') return []
  return remove.filter((k) => {
    const v = have.get(k.toString('hex'))
    return v !== undefined && (snEndpoint.decode(v).flags & SN_EP_FLAGS.BACKEND) !== 0
  })
}

/** Do two sets of encoded entries hold the same keys with the same values? */
export function sameEntries(a: Entries | undefined, b: Entries): boolean {
  if (!a || a.size !== b.size) return false
  for (const [hex, e] of b) {
    const o = a.get(hex)
    // The same pair (the entry cache hands the last call's back): no bytes to compare.
    if (o === e) continue
    if (!o || !o[1].equals(e[1])) return false
  }
  return true
}

/**
 * What this agent's syncs wrote, so that a sync can leave alone a map whose desired entries did
 * not change since it was last made to hold them in full: reading a map back, to compare, was
 * most of a sync's cost on the event loop, and a node's passes come many per second while its
 * tasks start. Only a map written without a failure is remembered; the drift check (every few
 * seconds: Datapath.repair) reads each map back whatever was remembered, so an entry changed by
 * hand comes back as it did before. Programs never write these maps
 * (MAP_OWNERSHIP), and whoever else in the agent writes one forgets it here (Datapath.attachTask).
 */
export interface MirrorMemo {
  /** Per map, the entries it was last made to hold in full. */
  wrote: Map<MirroredMap, Entries>
  /** sn_maglev holds only tables sn_services points at (the last stale-table sweep went through). */
  tablesSwept: boolean
}

export const newMirrorMemo = (): MirrorMemo => ({wrote: new Map(), tablesSwept: false})

/** Makes each mirrored map hold exactly its desired entries, as far as it can. */
/**
 * The DNS fast path's, sock_mesh's and tc_gw's own maps, and the node's addresses: a caller
 * without them (the LB bench, older tests) syncs the others.
 */
type DnsMaps = 'sn_dns_names' | 'sn_dns_ptrs' | 'sn_dns_scopes' | 'sn_sock_targets' | 'sn_gateways' | 'sn_mesh_addrs'

export function mirrorMaps(
  maps: Record<Exclude<MirroredMap, DnsMaps>, BpfMap> & Partial<Record<DnsMaps, BpfMap>>,
  want: Record<MirroredMap, Entries>,
  tables?: {state: TableState; services: Iterable<DesiredService>},
  /**
   * Skip maps whose wanted entries are those last written, unless `full` says to read them back:
   * true for every map, or the set of those to read (the drift check reads one map per turn of
   * the event loop: Datapath.checkDrift); 'sn_maglev' in it sweeps the stale tables. Absent:
   * every map is read.
   */
  memo?: {
    state: MirrorMemo
    full: boolean | ReadonlySet<MirroredMap | 'sn_maglev'>
    /** Maps already read back (off the event loop: BpfMap.entriesAsync), compared as read here. */
    have?: ReadonlyMap<MirroredMap, Array<[Buffer, Buffer]>>
  },
): SyncReport {
  const readBack = (name: MirroredMap | 'sn_maglev'): boolean =>
    !memo || memo.full === true || (memo.full !== false && memo.full.has(name))
  const report: SyncReport = {written: 0, deleted: 0, errors: []}
  // Backends that left go only once no service's table can pick them (below, after sn_services).
  const later: Array<{name: MirroredMap; keys: Buffer[]}> = []
  /** Maps left alone: their wanted entries are what they hold. */
  const unchanged = new Set<MirroredMap>()
  let tablesWritten = 0
  for (const name of MIRRORED) {
    if (name === 'sn_services' && tables) {
      // New tables before the services that point at them: no service ever points at a missing or half-written table.
      const r = writeTables(tables.state, tables.services)
      report.written += r.written
      tablesWritten += r.written + r.failed.length
      if (r.failed.length > 0) {
        report.errors.push({map: 'sn_maglev', failed: r.failed.length, message: r.first!})
        // A service whose new table could not be written keeps pointing at the one it has.
        for (const s of r.failed) {
          const k = snServiceKey.encode({vni: s.vni, vip: s.vip})
          const cur = maps.sn_services.lookup(k)
          if (cur) want.sn_services.set(k.toString('hex'), [k, cur])
          else want.sn_services.delete(k.toString('hex'))
        }
      }
    }
    const map = maps[name]
    if (!map) continue
    if (!readBack(name) && sameEntries(memo?.state.wrote.get(name), want[name])) {
      unchanged.add(name)
      continue
    }
    memo?.state.wrote.delete(name) // remembered again below once it holds them in full
    let failed = 0
    let first: string | undefined
    const note = (e: unknown) => {
      failed++
      first ??= (e as Error).message
    }
    try {
      const have = new Map((memo?.have?.get(name) ?? map.entries()).map(([k, v]) => [k.toString('hex'), v]))
      const plan = planMirror(have, want[name])
      const keep = backendsLeaving(name, plan.remove, have)
      if (keep.length > 0) {
        later.push({name, keys: keep})
        const held = new Set(keep.map((k) => k.toString('hex')))
        plan.remove = plan.remove.filter((k) => !held.has(k.toString('hex')))
      }
      const del = map.deleteMany(plan.remove)
      report.deleted += del.deleted
      for (const f of del.failures) note(f.error)
      // Updates of keys already there succeed in a full map: a failed entry does not stop the others.
      const failures = map.updateMany(plan.write)
      report.written += plan.write.length - failures.length
      for (const f of failures) note(f.error)
    } catch (e) {
      note(e) // the map could not even be read
    }
    if (failed > 0) report.errors.push({map: name, failed, message: first!})
    else memo?.state.wrote.set(name, want[name])
  }
  // Now that every service points at its new table, the backends no table names any more go.
  for (const {name, keys} of later) {
    const r = maps[name]!.deleteMany(keys)
    report.deleted += r.deleted
    if (r.failures.length > 0) {
      report.errors.push({map: name, failed: r.failures.length, message: r.failures[0]!.error.message})
      memo?.state.wrote.delete(name)
    }
  }
  if (tables) {
    // No table written and no service pointing elsewhere since a sweep that went through: none is stale.
    const swept = !readBack('sn_maglev') && memo?.state.tablesSwept && tablesWritten === 0 && unchanged.has('sn_services')
    if (!swept) {
      if (memo) memo.state.tablesSwept = false
      try {
        report.deleted += deleteStaleTables(tables.state, maps.sn_services)
        if (memo) memo.state.tablesSwept = true
      } catch (e) {
        report.errors.push({map: 'sn_maglev', failed: 1, message: (e as Error).message})
      }
    }
  }
  return report
}
