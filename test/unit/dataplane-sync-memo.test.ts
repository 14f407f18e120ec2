// The map sync that leaves alone the maps whose wanted entries did not change (mapsync.ts
// MirrorMemo) against the sync that reads every map back each time, on two sets of real pinned
// maps: after any sequence of desired states, the maps hold the same entries (and the same Maglev
// tables); and what was changed by hand comes back at the next full sync (the drift check's).
import assert from 'node:assert/strict'
import {createHash} from 'node:crypto'
import fs from 'node:fs'
import {after, before, describe, it} from 'node:test'
import fc from 'fast-check'
import {BpfObject, ensureBpffs} from '../../src/bpf/index.js'
import {snMaglevKey} from '../../src/bpf/codecs.js'
import type {BpfMap} from '../../src/bpf/map.js'
import type {DesiredEndpoint, DesiredMaps, DesiredService} from '../../src/dataplane/desired.js'
import {
  encodeDesired,
  forgetPrepared,
  maglevChunkBuffers,
  mirrorMaps,
  prepareTable,
  newMirrorMemo,
  type MirrorMemo,
  type MirroredMap,
  type TableState,
} from '../../src/dataplane/mapsync.js'
import {EntryCache} from '../../src/dataplane/entry-cache.js'
import {maglevSize} from '../../src/lb/maglev.js'
import {bpfObjectPath} from '../../src/util/root.js'
import {syncMaps} from './sync-maps.js'

type Maps = Parameters<typeof mirrorMaps>[0]
interface Side {
  objects: BpfObject[]
  maps: Maps
  maglev: BpfMap
  tables: TableState
  memo: MirrorMemo
}

const root = `/sys/fs/bpf/swarmnet-test-sync-memo-${process.pid}`
const MIRROR: Array<
  Exclude<MirroredMap, 'sn_dns_names' | 'sn_dns_ptrs' | 'sn_dns_scopes' | 'sn_sock_targets' | 'sn_gateways' | 'sn_mesh_addrs'>
> = ['sn_networks', 'sn_endpoints', 'sn_devices', 'sn_backends', 'sn_services', 'sn_mesh_ports', 'sn_mesh_nodes']
let memoSide: Side
let fullSide: Side

function open(pinRoot: string): Side {
  const objects = ['xdp_underlay', 'tc_task'].map((name) => {
    const o = BpfObject.open(bpfObjectPath(name), {pinRoot})
    o.load()
    return o
  })
  const [underlay, task] = objects as [BpfObject, BpfObject]
  const maglev = task.map('sn_maglev')
  return {
    objects,
    maglev,
    maps: syncMaps(underlay, task),
    tables: {map: maglev, written: new Map()},
    memo: newMirrorMemo(),
  }
}

/** Every map of a side emptied, and what it remembers forgotten: the next run starts afresh. */
function reset(s: Side): void {
  for (const m of [...MIRROR.map((n) => s.maps[n]), s.maglev]) m.deleteMany(m.entries().map(([k]) => k))
  s.tables.written.clear()
  s.memo = newMirrorMemo()
}

const dump = (m: BpfMap) =>
  m
    .entries()
    .map(([k, v]) => `${k.toString('hex')}=${v.toString('hex')}`)
    .sort()

before(() => {
  ensureBpffs()
  memoSide = open(`${root}/memo`)
  fullSide = open(`${root}/full`)
})

after(() => {
  for (const s of [memoSide, fullSide]) for (const o of s?.objects ?? []) o.close()
  fs.rmSync(root, {recursive: true, force: true})
})

// A small world, so that states repeat and differ by little: addresses on two networks, two nodes.
const VNIS = [4097, 4098]
const IPS = ['10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5', '10.0.0.6']
const VIPS = ['10.0.0.100', '10.0.0.101']
const NODES = ['172.30.0.11', '172.30.0.12']

interface Ep {
  vni: number
  ip: string
  node: number
  ifindex: number
  backend: boolean
}
interface Svc {
  vni: number
  vip: string
  backends: string[]
}
interface State {
  nets: number[]
  eps: Ep[]
  svcs: Svc[]
  gws: Array<{ifindex: number; gw: number; ingress: boolean}>
}

const stateArb: fc.Arbitrary<State> = fc.record({
  nets: fc.subarray(VNIS),
  eps: fc.uniqueArray(
    fc.record({
      vni: fc.constantFrom(...VNIS),
      ip: fc.constantFrom(...IPS),
      node: fc.nat(1),
      ifindex: fc.constantFrom(0, 0, 7, 8),
      backend: fc.boolean(),
    }),
    {selector: (e) => `${e.vni}/${e.ip}`, maxLength: 8},
  ),
  svcs: fc.uniqueArray(fc.record({vni: fc.constantFrom(...VNIS), vip: fc.constantFrom(...VIPS), backends: fc.subarray(IPS)}), {
    selector: (s) => `${s.vni}/${s.vip}`,
    maxLength: 3,
  }),
  gws: fc.uniqueArray(fc.record({ifindex: fc.constantFrom(7, 8, 9), gw: fc.nat(2), ingress: fc.boolean()}), {
    selector: (g) => g.ifindex,
  }),
})

function desired(st: State): {want: DesiredMaps; services: DesiredService[]} {
  const endpoints = new Map<string, DesiredEndpoint>()
  const devices: DesiredMaps['devices'] = new Map()
  for (const e of st.eps) {
    const local = e.ifindex !== 0
    endpoints.set(`${e.vni}/${e.ip}`, {
      vni: e.vni,
      ip: e.ip,
      nodeIp: NODES[e.node]!,
      ifindex: e.ifindex,
      mac: '02:42:0a:00:00:02',
      local,
      ...(e.backend ? {backend: true as const} : {}),
    })
    if (local) devices.set(e.ifindex, {vni: e.vni, ip: e.ip, ...(e.backend ? {backend: true as const} : {})})
  }
  const services = new Map<string, DesiredService>()
  for (const s of st.svcs) {
    const backends = s.backends.map((ip, i) => ({key: `t-${ip}`, ip, nodeIp: NODES[i % 2]!}))
    const size = maglevSize(Math.max(1, backends.length))
    const contents = `${s.vni}/${s.vip}/${size}/${backends.map((b) => `${b.key}=${b.ip}`).join(',')}`
    const tableId = createHash('sha256').update(contents).digest().readUInt32BE(0) || 1
    services.set(`${s.vni}/${s.vip}`, {serviceId: s.vip, vni: s.vni, vip: s.vip, size, backends, tableId, contents})
  }
  const networks: DesiredMaps['networks'] = new Map(
    st.nets.map((vni) => [vni, {subnet: '10.0.0.0', prefixLen: 24, ingress: false, mtu: 1450}] as const),
  )
  const gateways: NonNullable<DesiredMaps['gateways']> = new Map(
    st.gws.map((g) => [g.ifindex, {gwIp: `172.18.0.${g.gw + 2}`, ...(g.ingress ? {ingressIp: '10.255.0.5'} : {})}] as const),
  )
  return {want: {networks, endpoints, devices, services, gateways}, services: [...services.values()]}
}

type Op = {op: 'sync'; state: State; full: boolean} | {op: 'drift'; map: number; key: number}

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {weight: 5, arbitrary: fc.record({op: fc.constant('sync' as const), state: stateArb, full: fc.boolean()})},
  // An entry of the memo side's maps deleted by hand.
  {weight: 1, arbitrary: fc.record({op: fc.constant('drift' as const), map: fc.nat(MIRROR.length - 1), key: fc.nat(20)})},
)

function sync(
  s: Side,
  st: State,
  memo: {full: boolean | ReadonlySet<MirroredMap | 'sn_maglev'>; prepare?: boolean} | undefined,
): void {
  const {want, services} = desired(st)
  // The tables computed ahead, as Datapath.prepareTables does before a sync.
  if (memo?.prepare) {
    forgetPrepared(s.tables, services)
    for (const svc of services) prepareTable(s.tables, svc)
  }
  const r = mirrorMaps(
    s.maps,
    encodeDesired(want),
    {state: s.tables, services},
    memo ? {state: s.memo, full: memo.full} : undefined,
  )
  assert.deepEqual(r.errors, [])
}

function assertSame(step: string): void {
  for (const name of MIRROR) assert.deepEqual(dump(memoSide.maps[name]), dump(fullSide.maps[name]), `${step}: ${name}`)
  assert.deepEqual(dump(memoSide.maglev), dump(fullSide.maglev), `${step}: sn_maglev`)
}

describe('map sync that skips unchanged maps', () => {
  it('holds what a sync that reads every map holds, after any sequence of states; drift comes back at the next full sync', () => {
    fc.assert(
      fc.property(fc.array(opArb, {minLength: 1, maxLength: 25}), fc.boolean(), (ops, checkOneByOne) => {
        reset(memoSide)
        reset(fullSide)
        // Changed by hand since the last full sync: the memo side may differ until the next one.
        let drifted = false
        let last: State | undefined
        for (const [i, o] of ops.entries()) {
          if (o.op === 'drift') {
            const m = memoSide.maps[MIRROR[o.map]!]
            const keys = m.entries().map(([k]) => k)
            if (keys.length === 0) continue
            m.delete(keys[o.key % keys.length]!)
            drifted = true
            // And the same state synced again without a full read: left as it is (that is the point).
            if (last) sync(memoSide, last, {full: false})
            continue
          }
          // Every other sync has the state the last one had (what most passes of a busy node see): the skip path.
          const st = last && i % 2 === 1 ? last : o.state
          last = st
          sync(memoSide, st, {full: o.full, prepare: i % 3 !== 0})
          sync(fullSide, st, undefined)
          if (o.full) drifted = false
          if (!drifted) assertSame(`op ${i}`)
        }
        // The drift check puts back whatever was changed by hand, reading one map back per sync
        // (as Datapath.repair does, a turn of the event loop each), or all of them in one.
        if (last) {
          if (checkOneByOne) for (const name of [...MIRROR, 'sn_maglev'] as const) sync(memoSide, last, {full: new Set([name])})
          else sync(memoSide, last, {full: true})
          sync(fullSide, last, undefined)
          assertSame('after the drift check')
        }
      }),
      {numRuns: 150},
    )
  })

  it('the entries encoded from the last call where their inputs are the same equal those encoded anew', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(stateArb, fc.boolean()), {minLength: 1, maxLength: 15}), (steps) => {
        const cache = new EntryCache()
        let last: State | undefined
        for (const [st0, again] of steps) {
          const st = again && last ? last : st0
          last = st
          const {want} = desired(st)
          const cached = encodeDesired(want, cache)
          const fresh = encodeDesired(want)
          for (const name of Object.keys(fresh) as MirroredMap[]) {
            const hex = (e: Map<string, [Buffer, Buffer]>) =>
              [...e].map(([k, [kb, v]]) => `${k}=${kb.toString('hex')}:${v.toString('hex')}`).sort()
            assert.deepEqual(hex(cached[name]), hex(fresh[name]), name)
          }
        }
      }),
      {numRuns: 300},
    )
  })

  it('the drift check reads back the maps it is given, and only those', () => {
    reset(memoSide)
    const st: State = {
      nets: [4097],
      eps: [{vni: 4097, ip: '10.0.0.2', node: 0, ifindex: 7, backend: true}],
      svcs: [{vni: 4097, vip: '10.0.0.100', backends: ['10.0.0.2']}],
      gws: [],
    }
    sync(memoSide, st, {full: true})
    const devices = memoSide.maps.sn_devices
    const endpoints = memoSide.maps.sn_endpoints
    const empty = (m: BpfMap) => m.deleteMany(m.entries().map(([k]) => k))
    empty(devices)
    empty(endpoints)
    // A table no service points at, written by hand: swept only when sn_maglev is checked.
    memoSide.maglev.update(Buffer.from('ffffff7f00000000', 'hex'), Buffer.alloc(memoSide.maglev.valueSize))
    sync(memoSide, st, {full: new Set(['sn_devices'])})
    assert.equal(devices.entries().length, 1, 'sn_devices read back and written again')
    assert.equal(endpoints.entries().length, 0, 'sn_endpoints not read back')
    assert.ok(memoSide.maglev.lookup(Buffer.from('ffffff7f00000000', 'hex')), 'the stray table not swept yet')
    sync(memoSide, st, {full: new Set(['sn_endpoints', 'sn_maglev'])})
    assert.equal(endpoints.entries().length, 1, 'sn_endpoints read back and written again')
    assert.equal(memoSide.maglev.lookup(Buffer.from('ffffff7f00000000', 'hex')), undefined, 'the stray table swept')
  })

  it('a table computed ahead is the one written, and is forgotten once written or no longer wanted', () => {
    reset(memoSide)
    const one: State = {
      nets: [4097],
      eps: [],
      svcs: [{vni: 4097, vip: '10.0.0.100', backends: ['10.0.0.2', '10.0.0.3']}],
      gws: [],
    }
    const other: State = {...one, svcs: [{vni: 4097, vip: '10.0.0.100', backends: ['10.0.0.4']}]}
    const [svc] = desired(one).services
    assert.equal(prepareTable(memoSide.tables, svc!), true)
    assert.equal(prepareTable(memoSide.tables, svc!), false, 'computed once')
    const prepared = memoSide.tables.prepared!.get(svc!.contents)!
    assert.deepEqual(prepared, maglevChunkBuffers(svc!))
    // The sync takes the prepared buffers (marked here, so that it shows) rather than computing them.
    prepared[0]!.writeUInt32BE(0x0a0000ff, 0)
    sync(memoSide, one, {full: false})
    const chunk0 = memoSide.maglev.entries().find(([k]) => {
      const key = snMaglevKey.decode(k)
      return key.table === svc!.tableId && key.chunk === 0
    })
    assert.equal(chunk0?.[1].readUInt32BE(0), 0x0a0000ff)
    assert.equal(memoSide.tables.prepared!.size, 0, 'forgotten once written')
    assert.equal(prepareTable(memoSide.tables, svc!), false, 'written already: not computed again')
    // Computed for a state that passed before it was synced: forgotten at the next preparation.
    const [gone] = desired(other).services
    prepareTable(memoSide.tables, gone!)
    forgetPrepared(memoSide.tables, desired(one).services)
    assert.equal(memoSide.tables.prepared!.size, 0)
  })

  it('a sync with nothing changed reads no map back', () => {
    reset(memoSide)
    const st: State = {nets: [4097], eps: [{vni: 4097, ip: '10.0.0.2', node: 0, ifindex: 7, backend: true}], svcs: [], gws: []}
    sync(memoSide, st, {full: true})
    // Taken out by hand: a skipping sync does not see it (it did not read), the full one puts it back.
    memoSide.maps.sn_endpoints.deleteMany(memoSide.maps.sn_endpoints.entries().map(([k]) => k))
    sync(memoSide, st, {full: false})
    assert.equal(memoSide.maps.sn_endpoints.entries().length, 0, 'not read back: left alone')
    sync(memoSide, st, {full: true})
    assert.equal(memoSide.maps.sn_endpoints.entries().length, 1, 'the full sync wrote it again')
  })
})
