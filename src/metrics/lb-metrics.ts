// Per-service load-balancing gauges, read at scrape time from the node's LB maps (sn_services,
// sn_backends, sn_ct) and named from its store, through the same join `inspect lb` uses: a
// flow counted here is a flow `inspect lb` shows. Per published port counters are not here:
// they come with the routing mesh's own counters (issue 9).
import type {Registry} from 'prom-client'
import {decodeEntry} from '../bpf/codecs.js'
import type {BpfMap} from '../bpf/map.js'
import {collected, type Samples} from './collected.js'
import {lbView, type LbMaps, type LbNames, type LbServiceView} from '../lb/inspect.js'

export type LbSnapshot = {services: LbServiceView[]; conntrack: {entries: number; max: number}}

export interface LbMetricsSource {
  /** The node's LB state now; undefined when its maps cannot be read. */
  lb(): LbSnapshot | undefined
}

/** Decodes the LB maps and joins them with the store's names. */
export function readLbSnapshot(maps: {sn_services: BpfMap; sn_backends: BpfMap; sn_ct: BpfMap}, names: LbNames): LbSnapshot {
  const ct = maps.sn_ct.entries().map(([k, v]) => decodeEntry('sn_ct', k, v))
  const decoded: LbMaps = {
    services: maps.sn_services.entries().map(([k, v]) => decodeEntry('sn_services', k, v)),
    backends: maps.sn_backends.entries().map(([k, v]) => decodeEntry('sn_backends', k, v)),
    ct,
  }
  return {services: lbView(decoded, names), conntrack: {entries: ct.length, max: maps.sn_ct.maxEntries}}
}

export function registerLbMetrics(r: Registry, src: LbMetricsSource): void {
  // One read of the maps per scrape: the registry collects metrics one by one in the order
  // they were registered, so the first of these reads and the others use what it read.
  let snap: LbSnapshot | undefined
  const snapshot = (fresh: boolean): LbSnapshot | undefined => {
    if (!fresh) return snap
    try {
      snap = src.lb()
    } catch {
      // A map that cannot be read leaves these series out of the scrape; the rest still answer.
      snap = undefined
    }
    return snap
  }
  let first = true
  const gauge = <L extends string>(name: string, help: string, labelNames: L[], read: (s: LbSnapshot) => Samples<L>) => {
    const fresh = first
    first = false
    collected(r, 'gauge', name, help, labelNames, () => {
      const s = snapshot(fresh)
      return s ? read(s) : []
    })
  }
  const frontends = (s: LbSnapshot) => s.services.flatMap((svc) => svc.frontends.map((f) => ({service: svc.service, f})))

  gauge(
    'swarmnet_service_flows',
    "Live flows from this node's clients to a service's VIP (connection tracking entries with no FIN or RST seen), by service and network",
    ['service', 'network'],
    (s) => frontends(s).map(({service, f}) => [{service, network: f.network}, f.backends.reduce((n, b) => n + b.flows, 0)]),
  )
  gauge(
    'swarmnet_service_backend_flows',
    "Live flows from this node's clients through a service's VIP to one backend, by service, network, backend task and its node",
    ['service', 'network', 'backend', 'backend_node'],
    (s) =>
      frontends(s).flatMap(({service, f}) =>
        f.backends.map((b): [Record<string, string>, number] => [
          {service, network: f.network, backend: b.task ?? b.ip, backend_node: b.node},
          b.flows,
        ]),
      ),
  )
  gauge(
    'swarmnet_service_backends',
    "Backends of a service's VIP in this node's maps, by service and network",
    ['service', 'network'],
    (s) => frontends(s).map(({service, f}) => [{service, network: f.network}, f.backends.length]),
  )
  gauge(
    'swarmnet_conntrack_entries',
    "Connection tracking entries in this node's sn_ct (both directions of every flow)",
    [],
    (s) => [[{}, s.conntrack.entries]],
  )
  gauge('swarmnet_conntrack_entries_limit', 'The most entries sn_ct holds (least recently used go first)', [], (s) => [
    [{}, s.conntrack.max],
  ])
}
