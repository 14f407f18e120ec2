// A short run of the socket fuzzer (bench/fuzz-sock.ts; a longer one is part of `npm run bench`):
// random connect(2) and sendto(2) from a namespace and cgroup where bpf/sock_mesh.c's programs are
// attached, on maps the agent's own code wrote; every socket must reach where the maps say (one of
// a published port's targets, the same for all of a socket's datagrams, or where it was sent) and
// see the address and port it used. A new seed each run, named in the failure.

import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {formatSock, fuzzSock} from '../../bench/fuzz-sock.js'

describe('fuzz: socket programs', () => {
  it('2,000 random connect/sendto operations: each socket where the maps send it, the address it used shown back', () => {
    const res = fuzzSock({count: 2_000})
    const replay = `seed ${res.seed} (replay: node --import tsx bench/fuzz-sock.ts --count 2000 --seed ${res.seed})`
    assert.equal(res.mismatchCount, 0, `${replay}\n${formatSock(res).join('\n')}`)
    assert.equal(res.ops, 2_000)
    for (const k of ['sendto', 'udp-connect', 'tcp-connect'])
      for (const o of ['redirected', 'left alone'])
        assert.ok((res.outcomes[`${k} ${o}`] ?? 0) > 0, `${k} ${o} never happened in ${replay}`)
  })
})
