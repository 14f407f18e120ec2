// A short run of the fuzzer (bench/fuzz.ts; the full million is
// `node --import tsx bench/fuzz.ts`): random and mutated packets through every
// program, each verdict, counter and output held to the oracle built from the
// maps. A new seed each run, named in the failure so it can be replayed.

import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {fuzz} from '../../bench/fuzz.js'

describe('fuzz', () => {
  it('20,000 random and mutated packets: every verdict a drop, a pass or a redirect the maps justify, counted once, well-formed', () => {
    const res = fuzz({count: 20_000})
    assert.deepEqual(
      res.mismatches,
      [],
      `seed ${res.seed} (replay: node --import tsx bench/fuzz.ts --count 20000 --seed ${res.seed})`,
    )
    assert.equal(res.runs + res.refusedByKernel, 20_000)
    // Every outcome was reached, so the run covered every path that has a counter.
    for (const outcome of [
      'xdp_underlay xdp_decap',
      'xdp_underlay xdp_bad_source',
      'xdp_underlay xdp_not_ipv4',
      'tc_task tc_encap',
      'tc_task tc_frag_needed',
      'tc_task tc_too_big',
      'tc_task tc_unknown_device',
      'tc_task tc_arp_reply',
      'tc_task tc_local',
    ]) {
      assert.ok((res.outcomes[outcome] ?? 0) > 0, `${outcome} never happened in seed ${res.seed}`)
    }
  })
})
