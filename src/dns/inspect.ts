import type {NameTable} from './names.js'

/** GET /dns: what this node's resolver answers, per network, and what it has counted. */
export interface DnsInspectView {
  node: string
  listen: string
  ttl: number
  upstreams: string[]
  counters: Record<string, number>
  networks: {network: string; names: {name: string; kind: string; ips: string[]}[]}[]
}

export function dnsInspectView(
  node: string,
  listen: string,
  ttl: number,
  upstreams: string[],
  table: NameTable,
  counters: Record<string, number>,
): DnsInspectView {
  const networks = [...table.networks.values()]
    .map((n) => ({
      network: n.name,
      names: [...n.a].map(([name, r]) => ({name, kind: r.kind, ips: r.ips})).sort((a, b) => (a.name < b.name ? -1 : 1)),
    }))
    .sort((a, b) => (a.network < b.network ? -1 : 1))
  return {node, listen, ttl, upstreams, counters, networks}
}
