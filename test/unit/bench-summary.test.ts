// The bench's command line and the JSON object it ends with (bench/summary.ts): a check reads
// the ratios by these exact keys, so their presence and shape are held here without a lab.
import assert from 'node:assert/strict'
import {test} from 'node:test'
import {benchRatios, parseBenchArgs, RATIO_KEYS, spread} from '../../bench/summary.js'

const KEYS = [
  'overlayUdpVsBare',
  'overlayTcpVsBare',
  'vipUdpVsDirect',
  'vipTcpVsDirect',
  'meshUdpVsNft',
  'meshTcpVsNft',
  'dnsFastVsDnsmasq',
  'dnsResponderVsDnsmasq',
]

test('every ratio key is present, null for the sections not run', () => {
  const r = benchRatios({})
  assert.deepEqual(Object.keys(r).sort(), [...KEYS].sort())
  assert.deepEqual([...RATIO_KEYS].sort(), [...KEYS].sort())
  for (const k of KEYS) assert.equal(r[k as keyof typeof r], null)
  // It survives JSON as the same object (no NaN turned into null behind the reader's back).
  assert.deepEqual(JSON.parse(JSON.stringify(r)), r)
})

test('the ratios are median over median of the same run, one per key', () => {
  const r = benchRatios({
    overlay: {udp: {swarmnet: [90, 100, 80], bare: [200, 100, 300]}, tcp: {swarmnet: [3, 3, 3], bare: [4, 4, 4]}},
    vip: {udp: {vip: [1, 2, 3, 4], direct: [2, 2, 2, 2]}, tcp: {vip: [5], direct: [5]}},
    mesh: {udp: {swarmnet: [30, NaN, 30], kernel: [10, 10, 10]}, tcp: {swarmnet: [2], kernel: [1]}},
    dns: {fast: [150, 120, 130], responder: [50, 40, 60], dnsmasq: [50, 50, 50]},
  })
  assert.deepEqual(r, {
    overlayUdpVsBare: 0.45,
    overlayTcpVsBare: 0.75,
    vipUdpVsDirect: 1.25,
    vipTcpVsDirect: 1,
    meshUdpVsNft: 3,
    meshTcpVsNft: 2,
    dnsFastVsDnsmasq: 2.6,
    dnsResponderVsDnsmasq: 1,
  })
  for (const v of Object.values(r)) assert.equal(typeof v, 'number')
})

test('the responder is compared with dnsmasq asked the same question when that differs (kxdpgun: a long name)', () => {
  const r = benchRatios({
    dns: {fast: [400, 500, 450], responder: [60, 50], dnsmasq: [100, 100, 100], dnsmasqForResponder: [40, 60], client: 'kxdpgun'},
  })
  assert.equal(r.dnsFastVsDnsmasq, 4.5)
  assert.equal(r.dnsResponderVsDnsmasq, 1.1)
})

test('a path with no successful run gives null, not NaN or Infinity', () => {
  const r = benchRatios({dns: {fast: [NaN], responder: [10], dnsmasq: [0]}})
  assert.equal(r.dnsFastVsDnsmasq, null)
  assert.equal(r.dnsResponderVsDnsmasq, null)
})

test('spread: median with min and max of the runs that gave a number', () => {
  assert.deepEqual(spread([5, 1, NaN, 3]), {median: 3, min: 1, max: 5, n: 3})
  assert.deepEqual(spread([4, 1, 2, 3]), {median: 2.5, min: 1, max: 4, n: 4})
  assert.equal(spread([NaN]).n, 0)
})

test('--only, --runs and --json; bad input is a one-line error', () => {
  const d = parseBenchArgs([])
  assert.deepEqual([...d.only], ['overlay', 'vip', 'mesh', 'dns', 'tasks', 'scale'])
  assert.equal(d.partial, false)
  assert.ok(d.runs >= 5)
  const a = parseBenchArgs(['--only', 'dns,mesh', '--runs', '3', '--json'])
  assert.deepEqual([...a.only].sort(), ['dns', 'mesh'])
  assert.equal(a.partial, true)
  assert.equal(a.runs, 3)
  assert.equal(a.json, true)
  // The control plane at scale runs alone too (no lab).
  const sc = parseBenchArgs(['--only', 'scale'])
  assert.deepEqual([...sc.only], ['scale'])
  assert.equal(sc.partial, true)
  assert.throws(() => parseBenchArgs(['--only', 'dns,overlayy']), /^Error: --only overlayy: unknown section/)
  assert.throws(() => parseBenchArgs(['--runs', '0']), /not a whole number/)
  assert.throws(() => parseBenchArgs(['--runs']), /needs a value/)
  assert.throws(() => parseBenchArgs(['--bogus']), /unknown argument --bogus/)
})
