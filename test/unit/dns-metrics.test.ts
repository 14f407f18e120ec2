// The resolver's counters as Prometheus reads them: each DnsStats field under its own name, the
// transport split of the questions, and the fast path's answers from its source.
import assert from 'node:assert/strict'
import {test} from 'node:test'
import {DnsStats} from '../../src/dns/stats.js'
import {bareMetrics} from './metrics-fixture.js'
import {parseExposition, sumOf} from '../../src/metrics/parse.js'

test('the DNS counters are exported as swarmnet_dns_*_total, read at each scrape', async () => {
  const stats = new DnsStats()
  let fast = 7
  const m = bareMetrics({
    dns: () => ({stats, fastPathAnswers: fast}),
  })
  Object.assign(stats, {
    queries: 20,
    tcp: 3,
    answered: 9,
    nxdomain: 2,
    forwarded: 8,
    cacheHits: 5,
    servfail: 1,
    truncated: 4,
    malformed: 6,
    notimp: 1,
  })
  let e = parseExposition(await m.text())
  assert.equal(sumOf(e, 'swarmnet_dns_queries_total', {transport: 'udp'}), 17)
  assert.equal(sumOf(e, 'swarmnet_dns_queries_total', {transport: 'tcp'}), 3)
  const want: [string, number][] = [
    ['answered', 9],
    ['nxdomain', 2],
    ['forwarded', 8],
    ['cache_hits', 5],
    ['servfail', 1],
    ['truncated', 4],
    ['malformed', 6],
    ['notimp', 1],
    ['fast_path_answers', 7],
  ]
  for (const [name, v] of want) assert.equal(sumOf(e, `swarmnet_dns_${name}_total`, {node: 'n1'}), v, name)
  // Counted on: the next scrape reads the new values, never an old copy.
  stats.answered++
  fast = 10
  e = parseExposition(await m.text())
  assert.equal(sumOf(e, 'swarmnet_dns_answered_total'), 10)
  assert.equal(sumOf(e, 'swarmnet_dns_fast_path_answers_total'), 10)
})
