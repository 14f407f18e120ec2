// A short run of the fuzzer (bench/fuzz.ts; the million is part of `npm run bench`): random and
// mutated packets through every packet program (xdp_underlay with the routing mesh, tc_task with
// VIPs, tc_gw, tc_dns, xdp_task_peer) on maps the agent's own code wrote, in a namespace of the
// fuzzer's own; each verdict, counter and output held to the oracle built from the maps
// (bench/fuzz-oracle.ts): a program that mis-forwards, miscounts or rewrites an address, a port
// or a checksum wrong fails here. A new seed each run, named in the failure so it can be replayed.

import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {formatFuzz, fuzz} from '../../bench/fuzz.js'

describe('fuzz', () => {
  it('20,000 random and mutated packets through every packet program: every verdict, count and rewrite as the maps justify', () => {
    const res = fuzz({count: 20_000})
    const replay = `seed ${res.seed} (replay: node --import tsx bench/fuzz.ts --count 20000 --seed ${res.seed})`
    assert.deepEqual(res.mismatches, [], `${replay}\n${formatFuzz(res).join('\n')}`)
    assert.equal(res.runs + res.refusedByKernel, 20_000)
    // Every path below was taken (each is drawn often enough that a run without it means the fuzzer lost it).
    for (const outcome of [
      'xdp_underlay xdp_decap',
      'xdp_underlay xdp_bad_source',
      'xdp_underlay xdp_not_ipv4',
      'xdp_underlay probe_answered',
      'xdp_underlay mesh_local',
      'xdp_underlay mesh_local (host)',
      'xdp_underlay mesh_remote',
      'xdp_underlay mesh_no_backend',
      'xdp_underlay mesh_decap',
      'xdp_underlay mesh_reply',
      'xdp_underlay mesh_icmp_to_client',
      'xdp_underlay mesh_icmp_to_backend',
      'xdp_underlay mesh_icmp_to_backend (remote)',
      'xdp_underlay mesh_frag_needed',
      'tc_task tc_encap',
      'tc_task tc_encap (vip)',
      'tc_task tc_local (vip)',
      'tc_task tc_local (rev nat)',
      'tc_task tc_frag_needed',
      'tc_task tc_too_big',
      'tc_task tc_unknown_device',
      'tc_task tc_arp_reply',
      'tc_task lb_echo',
      'tc_task lb_fragment',
      'tc_task lb_no_backend (RST)',
      'tc_gw gw_node_port',
      'tc_gw gw_spoofed',
      'tc_gw mesh_reply',
      'tc_gw mesh_reply (neigh)',
      'tc_gw mesh_return',
      'tc_gw mesh_return (icmp)',
      'tc_gw mesh_icmp_to_client (gw)',
      'tc_gw mesh_untracked',
      'tc_gw mesh_frag_needed (gw)',
      'tc_dns dns_fast_answer',
      'tc_dns dns_fast_answer (rotated)',
      'tc_dns dns_fast_answer (aaaa empty)',
      'tc_dns dns_fast_answer (nxdomain)',
      'tc_dns pass',
      'xdp_task_peer pass',
    ]) {
      assert.ok((res.outcomes[outcome] ?? 0) > 0, `${outcome} never happened in ${replay}`)
    }
    for (const c of [
      'lb_new_flow',
      'lb_hairpin',
      'lb_rev_nat',
      'lb_rev_nat_icmp',
      'lb_ct_reset',
      'mesh_new_flow',
      'mesh_not_syn',
      'mesh_ct_reset',
    ] as const) {
      assert.ok((res.counted[c] ?? 0) > 0, `${c} never counted in ${replay}`)
    }
  })
})
