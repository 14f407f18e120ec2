// The map sync against the real maps of the shipped objects (bpf/dist),
// pinned in a test folder: what happens when sn_endpoints is full.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import {after, before, describe, it} from 'node:test'
import {
  BpfObject,
  ensureBpffs,
  snBackendKey,
  snEndpointKey,
  snMaglevChunk,
  snMaglevKey,
  snService,
  snServiceKey,
  u32,
} from '../../src/bpf/index.js'
import type {BpfMap} from '../../src/bpf/map.js'
import type {DesiredEndpoint, DesiredMaps, DesiredService} from '../../src/dataplane/desired.js'
import {encodeDesired, mirrorMaps, type MirroredMap, type TableState} from '../../src/dataplane/mapsync.js'
import {maglevSize} from '../../src/lb/maglev.js'
import {bpfObjectPath} from '../../src/util/root.js'
import {syncMaps} from './sync-maps.js'

const pinRoot = `/sys/fs/bpf/swarmnet-test-sync-${process.pid}`
let objects: BpfObject[] = []
let maps: Parameters<typeof mirrorMaps>[0]

/** `n` remote endpoints on VNI 4097, numbered from `from`. */
function endpoints(n: number, from = 0): Map<string, DesiredEndpoint> {
  const out = new Map<string, DesiredEndpoint>()
  for (let i = from; i < from + n; i++) {
    const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`
    out.set(`4097/${ip}`, {vni: 4097, ip, nodeIp: '172.30.0.12', ifindex: 0, mac: '02:42:0a:00:00:01', local: false})
  }
  return out
}

const want = (eps: Map<string, DesiredEndpoint>, devices: DesiredMaps['devices']): DesiredMaps => ({
  networks: new Map([[4097, {subnet: '10.0.0.0', prefixLen: 8, ingress: false, mtu: 1450}]]),
  endpoints: eps,
  devices,
})

before(() => {
  ensureBpffs()
  for (const name of ['xdp_underlay', 'tc_task']) {
    const o = BpfObject.open(bpfObjectPath(name), {pinRoot})
    objects.push(o)
    o.load()
  }
  const [underlay, task] = objects as [BpfObject, BpfObject]
  maps = syncMaps(underlay, task)
})

after(() => {
  for (const o of objects) o.close()
  objects = []
  fs.rmSync(pinRoot, {recursive: true, force: true})
})

describe('map sync on real pinned maps', () => {
  it('a full sn_endpoints does not stop sn_devices from being written, and is reported', () => {
    const max = maps.sn_endpoints.maxEntries
    const devices = new Map([[7, {vni: 4097, ip: '10.0.0.7'}]])
    const r = mirrorMaps(maps, encodeDesired(want(endpoints(max + 10), devices)))
    assert.equal(r.errors.length, 1, JSON.stringify(r.errors))
    assert.equal(r.errors[0]!.map, 'sn_endpoints')
    assert.equal(r.errors[0]!.failed, 10)
    assert.match(r.errors[0]!.message, /map sn_endpoints is full \(65536 entries\)/)
    // The map after it was written all the same.
    assert.ok(maps.sn_devices.lookup(u32.encode(7)), 'sn_devices entry written')
    assert.ok(maps.sn_networks.lookup(u32.encode(4097)))
    assert.equal([...maps.sn_endpoints.keys()].length, max)
  })

  it('a full map frees room first: a new set of entries as large as the map replaces the old one', () => {
    const max = maps.sn_endpoints.maxEntries
    // The map is full of entries no longer wanted; the next state is as many other ones.
    const r = mirrorMaps(maps, encodeDesired(want(endpoints(max, max + 10), new Map())))
    assert.deepEqual(r.errors, [])
    assert.equal(r.deleted, max + 1) // the old endpoints and the device
    assert.ok(maps.sn_endpoints.lookup(snEndpointKey.encode({vni: 4097, ip: '10.1.0.10'})), 'a new one')
    assert.equal(maps.sn_endpoints.lookup(snEndpointKey.encode({vni: 4097, ip: '10.0.0.5'})), undefined, 'an old one gone')
  })
})

describe('map sync: a backend that stops leaves no moment where a table names it and it is gone', () => {
  const VNI = 4097
  const VIP = '10.0.0.100'
  const B = ['10.0.0.21', '10.0.0.22', '10.0.0.23']

  const state = (backends: string[], tableId: number): {want: DesiredMaps; svc: DesiredService} => {
    const eps = new Map<string, DesiredEndpoint>()
    for (const ip of backends)
      eps.set(`${VNI}/${ip}`, {
        vni: VNI,
        ip,
        nodeIp: '172.30.0.12',
        ifindex: 0,
        mac: '02:42:0a:00:00:15',
        local: false,
        backend: true,
      })
    eps.set(`${VNI}/${VIP}`, {
      vni: VNI,
      ip: VIP,
      nodeIp: '0.0.0.0',
      ifindex: 0,
      mac: '02:42:0a:00:00:64',
      local: false,
      vip: true,
    })
    const svc: DesiredService = {
      serviceId: 's1',
      vni: VNI,
      vip: VIP,
      size: maglevSize(3),
      backends: backends.map((ip) => ({key: `task-${ip}`, ip, nodeIp: '172.30.0.12'})),
      tableId,
      contents: backends.join(','),
    }
    return {want: {...want(eps, new Map()), services: new Map([[`${VNI}/${VIP}`, svc]])}, svc}
  }

  /** Every address the service's current table names has its sn_backends and sn_endpoints entries. */
  function assertTableLive(step: string): void {
    const raw = maps.sn_services.lookup(snServiceKey.encode({vni: VNI, vip: VIP}))
    if (!raw) return
    const svc = snService.decode(raw)
    const tableMap = objects[1]!.map('sn_maglev')
    for (let chunk = 0; chunk * 256 < svc.size; chunk++) {
      const c = tableMap.lookup(snMaglevKey.encode({table: svc.table, chunk}))
      assert.ok(c, `${step}: table ${svc.table} chunk ${chunk} is there`)
      for (const ip of new Set(snMaglevChunk.decode(c))) {
        if (ip === '0.0.0.0') continue
        assert.ok(maps.sn_backends.lookup(snBackendKey.encode({vni: VNI, vip: VIP, ip})), `${step}: sn_backends has ${ip}`)
        assert.ok(maps.sn_endpoints.lookup(snEndpointKey.encode({vni: VNI, ip})), `${step}: sn_endpoints has ${ip}`)
      }
    }
  }

  /** The real maps, each call that changes one followed by the check. */
  function watched(): typeof maps {
    const out: Record<string, BpfMap> = {}
    for (const [name, map] of Object.entries(maps) as Array<[string, BpfMap]>) {
      out[name] = new Proxy(map, {
        // Methods and getters run on the map itself (it keeps private fields a proxy cannot reach).
        get(target, prop) {
          const v = Reflect.get(target, prop, target) as unknown
          if (typeof v !== 'function') return v
          if (!['update', 'updateMany', 'delete', 'deleteMany'].includes(String(prop)))
            return (v as (...a: unknown[]) => unknown).bind(target)
          return (...args: unknown[]) => {
            const r = (v as (...a: unknown[]) => unknown).apply(target, args)
            assertTableLive(`after ${name}.${String(prop)}`)
            return r
          }
        },
      })
    }
    return out as typeof maps
  }

  it('the table switches first, the stopped backend entries go after', () => {
    const table: TableState = {map: objects[1]!.map('sn_maglev'), written: new Map()}
    const a = state(B, 101)
    assert.deepEqual(mirrorMaps(maps, encodeDesired(a.want), {state: table, services: [a.svc]}).errors, [])
    assertTableLive('three backends')
    // B[1] stops: the next sync drops it from the set, the endpoints and (a new table) the service.
    const b = state([B[0]!, B[2]!], 102)
    const r = mirrorMaps(watched(), encodeDesired(b.want), {state: table, services: [b.svc]})
    assert.deepEqual(r.errors, [])
    assert.equal(maps.sn_backends.lookup(snBackendKey.encode({vni: VNI, vip: VIP, ip: B[1]!})), undefined, 'gone in the end')
    assert.equal(maps.sn_endpoints.lookup(snEndpointKey.encode({vni: VNI, ip: B[1]!})), undefined)
    assert.equal(snService.decode(maps.sn_services.lookup(snServiceKey.encode({vni: VNI, vip: VIP}))!).table, 102)
  })
})
