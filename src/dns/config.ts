import {DEFAULT_DNS_TTL, DNS_TTL_MAX} from '../model/defaults.js'
import {UserError} from '../model/errors.js'
import {tryParseIpv4} from '../model/ipv4.js'
import type {DnsSpec} from '../model/types.js'
import type {Upstream} from './forwarder.js'
import {upstreamsOf} from './forwarder.js'

/** --dns and --dns-ttl as given at init: every word checked, one clear line for the first bad one. */
export function checkDnsSpec(s: DnsSpec): DnsSpec {
  const out: DnsSpec = {}
  if (s.servers && s.servers.length > 0) {
    if (s.servers.length > 8) throw new UserError(`--dns: at most 8 servers, not ${s.servers.length}`)
    for (const x of s.servers)
      if (tryParseIpv4(x) === undefined) throw new UserError(`invalid --dns '${x}': must be an IPv4 address`)
    out.servers = [...new Set(s.servers)]
  }
  if (s.ttl !== undefined) {
    if (!Number.isInteger(s.ttl) || s.ttl < 0 || s.ttl > DNS_TTL_MAX)
      throw new UserError(`invalid --dns-ttl '${s.ttl}': must be 0-${DNS_TTL_MAX} seconds`)
    out.ttl = s.ttl
  }
  return out
}

/** Where this node forwards: the cluster's --dns, else the node's own resolv.conf (never itself). */
export function nodeUpstreams(spec: DnsSpec | undefined, resolvConf: string, self: string): Upstream[] {
  if (spec?.servers && spec.servers.length > 0) return spec.servers.map((host) => ({host, port: 53}))
  return upstreamsOf(resolvConf, self)
}

export const dnsTtl = (spec: DnsSpec | undefined) => spec?.ttl ?? DEFAULT_DNS_TTL
