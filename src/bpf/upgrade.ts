// Upgrades of the maps' layout without a manual step. Each layout version pins
// its maps in a folder of its own (<node>/v<N>/, version 1 straight in
// <node>/), so new objects never meet old pins: they create their maps, and
// what the old ones held is dealt with by each map's owner (MAP_OWNERSHIP, ./ownership.ts):
//
// - store-derived maps (config, networks, endpoints, devices) are not carried
//   over: the agent's reconciler writes them from the store, as on any start;
// - datapath-owned state (the counters today, connection tracking later) is
//   migrated by a rule for that version, or dropped, and the report says which.
//
// Then the old pins go. Programs still attached keep their maps alive until
// they are replaced, so forwarding goes on with the old state meanwhile.

import fs from 'node:fs'
import path from 'node:path'
import {BpfError} from './errors.js'
import {COUNTER_NAMES, addToCounters, type CounterName} from './counters.js'
import {BpfMap} from './map.js'
import {snCt, snCtKey, u32, type MapName} from './codecs.js'
import {nodePinDir} from './pins.js'
import {MAP_OWNERSHIP} from './ownership.js'

/** SN_LAYOUT_VERSION of bpf/include/layout.h (a test holds the two together). */
export const LAYOUT_VERSION = 5

/** Where a node's maps of one layout version are pinned. */
export function layoutPinDir(node: string, version = LAYOUT_VERSION): string {
  return version === 1 ? nodePinDir(node) : path.join(nodePinDir(node), `v${version}`)
}

export interface OldLayout {
  version: number
  dir: string
  /** Pinned maps of that layout by name. */
  pins: Record<string, string>
}

/** The maps of layout 1, pinned straight in the node's folder (which holds other pins too). */
const V1_MAPS = ['sn_config', 'sn_networks', 'sn_endpoints', 'sn_devices', 'sn_stats']

/** Pins of every other layout version than ours that a node still has. */
export function oldLayouts(node: string): OldLayout[] {
  const root = nodePinDir(node)
  if (!fs.existsSync(root)) return []
  const out: OldLayout[] = []
  const loose: Record<string, string> = {}
  for (const e of fs.readdirSync(root, {withFileTypes: true})) {
    const m = /^v(\d+)$/.exec(e.name)
    if (e.isDirectory() && m) {
      const version = Number(m[1])
      if (version === LAYOUT_VERSION || version < 2) continue
      const dir = path.join(root, e.name)
      const pins = Object.fromEntries(fs.readdirSync(dir).map((n) => [n, path.join(dir, n)]))
      out.push({version, dir, pins})
    } else if (!e.isDirectory() && V1_MAPS.includes(e.name)) {
      loose[e.name] = path.join(root, e.name)
    }
  }
  if (Object.keys(loose).length > 0) out.push({version: 1, dir: root, pins: loose})
  return out.sort((a, b) => a.version - b.version)
}

/** Version 1's counters: one per-CPU struct sn_stats of u64 fields, in this order. */
const V1_STATS_FIELDS: ReadonlyArray<CounterName | undefined> = [
  'xdp_pass',
  'xdp_decap',
  'xdp_no_endpoint',
  'xdp_malformed',
  'tc_local',
  'tc_encap',
  'tc_arp_reply',
  'tc_no_endpoint',
  'tc_drop_other',
  undefined, // tc_pass: frames from unknown devices were passed then; they are dropped now, a count of its own
  'tc_encap_fail',
]

/** Layout 2's counters: the first names of today's list. */
const V2_COUNTERS: readonly CounterName[] = COUNTER_NAMES.slice(0, 15)
/** Layout 3's counters: up to lb_rev_nat. */
const V3_COUNTERS: readonly CounterName[] = COUNTER_NAMES.slice(0, 22)
/** Layout 4's counters: up to lb_reply_restored. */
const V4_COUNTERS: readonly CounterName[] = COUNTER_NAMES.slice(0, 38)

/**
 * The counters of a layout that kept them as today does (an index array of u64 per CPU), named
 * by `names`, slot by slot, added to today's.
 */
function indexedCounters(version: number, names: readonly CounterName[]): (old: BpfMap, current: CurrentMaps) => void {
  return (old, current) => {
    if (old.valueSize !== 8) throw new BpfError('PIN_MISMATCH', `sn_stats of layout ${version} has ${old.valueSize}-byte values`)
    const add: Partial<Record<CounterName, bigint>> = {}
    names.forEach((name, i) => {
      for (const cpu of old.lookupPerCpu(u32.encode(i)) ?? []) add[name] = (add[name] ?? 0n) + cpu.readBigUInt64LE(0)
    })
    addToCounters(current.sn_stats, add)
  }
}

/**
 * Migrations of datapath-owned maps, by the version they come from: each reads
 * the old map and writes into the current ones. A datapath-owned map with no
 * rule here is dropped, and reported so.
 */
const MIGRATIONS: Record<number, Partial<Record<string, (old: BpfMap, current: CurrentMaps) => void>>> = {
  1: {
    sn_stats(old, current) {
      if (old.valueSize !== V1_STATS_FIELDS.length * 8)
        throw new BpfError('PIN_MISMATCH', `sn_stats of layout 1 has ${old.valueSize}-byte values`)
      const add: Partial<Record<CounterName, bigint>> = {}
      for (const cpu of old.lookupPerCpu(Buffer.alloc(4)) ?? []) {
        V1_STATS_FIELDS.forEach((name, i) => {
          if (name) add[name] = (add[name] ?? 0n) + cpu.readBigUInt64LE(i * 8)
        })
      }
      addToCounters(current.sn_stats, add)
    },
  },
  // Version 2 (sn_devices without flags, no load balancing): the counters are the same index array, first 15 slots.
  2: {sn_stats: indexedCounters(2, V2_COUNTERS)},
  // Version 3 (before the routing mesh's maps and the close timer in sn_ct values): counters are the first
  // 22 slots; tracked flows are carried over (backend, table, flags), so a connection through a VIP keeps its
  // backend across the upgrade.
  3: {
    sn_stats: indexedCounters(3, V3_COUNTERS),
    sn_ct(old, current) {
      if (!current.sn_ct) return
      if (old.keySize !== snCtKey.size || old.valueSize !== 16)
        throw new BpfError('PIN_MISMATCH', `sn_ct of layout 3 has ${old.keySize}/${old.valueSize}-byte keys/values`)
      const now = monotonicSeconds()
      const entries = old.entries().map(([k, v]): [Buffer, Buffer] => {
        const nv = Buffer.alloc(snCt.size)
        v.copy(nv, 0, 0, 12) // addr, table, flags; the timer starts unarmed
        nv.writeUInt32LE(now, 12) // seen: now (layout 5)
        return [k, nv]
      })
      current.sn_ct.updateMany(entries)
    },
  },
  // Version 4 (sn_mesh_node without the gossip port, no UDP idle time in sn_ct): the same counters, the
  // first 38 slots; tracked flows carried over, a UDP one as just seen (bpf_ktime_get_ns's clock is
  // CLOCK_MONOTONIC, as process.hrtime's), so it lives its idle lifetime from the upgrade on.
  4: {
    sn_stats: indexedCounters(4, V4_COUNTERS),
    sn_ct(old, current) {
      if (!current.sn_ct) return
      if (old.keySize !== snCtKey.size || old.valueSize !== snCt.size)
        throw new BpfError('PIN_MISMATCH', `sn_ct of layout 4 has ${old.keySize}/${old.valueSize}-byte keys/values`)
      const now = monotonicSeconds()
      const entries = old.entries().map(([k, v]): [Buffer, Buffer] => {
        const nv = Buffer.alloc(snCt.size)
        v.copy(nv, 0, 0, 12) // addr, table, flags; the timer starts unarmed
        nv.writeUInt32LE(now, 12)
        return [k, nv]
      })
      current.sn_ct.updateMany(entries)
    },
  },
}

/** The clock of sn_ct.seen: bpf_ktime_get_ns's is CLOCK_MONOTONIC, as process.hrtime's. */
function monotonicSeconds(): number {
  return Number(process.hrtime.bigint() / 1_000_000_000n)
}

/** The maps of the current layout that migrations write. */
export type CurrentMaps = Record<'sn_stats', BpfMap> & {sn_ct?: BpfMap}

export interface UpgradeReport {
  from: number
  /** Datapath-owned state carried over. */
  migrated: string[]
  /** Datapath-owned state with no migration: gone. */
  dropped: string[]
  /** Store-derived maps: left to the reconciler to refill. */
  refilled: string[]
}

/**
 * Carry over what an older (or newer) layout's datapath-owned maps hold, then
 * remove that layout's pins. Call once the current layout's maps are loaded.
 */
export function retireOldLayouts(node: string, current: CurrentMaps): UpgradeReport[] {
  const reports: UpgradeReport[] = []
  for (const old of oldLayouts(node)) {
    const report: UpgradeReport = {from: old.version, migrated: [], dropped: [], refilled: []}
    const toMigrate: Array<{name: string; map: BpfMap; migrate: (old: BpfMap, current: CurrentMaps) => void}> = []
    try {
      for (const [name, pin] of Object.entries(old.pins)) {
        // A map today's layout no longer has: nothing refills it, so it is migrated or dropped.
        const owner = MAP_OWNERSHIP[name as MapName]?.owner ?? 'datapath'
        const migrate = MIGRATIONS[old.version]?.[name]
        if (owner === 'store') report.refilled.push(name)
        else if (!migrate) report.dropped.push(name)
        else toMigrate.push({name, map: BpfMap.openPinned(pin), migrate})
      }
      // The pins go before the state is carried over (through the open fds): a crash in between
      // loses counts rather than counting them twice on the next start. Unlinking a pin drops one
      // reference; a program still attached keeps its map until it is replaced.
      for (const pin of Object.values(old.pins)) fs.rmSync(pin, {force: true})
      if (old.version !== 1) fs.rmSync(old.dir, {recursive: true, force: true})
      for (const m of toMigrate) {
        m.migrate(m.map, current)
        report.migrated.push(m.name)
      }
    } finally {
      for (const m of toMigrate) m.map.close()
    }
    reports.push(report)
  }
  return reports
}
