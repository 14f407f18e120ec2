// The DNS fast path's entries taken again from the last call (src/dataplane/entry-cache.ts) against
// the same call encoding every entry anew: after any sequence of name tables, equal entries.
import assert from 'node:assert/strict'
import {test} from 'node:test'
import fc from 'fast-check'
import type {Entries} from '../../src/dataplane/desired.js'
import {EntryCache} from '../../src/dataplane/entry-cache.js'
import {desiredDns, type FastPathInput} from '../../src/dns/fastpath.js'
import type {NameTable, NetworkNames} from '../../src/dns/names.js'
import type {Network} from '../../src/model/types.js'
import {networkRecord} from './model-records.js'

const NETWORKS: Network[] = [
  networkRecord('front', '10.0.1.0/24', {vni: 4097, gateway: '10.0.1.1'}),
  networkRecord('back', '10.0.2.0/24', {vni: 4098, gateway: '10.0.2.1'}),
  networkRecord('novni', '10.0.3.0/24', {gateway: '10.0.3.1'}),
]
// Names that repeat from table to table, some the fast path cannot hold (too long, a reverse or SRV name, a bad label).
const NAMES = ['web', 'tasks.web', 'web.1.abc', 'db', 'x'.repeat(64), '2.1.0.10.in-addr.arpa', '_80._tcp.web', 'a..b', 'Web']
const IPS = ['10.0.1.2', '10.0.1.3', '10.0.1.4', '10.0.1.5', '10.0.1.6', '10.0.1.7', '10.0.1.8', '10.0.1.9', '10.0.1.10']

const networkArb = (id: string): fc.Arbitrary<NetworkNames> =>
  fc
    .record({
      a: fc.uniqueArray(
        fc.record({
          name: fc.constantFrom(...NAMES),
          ips: fc.subarray(IPS),
          rotate: fc.boolean(),
        }),
        {selector: (r) => r.name, maxLength: 6},
      ),
      ptr: fc.uniqueArray(fc.tuple(fc.constantFrom(...IPS), fc.constantFrom(...NAMES)), {selector: ([ip]) => ip, maxLength: 5}),
    })
    .map(({a, ptr}) => ({
      id,
      name: id,
      a: new Map(a.map((r) => [r.name.toLowerCase(), {ips: r.ips, rotate: r.rotate, kind: 'service' as const}])),
      ptr: new Map(ptr),
      srv: new Map(),
    }))

const tableArb: fc.Arbitrary<NameTable> = fc
  .record({
    nets: fc.subarray(['front', 'back', 'novni']).chain((ids) => fc.tuple(...ids.map(networkArb))),
    known: fc.subarray(NAMES),
    askers: fc.uniqueArray(fc.tuple(fc.constantFrom('172.18.0.2', '172.18.0.3'), fc.subarray(['front', 'back', 'novni'])), {
      selector: ([gw]) => gw,
    }),
  })
  .map(({nets, known, askers}) => ({
    networks: new Map(nets.map((n) => [n.id, n])),
    known: new Set(known),
    scopes: new Map(askers),
    askers: new Map(askers.map(([gw], i) => [gw, `task${i}`])),
  }))

const hex = (e: Entries) => [...e].map(([k, [kb, v]]) => `${k}=${kb.toString('hex')}:${v.toString('hex')}`).sort()

test('the fast path from cached entries equals the fast path encoded anew, after any sequence of tables', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(tableArb, fc.boolean()), {minLength: 1, maxLength: 12}), (steps) => {
      const cache = new EntryCache()
      let last: NameTable | undefined
      for (const [t, again] of steps) {
        // Often the table of the last call once more: what most of a busy node's passes ask for.
        const table = again && last ? last : t
        last = table
        const input: FastPathInput = {table, networks: NETWORKS, resolver: '172.18.0.1', ttl: 5, gwIfindex: (id) => id.length}
        const cached = desiredDns({...input, cache})
        const fresh = desiredDns(input)
        assert.deepEqual(hex(cached.names), hex(fresh.names))
        assert.deepEqual(hex(cached.ptrs), hex(fresh.ptrs))
        assert.deepEqual(hex(cached.scopes), hex(fresh.scopes))
      }
    }),
    {numRuns: 300},
  )
})
