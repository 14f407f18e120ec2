// The data plane's counters by name: slot i of the per-CPU array sn_stats is
// enum sn_counter's value i (bpf/include/layout.h). A new counter is a new
// name at the end of both lists, never a layout change; a test holds this list
// to the enum in the objects' BTF.

import {BpfError} from './errors.js'
import type {BpfMap} from './map.js'
import {u32, u64} from './codecs.js'

/** enum sn_counter, in order, without the SN_C_ prefix, in lower case. */
export const COUNTER_NAMES = [
  'xdp_pass',
  'xdp_decap',
  'xdp_no_endpoint',
  'xdp_malformed',
  'xdp_not_ipv4',
  'xdp_bad_source',
  'tc_local',
  'tc_encap',
  'tc_arp_reply',
  'tc_no_endpoint',
  'tc_drop_other',
  'tc_unknown_device',
  'tc_encap_fail',
  'tc_too_big',
  'tc_frag_needed',
  'lb_new_flow',
  'lb_no_backend',
  'lb_backend_gone',
  'lb_fragment',
  'lb_echo',
  'lb_drop_other',
  'lb_rev_nat',
  'mesh_new_flow',
  'mesh_local',
  'mesh_remote',
  'mesh_no_backend',
  'mesh_decap',
  'mesh_reply',
  'mesh_return',
  'mesh_fib_fail',
  'mesh_drop',
  'mesh_untracked',
  'dns_fast_answer',
  'lb_ct_closed',
  'lb_ct_reset',
  'lb_rev_nat_icmp',
  'lb_hairpin',
  'lb_reply_restored',
  'gw_node_port',
  'gw_spoofed',
  'mesh_not_syn',
  'mesh_ct_reset',
  'mesh_reply_restored',
  'lb_ct_expired',
  'probe_answered',
  'probe_refused',
  'mesh_frag_needed',
  'mesh_too_big',
  'mesh_underlay_mtu',
  'mesh_icmp_to_backend',
  'mesh_icmp_to_client',
  'mesh_ct_closed',
  'mesh_ct_expired',
  'sock_lb_connect',
  'sock_lb_send',
  'sock_lb_ended',
  'xdp_encap',
] as const

export type CounterName = (typeof COUNTER_NAMES)[number]
export type Counters = Record<CounterName, bigint>

/** The C enumerator of a counter: 'xdp_pass' -> 'SN_C_XDP_PASS'. */
export function counterEnumName(name: string): string {
  return `SN_C_${name.toUpperCase()}`
}

/** Every named counter, summed over CPUs. */
export function readCounters(map: BpfMap): Counters {
  if (map.valueSize !== 8 || !map.percpu) {
    throw new BpfError('BAD_ARGUMENT', `${map.name}: not a per-CPU array of u64 counters`)
  }
  const out = {} as Counters
  COUNTER_NAMES.forEach((name, i) => {
    const slots = map.lookupPerCpu(u32.encode(i))
    out[name] = (slots ?? []).reduce((sum, b) => sum + u64.decode(b), 0n)
  })
  return out
}

/** Add `add` to CPU 0's slot of each named counter (for migrating counts from an older layout). */
export function addToCounters(map: BpfMap, add: Partial<Record<CounterName, bigint>>): void {
  for (const [name, n] of Object.entries(add)) {
    const i = COUNTER_NAMES.indexOf(name as CounterName)
    if (i < 0 || !n) continue
    const key = u32.encode(i)
    const slots = map.lookupPerCpu(key) ?? []
    const cpu0 = (slots[0] ? u64.decode(slots[0]) : 0n) + n
    map.updatePerCpu(key, [u64.encode(cpu0), ...slots.slice(1)])
  }
}
