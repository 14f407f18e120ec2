// The forward cache against a real upstream on loopback: a cached answer's TTLs count down with
// the time it has been kept, in every section, until it expires and the upstream is asked again.
import assert from 'node:assert/strict'
import {createSocket, type Socket} from 'node:dgram'
import {after, before, test} from 'node:test'
import * as dns from 'dns-packet'
import {Forwarder, aged} from '../../src/dns/forwarder.js'
import {DnsStats} from '../../src/dns/stats.js'

let upstream: Socket
let seen = 0
let fwd: Forwarder
let clock = 1_000_000
const stats = new DnsStats()

before(async () => {
  upstream = createSocket('udp4')
  upstream.on('message', (m, r) => {
    seen++
    const q = dns.decode(m)
    const name = q.questions![0]!.name
    const res = dns.encode({
      type: 'response',
      id: q.id,
      flags: dns.RECURSION_AVAILABLE,
      questions: q.questions,
      answers: [
        {type: 'CNAME', name, ttl: 300, data: 'real.example'},
        {type: 'A', name: 'real.example', ttl: 60, data: '192.0.2.9'},
      ],
      authorities: [{type: 'NS', name: 'example', ttl: 3600, data: 'ns.example'}],
      additionals: [
        {type: 'A', name: 'ns.example', ttl: 3600, data: '192.0.2.53'},
        {type: 'OPT', name: '.', udpPayloadSize: 1232, flags: 0} as unknown as dns.Answer,
      ],
    })
    upstream.send(res, r.port, r.address)
  })
  await new Promise<void>((r) => upstream.bind(0, '127.0.0.1', r))
  fwd = new Forwarder({upstreams: [{host: '127.0.0.1', port: upstream.address().port}], stats, now: () => clock})
  await fwd.start()
})

after(() => {
  fwd.stop()
  upstream.close()
})

interface Rec {
  name: string
  type: string
  ttl?: number
  udpPayloadSize?: number
  flags?: number
}
const ttls = (b: Buffer) => {
  const p = dns.decode(b) as unknown as {answers: Rec[]; authorities: Rec[]; additionals: Rec[]}
  return {
    answers: p.answers.map((a) => a.ttl),
    authorities: p.authorities.map((a) => a.ttl),
    additionals: p.additionals.map((a) => (a.type === 'OPT' ? `OPT ${a.udpPayloadSize}` : a.ttl)),
  }
}
const query = dns.encode({type: 'query', id: 7, flags: dns.RECURSION_DESIRED, questions: [{type: 'A', name: 'alias.example'}]})

test('a cached upstream answer is returned with its TTLs counted down, until its smallest TTL runs out', async () => {
  const first = await fwd.forward(query, 'alias.example/A/IN')
  assert.deepEqual(ttls(first!), {answers: [300, 60], authorities: [3600], additionals: [3600, 'OPT 1232']})
  assert.equal(seen, 1)
  clock += 7_400 // 7 whole seconds
  const later = await fwd.forward(query, 'alias.example/A/IN')
  assert.equal(seen, 1, 'answered from the cache')
  assert.equal(stats.cacheHits, 1)
  assert.deepEqual(ttls(later!), {answers: [293, 53], authorities: [3593], additionals: [3593, 'OPT 1232']})
  // The cached copy itself is not changed: the same age gives the same TTLs.
  assert.deepEqual(ttls((await fwd.forward(query, 'alias.example/A/IN'))!).answers, [293, 53])
  clock += 52_600 // 60 s since it came: the A record's TTL is out, so the upstream is asked again
  const fresh = await fwd.forward(query, 'alias.example/A/IN')
  assert.equal(seen, 2)
  assert.deepEqual(ttls(fresh!).answers, [300, 60])
})

test('aged: never below 0, and a response it cannot walk comes back unchanged', () => {
  const res = dns.encode({
    type: 'response',
    id: 1,
    questions: [{type: 'A', name: 'x.example'}],
    answers: [{type: 'A', name: 'x.example', ttl: 5, data: '192.0.2.1'}],
  })
  assert.deepEqual(ttls(aged(res, 9)).answers, [0])
  const cut = res.subarray(0, res.length - 6)
  assert.deepEqual(aged(cut, 3), cut)
})
