// Reads a node's pinned maps and decodes every entry with the map's codec:
// what `swarmnet inspect maps` shows. Needs no agent, only the pins.
import {existsSync, readdirSync} from 'node:fs'
import {join} from 'node:path'
import {decodeEntry, mapCodecs, type MapName} from '../bpf/codecs.js'
import {readCounters} from '../bpf/counters.js'
import {BpfMap, mapTypeName} from '../bpf/map.js'
import {PIN_BASE} from '../bpf/pins.js'
import {layoutPinDir} from '../bpf/upgrade.js'

export interface MapDump {
  name: string
  type: string
  maxEntries: number
  entries: {key: unknown; value: unknown}[]
}

export function pinnedNodes(): string[] {
  if (!existsSync(PIN_BASE)) return []
  return readdirSync(PIN_BASE)
    .filter((n) => existsSync(layoutPinDir(n)) && readdirSync(layoutPinDir(n)).length > 0)
    .sort()
}

/** The node whose pins to read: the one named, else the only node with pinned maps on this host. */
export function pinnedNode(host: string | undefined): string {
  if (host) return host
  const nodes = pinnedNodes()
  if (nodes.length === 0)
    throw new Error(
      'no node has pinned maps on this host (/sys/fs/bpf/swarmnet/ is empty): start one with `swarmnet init` or `swarmnet lab up`',
    )
  if (nodes.length > 1)
    throw new Error(`several nodes have pinned maps here (${nodes.join(', ')}): choose one with --host or SWARMNET_HOST`)
  return nodes[0]!
}

export function readNodeMaps(node: string, only?: string): MapDump[] {
  const dir = layoutPinDir(node)
  if (!existsSync(dir)) throw new Error(`node ${node} has no pinned maps (${dir} does not exist)`)
  const names = Object.keys(mapCodecs) as MapName[]
  if (only !== undefined && !names.includes(only as MapName)) {
    throw new Error(`no map named '${only}': the maps are ${names.join(', ')}`)
  }
  const out: MapDump[] = []
  for (const name of names) {
    if (only !== undefined && name !== only) continue
    const path = join(dir, name)
    if (!existsSync(path)) continue
    const map = BpfMap.openPinned(path)
    try {
      if (name === 'sn_stats') {
        // Slots of an index array: shown as one record of named counters, summed over CPUs.
        const counters = Object.fromEntries(Object.entries(readCounters(map)).map(([k, v]) => [k, v.toString()]))
        out.push({name, type: mapTypeName(map.type), maxEntries: map.maxEntries, entries: [{key: 'all', value: counters}]})
        continue
      }
      const entries = map.entries().map(([k, v]) => {
        const d = decodeEntry(name, k, v)
        // The registry's entries differ in type; through the common shape, display takes what decode gave.
        const codec = mapCodecs[name] as {key: {display(x: unknown): unknown}; value: {display(x: unknown): unknown}}
        return {key: codec.key.display(d.key), value: codec.value.display(d.value)}
      })
      out.push({name, type: mapTypeName(map.type), maxEntries: map.maxEntries, entries})
    } finally {
      map.close()
    }
  }
  if (only !== undefined && out.length === 0) throw new Error(`map ${only} is not pinned for node ${node}`)
  return out
}
