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
  snMaglevChunk,
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
import {maglevTable} from '../lb/maglev.js'
import {encodeMesh} from './mesh.js'
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

const entry = (k: Buffer, v: Buffer): [string, [Buffer, Buffer]] => [k.toString('hex'), [k, v]]

/** The desired state as the maps' own bytes. */
export function encodeDesired(want: DesiredMaps): Record<MirroredMap, Entries> {
  return {
    sn_dns_names: want.dns?.names ?? new Map(),
    sn_dns_scopes: want.dns?.scopes ?? new Map(),
    sn_networks: new Map(
      [...want.networks].map(([vni, n]) =>
        entry(
          u32.encode(vni),
          snNetwork.encode({subnet: n.subnet, prefix_len: n.prefixLen, flags: n.ingress ? SN_NET_FLAGS.INGRESS : 0, mtu: n.mtu}),
        ),
      ),
    ),
    sn_endpoints: new Map(
      [...want.endpoints.values()].map((e) =>
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
    ),
    sn_devices: new Map(
      [...want.devices].map(([ifindex, d]) =>
        entry(u32.encode(ifindex), snDevice.encode({vni: d.vni, ip: d.ip, flags: d.backend ? SN_DEV_FLAGS.BACKEND : 0})),
      ),
    ),
    sn_backends: new Map(
      [...(want.services?.values() ?? [])].flatMap((s) =>
        s.backends.map((b) =>
          entry(snBackendKey.encode({vni: s.vni, vip: s.vip, ip: b.ip}), snBackend.encode({node_ip: b.nodeIp, flags: 0})),
        ),
      ),
    ),
    sn_services: new Map(
      [...(want.services?.values() ?? [])].map((s) =>
        entry(
          snServiceKey.encode({vni: s.vni, vip: s.vip}),
          snService.encode({table: s.tableId, size: s.size, count: s.backends.length, flags: 0}),
        ),
      ),
    ),
    ...encodeMesh(want.mesh),
  }
}

/** A service's Maglev table as sn_maglev's values: slot -> backend address, in chunks of SN_MAGLEV_CHUNK. */
export function maglevChunks(s: Pick<DesiredService, 'size' | 'backends'>): string[][] {
  const slots = maglevTable(
    s.backends.map((b) => b.key),
    s.size,
  )
  const chunks: string[][] = []
  for (let at = 0; at < s.size; at += SN_MAGLEV_CHUNK) {
    chunks.push([...slots.subarray(at, Math.min(at + SN_MAGLEV_CHUNK, s.size))].map((i) => s.backends[i]?.ip ?? '0.0.0.0'))
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
}

function writeTables(
  t: TableState,
  services: Iterable<DesiredService>,
): {written: number; failed: DesiredService[]; first?: string} {
  let written = 0
  const failed: DesiredService[] = []
  let first: string | undefined
  for (const s of services) {
    if (t.written.get(s.tableId) === s.contents) continue
    try {
      maglevChunks(s).forEach((c, i) => t.map.update(snMaglevKey.encode({table: s.tableId, chunk: i}), snMaglevChunk.encode(c)))
      t.written.set(s.tableId, s.contents)
      written++
    } catch (e) {
      t.written.delete(s.tableId)
      failed.push(s)
      first ??= (e as Error).message
    }
  }
  return {written, failed, first}
}

/** Tables that no entry of sn_services points at (read back: a service whose new table failed keeps its old one). */
function deleteStaleTables(t: TableState, servicesMap: BpfMap): number {
  const live = new Set(servicesMap.entries().map(([, v]) => snService.decode(v).table))
  let deleted = 0
  for (const [k] of t.map.entries()) {
    const {table} = snMaglevKey.decode(k)
    if (live.has(table)) continue
    if (t.map.delete(k)) deleted++
    t.written.delete(table)
  }
  return deleted
}

/** Makes each mirrored map hold exactly its desired entries, as far as it can. */
/** The DNS fast path's maps: a caller without them (the LB bench, older tests) syncs the others. */
type DnsMaps = 'sn_dns_names' | 'sn_dns_scopes'

export function mirrorMaps(
  maps: Record<Exclude<MirroredMap, DnsMaps>, BpfMap> & Partial<Record<DnsMaps, BpfMap>>,
  want: Record<MirroredMap, Entries>,
  tables?: {state: TableState; services: Iterable<DesiredService>},
): SyncReport {
  const report: SyncReport = {written: 0, deleted: 0, errors: []}
  for (const name of MIRRORED) {
    if (name === 'sn_services' && tables) {
      // New tables before the services that point at them: no service ever points at a missing or half-written table.
      const r = writeTables(tables.state, tables.services)
      report.written += r.written
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
    let failed = 0
    let first: string | undefined
    const note = (e: unknown) => {
      failed++
      first ??= (e as Error).message
    }
    try {
      const have = new Map(map.entries().map(([k, v]) => [k.toString('hex'), v]))
      const plan = planMirror(have, want[name])
      for (const k of plan.remove) {
        try {
          if (map.delete(k)) report.deleted++
        } catch (e) {
          note(e)
        }
      }
      // Updates of keys already there succeed in a full map: keep going after a failure.
      for (const [k, v] of plan.write) {
        try {
          map.update(k, v)
          report.written++
        } catch (e) {
          note(e)
        }
      }
    } catch (e) {
      note(e) // the map could not even be read
    }
    if (failed > 0) report.errors.push({map: name, failed, message: first!})
  }
  if (tables) {
    try {
      report.deleted += deleteStaleTables(tables.state, maps.sn_services)
    } catch (e) {
      report.errors.push({map: 'sn_maglev', failed: 1, message: (e as Error).message})
    }
  }
  return report
}
