// Per published port counters, read at scrape time from the routing mesh's per-CPU map
// (sn_mesh_stats, written by the programs) and named from the store's services.
import type {Registry} from 'prom-client'
import {decodeEntry} from '../bpf/codecs.js'
import type {BpfMap} from '../bpf/map.js'
import type {Service} from '../model/types.js'
import {collected} from './collected.js'

export type PortStats = {port: number; protocol: string; service: string; packets: number; bytes: number; newFlows: number}

export interface MeshMetricsSource {
  /** Counters of every published port this node's maps count; undefined when they cannot be read. */
  publishedPorts(): PortStats[] | undefined
}

const PROTOCOLS: Record<number, string> = {6: 'tcp', 17: 'udp'}

/** Sums sn_mesh_stats over CPUs and names each (port, protocol) by the service that publishes it. */
export function readPortStats(stats: BpfMap, services: Service[]): PortStats[] {
  const owner = new Map<string, string>()
  for (const s of services) for (const p of s.ports ?? []) owner.set(`${p.published}/${p.protocol}`, s.name)
  return stats.entries().map(([k, v]) => {
    const {key, value} = decodeEntry('sn_mesh_stats', k, v)
    const protocol = PROTOCOLS[key.proto] ?? String(key.proto)
    return {
      port: key.port,
      protocol,
      // A port unpublished a moment ago still has its counters until the next sync removes them.
      service: owner.get(`${key.port}/${protocol}`) ?? '',
      packets: Number(value.packets),
      bytes: Number(value.bytes),
      newFlows: Number(value.new_flows),
    }
  })
}

export function registerMeshMetrics(r: Registry, src: MeshMetricsSource): void {
  // The three counters come from one read of the map per scrape: the registry collects them in
  // the order they were registered, so the first reads and the other two use what it read.
  let last: PortStats[] | undefined
  const counter = (name: string, help: string, of: (p: PortStats) => number, fresh: boolean) =>
    collected(r, 'counter', name, help, ['port', 'protocol', 'service'], () => {
      if (fresh) {
        try {
          last = src.publishedPorts()
        } catch {
          last = undefined
        }
      }
      return (last ?? []).map((p) => [{port: String(p.port), protocol: p.protocol, service: p.service}, of(p)])
    })
  counter(
    'swarmnet_published_port_packets_total',
    'Packets to a published port that this node received, by port, protocol and service',
    (p) => p.packets,
    true,
  )
  counter(
    'swarmnet_published_port_bytes_total',
    'Bytes to a published port that this node received, by port, protocol and service',
    (p) => p.bytes,
    false,
  )
  counter(
    'swarmnet_published_port_new_flows_total',
    'Flows to a published port that this node started balancing (a backend picked), by port, protocol and service',
    (p) => p.newFlows,
    false,
  )
}
