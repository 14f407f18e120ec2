// Upgrades of the maps' layout without a manual step and without dropping a flow. Each layout
// version pins its maps in a folder of its own (<node>/v<N>/, version 1 straight in <node>/), so
// new objects never meet old pins: they create their maps, and what the old ones hold is carried
// over into them before the programs are swapped (src/dataplane/datapath.ts):
//
// 1. carryOver: every map of the old layout whose way to today's is known is copied into
//    today's, entry by entry through the converters of each version step (LAYOUT_STEPS); a map
//    no step changed is copied as it is. Store-derived maps too (config, networks, endpoints...):
//    the new programs forward from their first packet, and the reconciler's next sync makes them
//    exact as on any start. Counters of layouts before the slot array are merged (MERGES).
// 2. the caller swaps the programs (the links are updated in place, all within milliseconds);
// 3. finish: the old pins go, then the flow maps are copied again, keeping what the new programs
//    wrote (entries the old programs made between 1 and 2), and old counters are merged.
//
// A map with no known way (a step that cannot convert it, or a version from before this table)
// is refilled by the reconciler when the store derives it, dropped otherwise; the report says
// which. Programs still attached keep their maps alive until they are replaced.

import fs from 'node:fs'
import path from 'node:path'
import {BpfError} from './errors.js'
import {COUNTER_NAMES, addToCounters, type CounterName} from './counters.js'
import {BpfMap, MapType, UpdateFlags} from './map.js'
import {snCt, snMeshCt, u32, type MapName} from './codecs.js'
import {nodePinDir} from './pins.js'
import {MAP_OWNERSHIP} from './ownership.js'

/** SN_LAYOUT_VERSION of bpf/include/layout.h (a test holds the two together). */
export const LAYOUT_VERSION = 6

/**
 * The oldest layout an upgrade carries every flow and the whole forwarding state from (tracked
 * VIP flows come along from 3 on, counters from 1 on). docs/upgrade.md says which release that
 * is; a unit test holds this, the table below and the doc together.
 */
export const OLDEST_SEAMLESS = 5

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

/** Pins of every other layout version than `current` that a node still has. */
export function oldLayouts(node: string, current = LAYOUT_VERSION): OldLayout[] {
  const root = nodePinDir(node)
  if (!fs.existsSync(root)) return []
  const out: OldLayout[] = []
  const loose: Record<string, string> = {}
  for (const e of fs.readdirSync(root, {withFileTypes: true})) {
    const m = /^v(\d+)$/.exec(e.name)
    if (e.isDirectory() && m) {
      const version = Number(m[1])
      if (version === current || version < 2) continue
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

/**
 * One entry of a map in the layout before a step, as the layout after it has it; undefined: the
 * entry is not kept. `now`: seconds of the monotonic clock (the programs read it coarse, a tick behind); `nowMs`: the same
 * in milliseconds, wrapped to 32 bits as the programs keep it (sn_mesh_ct.seen).
 */
export type EntryConverter = (key: Buffer, value: Buffer, now: number, nowMs: number) => readonly [Buffer, Buffer] | undefined

/**
 * What one layout version changed, keyed by the version it leads to. `changed` names every map
 * whose key or value changed in layout or in meaning: with the converter of its entries, or null
 * when they cannot be converted. A map not named kept its layout and is copied as it is, when the
 * step is `recorded`; steps from before this table was kept are not (what else they changed is
 * not written down), so only their converters are used. A new layout version is one more step.
 */
export interface LayoutStep {
  recorded: boolean
  changed: Partial<Record<string, EntryConverter | null>>
}

export type LayoutSteps = Readonly<Record<number, LayoutStep>>

export const LAYOUT_STEPS: LayoutSteps = {
  // 3 -> 4: sn_ct values gained the close timer (16 -> 32 bytes); the routing mesh's maps came.
  4: {
    recorded: false,
    changed: {
      sn_ct: (k, v) => {
        const nv = Buffer.alloc(32)
        v.copy(nv, 0, 0, 12) // addr, table, flags; the timer starts unarmed
        return [k, nv]
      },
    },
  },
  // 4 -> 5 (data plane trust boundaries): sn_config +ct_udp_idle; sn_ct pad -> seen; sn_mesh_node
  // {flags} -> {gossip_port, flags} (the store refills it); sn_mesh_ct reply entries keyed by the
  // backend, not 0 (no way to rebuild them here: mesh flows of layout 4 end); new sn_gateways,
  // sn_mesh_syn. Counters only grew.
  5: {
    recorded: true,
    changed: {
      sn_config: (k, v) => {
        const nv = Buffer.alloc(16)
        v.copy(nv, 0, 0, 12) // ct_udp_idle 0: the default, until the agent's setConfig
        return [k, nv]
      },
      // A tracked flow is carried over as just seen, so a UDP one lives its idle lifetime from the upgrade on.
      sn_ct: (k, v, now) => {
        const nv = Buffer.alloc(snCt.size)
        v.copy(nv, 0, 0, 12) // addr, table, flags; the timer starts unarmed
        nv.writeUInt32LE(now, 12)
        return [k, nv]
      },
      sn_mesh_nodes: null,
      sn_mesh_ct: null,
    },
  },
  // 5 -> 6 (mesh flows end, issue 19 hole 5): sn_config +mesh_udp_idle; sn_mesh_ct (and sn_mesh_syn,
  // same value) 32 -> 48 bytes: flags u16 -> u64 (or-ed atomically), + seen. Counters only grew.
  6: {
    recorded: true,
    changed: {
      sn_config: (k, v) => {
        const nv = Buffer.alloc(20)
        v.copy(nv, 0, 0, 16) // mesh_udp_idle 0: the default, until the agent's setConfig
        return [k, nv]
      },
      sn_mesh_ct: meshCt5to6,
      sn_mesh_syn: meshCt5to6,
    },
  },
}

/**
 * A mesh flow entry of layout 5 in layout 6: carried over as just seen (a UDP flow lives its idle
 * lifetime from the upgrade on), no FIN seen yet (layout 5 marked none).
 */
function meshCt5to6(k: Buffer, v: Buffer, _now: number, nowMs: number): readonly [Buffer, Buffer] {
  const nv = Buffer.alloc(snMeshCt.size)
  v.copy(nv, 0, 0, 10) // addr, node, port
  v.copy(nv, 12, 12, 20) // vni, table
  nv.writeUInt32LE(nowMs, 20) // seen
  v.copy(nv, 32, 20, 32) // peer_mac, own_mac
  return [k, nv]
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
function indexedCounters(version: number, names: readonly CounterName[]): (old: BpfMap, current: BpfMap) => void {
  return (old, current) => {
    if (old.valueSize !== 8) throw new BpfError('PIN_MISMATCH', `sn_stats of layout ${version} has ${old.valueSize}-byte values`)
    const add: Partial<Record<CounterName, bigint>> = {}
    names.forEach((name, i) => {
      for (const cpu of old.lookupPerCpu(u32.encode(i)) ?? []) add[name] = (add[name] ?? 0n) + cpu.readBigUInt64LE(0)
    })
    addToCounters(current, add)
  }
}

/**
 * Counters of layouts before slot indices were stable, by the version they come from: added to
 * today's once the old pins are gone (a crash in between loses counts rather than counting them
 * twice on the next start). From layout 5 on, sn_stats is copied as any unchanged map.
 */
const MERGES: Record<number, (old: BpfMap, current: BpfMap) => void> = {
  1: (old, current) => {
    if (old.valueSize !== V1_STATS_FIELDS.length * 8)
      throw new BpfError('PIN_MISMATCH', `sn_stats of layout 1 has ${old.valueSize}-byte values`)
    const add: Partial<Record<CounterName, bigint>> = {}
    for (const cpu of old.lookupPerCpu(Buffer.alloc(4)) ?? []) {
      V1_STATS_FIELDS.forEach((name, i) => {
        if (name) add[name] = (add[name] ?? 0n) + cpu.readBigUInt64LE(i * 8)
      })
    }
    addToCounters(current, add)
  },
  2: indexedCounters(2, V2_COUNTERS),
  3: indexedCounters(3, V3_COUNTERS),
  4: indexedCounters(4, V4_COUNTERS),
}

/**
 * How a map's entries of layout `from` become entries of layout `to`: the converters of each step
 * in turn (identity for a step that left the map alone), or undefined when some step cannot.
 */
export function conversionPath(
  name: string,
  from: number,
  to: number,
  steps: LayoutSteps = LAYOUT_STEPS,
): EntryConverter[] | undefined {
  if (from >= to) return undefined // a downgrade: no step goes backwards
  const path: EntryConverter[] = []
  for (let v = from + 1; v <= to; v++) {
    const step = steps[v]
    if (!step) return undefined
    const c = step.changed[name]
    if (c === null) return undefined
    if (c) path.push(c)
    else if (!step.recorded) return undefined
  }
  return path
}

/**
 * The clocks of sn_ct.seen (s) and sn_mesh_ct.seen (ms, 32 bits): CLOCK_MONOTONIC, as process.hrtime's. The programs
 * read it coarse (bpf_ktime_get_coarse_ns, a tick behind at most); the VIP path takes a `seen` ahead of it as just seen.
 */
function monotonic(): {s: number; ms: number} {
  const ns = process.hrtime.bigint()
  return {s: Number(ns / 1_000_000_000n), ms: Number((ns / 1_000_000n) & 0xffffffffn)}
}

/** Maps that hold flows (datapath-owned hashes): copied again after the swap, what the new programs wrote kept. */
function holdsFlows(name: string, m: BpfMap): boolean {
  const owner = MAP_OWNERSHIP[name as MapName]?.owner ?? 'datapath'
  return owner === 'datapath' && (m.type === MapType.HASH || m.type === MapType.LRU_HASH)
}

export interface UpgradeReport {
  from: number
  /** State carried over (converted or copied). */
  migrated: string[]
  /** Datapath-owned state with no way over: gone. */
  dropped: string[]
  /** Store-derived maps with no way over: left to the reconciler to refill. */
  refilled: string[]
}

interface Carried {
  name: string
  old: BpfMap
  into: BpfMap
  path: EntryConverter[]
}

/** The current layout's maps by name (every sn_* map of the loaded objects). */
export type CurrentMaps = Record<string, BpfMap>

/**
 * The upgrade of one node from whatever older layouts it still has pinned to the current one.
 * `begin` opens the old maps; `carryOver` before the programs are swapped; `finish` after.
 */
export class LayoutUpgrade {
  private constructor(
    private readonly layouts: Array<{old: OldLayout; report: UpgradeReport; carried: Carried[]; merge?: BpfMap}>,
    private readonly current: CurrentMaps,
  ) {}

  /** `version`/`steps`: the current layout and the table that leads to it (a test build has its own). */
  static begin(node: string, current: CurrentMaps, o: {version?: number; steps?: LayoutSteps} = {}): LayoutUpgrade {
    const version = o.version ?? LAYOUT_VERSION
    const layouts: LayoutUpgrade['layouts'] = []
    try {
      for (const old of oldLayouts(node, version)) {
        const report: UpgradeReport = {from: old.version, migrated: [], dropped: [], refilled: []}
        const entry: LayoutUpgrade['layouts'][number] = {old, report, carried: []}
        layouts.push(entry)
        for (const [name, pin] of Object.entries(old.pins)) {
          const into = current[name]
          const owner = MAP_OWNERSHIP[name as MapName]?.owner ?? 'datapath'
          if (name === 'sn_stats' && MERGES[old.version] && into) {
            entry.merge = BpfMap.openPinned(pin)
            continue
          }
          const path = into && conversionPath(name, old.version, version, o.steps ?? LAYOUT_STEPS)
          const m = path && BpfMap.openPinned(pin)
          // A map copied as it is must be the same map: one that is not lacks a step in the table
          // (a unit test checks it has none missing), and is left to the refill or dropped, reported so.
          const same =
            m && (path!.length > 0 || (m.keySize === into.keySize && m.valueSize === into.valueSize && m.type === into.type))
          if (m && same) {
            entry.carried.push({name, old: m, into, path: path!})
          } else {
            m?.close()
            if (owner === 'store') report.refilled.push(name)
            else report.dropped.push(name)
          }
        }
      }
    } catch (e) {
      new LayoutUpgrade(layouts, current).close()
      throw e
    }
    return new LayoutUpgrade(layouts, current)
  }

  /** Whether there is anything to upgrade from. */
  get active(): boolean {
    return this.layouts.length > 0
  }

  /** Pass 1, before the programs are swapped: every map with a way over is written into today's. */
  carryOver(): void {
    const now = monotonic()
    for (const l of this.layouts) for (const c of l.carried) copy(c, now, UpdateFlags.ANY)
  }

  /**
   * Pass 2, once the new programs are attached: the old pins go, the flow maps are copied again
   * with what the new programs wrote kept, old counters are merged; the old maps are closed.
   */
  finish(): UpgradeReport[] {
    try {
      for (const l of this.layouts) {
        for (const pin of Object.values(l.old.pins)) fs.rmSync(pin, {force: true})
        if (l.old.version !== 1) fs.rmSync(l.old.dir, {recursive: true, force: true})
      }
      const now = monotonic()
      for (const l of this.layouts) {
        for (const c of l.carried) {
          if (holdsFlows(c.name, c.into)) copy(c, now, UpdateFlags.NOEXIST)
          l.report.migrated.push(c.name)
        }
        if (l.merge) {
          MERGES[l.old.version]!(l.merge, this.current.sn_stats!)
          l.report.migrated.push('sn_stats')
        }
      }
      return this.layouts.map((l) => l.report)
    } finally {
      this.close()
    }
  }

  close(): void {
    for (const l of this.layouts) {
      for (const c of l.carried) c.old.close()
      l.merge?.close()
    }
  }
}

/** Every entry of c.old through c.path into c.into; NOEXIST leaves the entries already there alone. */
function copy(c: Carried, now: {s: number; ms: number}, flags: number): void {
  const entries: Array<readonly [Buffer, Buffer]> = []
  for (const kv of c.old.entries()) {
    let e: readonly [Buffer, Buffer] | undefined = kv
    for (const step of c.path) {
      e = step(e[0], e[1], now.s, now.ms)
      if (!e) break
    }
    if (e) entries.push(e)
  }
  if (flags === UpdateFlags.ANY) {
    const failed = c.into.updateMany(entries)
    if (failed.length > 0)
      throw new BpfError('SYSCALL', `${c.name}: ${failed.length} entries not carried over: ${failed[0]!.error.message}`)
    return
  }
  for (const [k, v] of entries) {
    try {
      c.into.update(k, v, flags)
    } catch (e) {
      if ((e as BpfError).errno !== 17) throw e // EEXIST: the new programs' own is newer
    }
  }
}

/** Carry over and retire, in one go (for callers with no programs to swap in between). */
export function retireOldLayouts(
  node: string,
  current: CurrentMaps,
  o: {version?: number; steps?: LayoutSteps} = {},
): UpgradeReport[] {
  const up = LayoutUpgrade.begin(node, current, o)
  up.carryOver()
  return up.finish()
}
