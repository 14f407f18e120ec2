// The node's DNS resolver in Prometheus: the responder's counters (DnsStats, counted where the
// questions are answered) and the fast path's answers (its BPF counter), read at scrape time.
import type {Registry} from 'prom-client'
import type {DnsStats} from '../dns/stats.js'
import {collected} from './collected.js'

export interface DnsMetricsSource {
  dns(): {stats: DnsStats; fastPathAnswers?: number}
}

type Numeric = {[K in keyof DnsStats]: DnsStats[K] extends number ? K : never}[keyof DnsStats]

/** swarmnet_dns_<name>_total, each one of the responder's counters. */
const RESPONDER: {name: string; of: Numeric; help: string}[] = [
  {name: 'answered', of: 'answered', help: "Questions answered from the cluster's names by the responder (NXDOMAIN included)"},
  {name: 'nxdomain', of: 'nxdomain', help: "Cluster names answered NXDOMAIN (out of the asker's scope or gone)"},
  {name: 'forwarded', of: 'forwarded', help: 'Questions for other names, forwarded upstream (cache hits included)'},
  {name: 'cache_hits', of: 'cacheHits', help: 'Forwarded questions answered from the forward cache'},
  {name: 'servfail', of: 'servfail', help: 'Forwarded questions no upstream answered in time: SERVFAIL'},
  {name: 'truncated', of: 'truncated', help: 'Answers too big for the UDP size asked for: sent with TC and no records'},
  {name: 'malformed', of: 'malformed', help: 'Malformed questions: dropped or answered FORMERR'},
  {name: 'notimp', of: 'notimp', help: 'Questions with an opcode other than QUERY: NOTIMP'},
]

export function registerDnsMetrics(r: Registry, src: DnsMetricsSource): void {
  const mirror = (name: string, help: string, read: () => number) => collected(r, 'counter', name, help, [], () => [[{}, read()]])
  collected(
    r,
    'counter',
    'swarmnet_dns_queries_total',
    "Questions that reached the TypeScript responder, by transport (the fast path's are apart)",
    ['transport'],
    () => {
      const s = src.dns().stats
      return [
        [{transport: 'udp'}, s.queries - s.tcp],
        [{transport: 'tcp'}, s.tcp],
      ]
    },
  )
  for (const c of RESPONDER) mirror(`swarmnet_dns_${c.name}_total`, c.help, () => src.dns().stats[c.of])
  mirror(
    'swarmnet_dns_fast_path_answers_total',
    "A questions answered by the eBPF fast path on the tasks' gateway-bridge devices (never seen by the responder)",
    () => src.dns().fastPathAnswers ?? 0,
  )
}
