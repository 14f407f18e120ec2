import assert from 'node:assert/strict'
import {execFileSync, spawnSync} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {
  BpfError,
  BpfMap,
  BpfObject,
  attachXdp,
  ensureBpffs,
  isBpffsMounted,
  nodePinDir,
  possibleCpus,
  probeFeatures,
  removeNodePins,
  testRun,
} from '../../src/bpf/index.js'
import {REPO, compileBpf, fixture, makeTmp} from '../fixtures/bpf/build.js'

const XDP_PASS = 2
const TC_ACT_OK = 0

function u32(n: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeUInt32LE(n)
  return b
}
function u64(n: bigint): Buffer {
  const b = Buffer.alloc(8)
  b.writeBigUInt64LE(n)
  return b
}

function bpfError(fn: () => unknown): BpfError {
  try {
    fn()
  } catch (e) {
    if (e instanceof BpfError) return e
    throw e
  }
  assert.fail('expected a BpfError')
}

let tmp: string
let pinnedObj: string
let pinnedV2Obj: string
let badObj: string
const pinRoot = `/sys/fs/bpf/swarmnet-test-${process.pid}`

before(() => {
  ensureBpffs()
  tmp = makeTmp('sn-bpf-loader')
  pinnedObj = compileBpf(fixture('pinned.c'), path.join(tmp, 'pinned.o'))
  pinnedV2Obj = compileBpf(fixture('pinned.c'), path.join(tmp, 'pinned-v2.o'), {defines: ['T_HASH_VALUE=__u32']})
  badObj = compileBpf(fixture('bad.c'), path.join(tmp, 'bad.o'))
})

after(() => {
  fs.rmSync(pinRoot, {recursive: true, force: true})
  if (tmp) fs.rmSync(tmp, {recursive: true, force: true})
})

describe('loader', () => {
  it('pinned maps keep their entries across close and reload', () => {
    const first = BpfObject.open(pinnedObj, {pinRoot})
    try {
      assert.deepEqual(first.pinPaths(), {t_percpu: `${pinRoot}/t_percpu`, t_hash: `${pinRoot}/t_hash`})
      first.load()
      first.map('t_hash').update(u32(7), u64(42n))
      first.map('t_private').update(u32(0), Buffer.alloc(20, 1))
    } finally {
      first.close()
    }
    assert.ok(fs.existsSync(`${pinRoot}/t_hash`))

    const second = BpfObject.open(pinnedObj, {pinRoot})
    try {
      second.load()
      assert.deepEqual(second.map('t_hash').lookup(u32(7)), u64(42n))
      // Unpinned maps are new on every load.
      assert.deepEqual(second.map('t_private').lookup(u32(0)), Buffer.alloc(20))
    } finally {
      second.close()
    }

    const pinned = BpfMap.openPinned(`${pinRoot}/t_hash`)
    try {
      assert.equal(pinned.name, 't_hash')
      assert.equal(pinned.keySize, 4)
      assert.equal(pinned.valueSize, 8)
      assert.equal(pinned.maxEntries, 1024)
      assert.deepEqual(pinned.lookup(u32(7)), u64(42n))
    } finally {
      pinned.close()
    }
  })

  it('without a pin root nothing is pinned', () => {
    const obj = BpfObject.open(pinnedObj)
    try {
      assert.deepEqual(obj.pinPaths(), {})
      obj.load()
      assert.equal(fs.existsSync('/sys/fs/bpf/t_hash'), false)
    } finally {
      obj.close()
    }
  })

  it('map operations: update, lookup, delete, keys, entries (batch, fallback and async agree)', async () => {
    const obj = BpfObject.open(pinnedObj)
    try {
      obj.load()
      const m = obj.map('t_hash')
      for (let i = 1; i <= 300; i++) m.update(u32(i), u64(BigInt(i * 10)))
      assert.equal(m.lookup(u32(1000)), undefined)
      assert.equal(m.delete(u32(300)), true)
      assert.equal(m.delete(u32(300)), false)
      const keys = [...m.keys()].map((k) => k.readUInt32LE()).sort((a, b) => a - b)
      assert.deepEqual(
        keys,
        Array.from({length: 299}, (_, i) => i + 1),
      )
      const entries = m.entries()
      assert.equal(entries.length, 299)
      for (const [k, v] of entries) assert.equal(v.readBigUInt64LE(), BigInt(k.readUInt32LE() * 10))
      const sorted = (es: Array<[Buffer, Buffer]>): string[] =>
        es.map(([k, v]) => `${k.toString('hex')}=${v.toString('hex')}`).sort()
      assert.deepEqual(sorted(m.entries({batchSize: 7})), sorted(entries), 'batch in many small steps')
      assert.deepEqual(sorted(m.entries({batchSize: 0})), sorted(entries), 'get_next_key fallback')
      // The drift check's read, each batch syscall on libuv's thread pool: the same entries.
      assert.deepEqual(sorted(await m.entriesAsync()), sorted(entries), 'async batch')
      assert.deepEqual(sorted(await m.entriesAsync({batchSize: 7})), sorted(entries), 'async batch in many small steps')
      assert.deepEqual(sorted(await m.entriesAsync({batchSize: 0})), sorted(entries), 'async: get_next_key fallback')
      const arr = obj.map('t_percpu')
      assert.deepEqual(sorted(await arr.entriesAsync({batchSize: 3})), sorted(arr.entries()), 'async: an array (key as cursor)')
      assert.throws(() => m.update(u32(1), u32(1)), /value is 4 bytes, expected 8/)
      assert.throws(() => m.lookup(Buffer.alloc(2)), /key is 2 bytes, expected 4/)
    } finally {
      obj.close()
    }
  })

  it('updateMany / deleteMany: batched and per-entry agree; a full map fails only the entries that do not fit', () => {
    for (const batchSize of [4096, 5, 0]) {
      const obj = BpfObject.open(pinnedObj)
      try {
        obj.load()
        const m = obj.map('t_hash') // 1024 entries at most
        const want = Array.from({length: 1030}, (_, i) => [u32(i + 1), u64(BigInt(i + 1) * 3n)] as const)
        const failures = m.updateMany(want, {batchSize})
        assert.deepEqual(
          failures.map((f) => f.key.readUInt32LE()),
          [1025, 1026, 1027, 1028, 1029, 1030],
          `batch ${batchSize}: the 6 that do not fit, each with its own error`,
        )
        for (const f of failures) assert.match(f.error.message, /full/)
        const got = new Map(m.entries().map(([k, v]) => [k.readUInt32LE(), v.readBigUInt64LE()]))
        assert.equal(got.size, 1024)
        for (let i = 1; i <= 1024; i++) assert.equal(got.get(i), BigInt(i) * 3n)
        // Keys already there are overwritten in place, even in a full map.
        assert.deepEqual(m.updateMany([[u32(7), u64(70n)]], {batchSize}), [])
        assert.equal(m.lookup(u32(7))!.readBigUInt64LE(), 70n)
        // Missing keys in the middle of a batch are skipped, not failures; the rest are deleted.
        const del = m.deleteMany([u32(1), u32(5000), u32(2), u32(6000), u32(3)], {batchSize})
        assert.deepEqual({deleted: del.deleted, failures: del.failures.length}, {deleted: 3, failures: 0})
        assert.equal(m.entries().length, 1021)
        assert.equal(m.lookup(u32(2)), undefined)
        assert.throws(() => m.updateMany([[u32(1), u32(1)]], {batchSize}), /value is 4 bytes/)
      } finally {
        obj.close()
      }
    }
  })

  it('per-CPU maps: one slot per possible CPU', () => {
    const obj = BpfObject.open(pinnedObj)
    try {
      obj.load()
      const m = obj.map('t_percpu')
      assert.equal(m.percpu, true)
      assert.equal(m.nCpus, possibleCpus())
      assert.equal(m.valueBufSize, 8 * possibleCpus())
      m.updatePerCpu(
        u32(2),
        Array.from({length: m.nCpus}, (_, i) => u32(i + 1)),
      )
      const per = m.lookupPerCpu(u32(2))
      assert.deepEqual(
        per?.map((b) => b.readUInt32LE()),
        Array.from({length: m.nCpus}, (_, i) => i + 1),
      )
      const entries = m.entries()
      assert.equal(entries.length, 4) // arrays always have max_entries entries
      assert.equal(entries[2]?.[1].length, m.valueBufSize)
    } finally {
      obj.close()
    }
  })

  it('testRun: XDP_PASS and the packet unchanged', () => {
    const obj = BpfObject.open(pinnedObj)
    try {
      obj.load()
      const pkt = Buffer.alloc(64)
      pkt.write('ffffffffffff020000000001', 'hex')
      pkt.writeUInt16BE(0x0800, 12)
      const r = testRun(obj.program('t_xdp_pass').fd, {data: pkt, repeat: 10})
      assert.equal(r.retval, XDP_PASS)
      assert.deepEqual(r.data, pkt)
      assert.ok(r.durationNs >= 0)
      const per = obj.map('t_percpu').lookupPerCpu(u32(0)) ?? []
      assert.equal(
        per.reduce((a, b) => a + b.readUInt32LE(), 0),
        10,
      )
    } finally {
      obj.close()
    }
  })

  it('testRun: tc program with a __sk_buff context', () => {
    const obj = BpfObject.open(pinnedObj)
    try {
      obj.load()
      const pkt = Buffer.alloc(64)
      pkt.writeUInt16BE(0x0800, 12)
      // struct __sk_buff up to and including ifindex (offset 40); ifindex 1 is lo.
      const ctx = Buffer.alloc(44)
      ctx.writeUInt32LE(1, 40)
      const r = testRun(obj.program('t_tc_pass').fd, {data: pkt, ctx})
      assert.equal(r.retval, TC_ACT_OK)
      const per = obj.map('t_percpu').lookupPerCpu(u32(1)) ?? []
      assert.equal(
        per.reduce((a, b) => a + b.readUInt32LE(), 0),
        1,
      )
    } finally {
      obj.close()
    }
  })
})

describe('loader errors', () => {
  it('nonexistent object file', () => {
    const e = bpfError(() => BpfObject.open(path.join(tmp, 'nope.o')))
    assert.equal(e.code, 'NO_OBJECT')
    assert.match(e.message, /not found: .*nope\.o/)
  })

  it('a file that is not a BPF object', () => {
    const junk = path.join(tmp, 'junk.o')
    fs.writeFileSync(junk, 'not an elf')
    const e = bpfError(() => BpfObject.open(junk))
    assert.equal(e.code, 'NO_OBJECT')
    assert.match(e.message, /cannot open BPF object/)
  })

  it('nonexistent map and program names list what exists', () => {
    const obj = BpfObject.open(pinnedObj)
    try {
      obj.load()
      const e = bpfError(() => obj.map('sn_nope'))
      assert.equal(e.code, 'NO_MAP')
      assert.match(e.message, /no map sn_nope .*maps: .*t_hash/)
      assert.match(e.message, /t_percpu/)
      assert.match(bpfError(() => obj.program('nope')).message, /programs: t_xdp_pass, t_tc_pass/)
    } finally {
      obj.close()
    }
  })

  it('verifier rejection carries the verifier log', () => {
    const obj = BpfObject.open(badObj)
    try {
      const e = bpfError(() => obj.load())
      assert.equal(e.code, 'VERIFIER')
      assert.match(e.message, /verifier rejected program t_xdp_bad/)
      assert.match(e.message, /invalid access to packet/)
      assert.ok(e.verifierLog && e.verifierLog.length > e.message.length / 2)
      assert.match(e.verifierLog ?? '', /processed \d+ insns/)
    } finally {
      obj.close()
    }
  })

  it('a pinned map that does not match the object says which, and that the layout version must change', () => {
    const root = `${pinRoot}/mismatch`
    const a = BpfObject.open(pinnedObj, {pinRoot: root})
    try {
      a.load()
    } finally {
      a.close()
    }
    const b = BpfObject.open(pinnedV2Obj, {pinRoot: root})
    try {
      const e = bpfError(() => b.load())
      assert.equal(e.code, 'PIN_MISMATCH')
      assert.match(e.message, /pinned map t_hash at .*mismatch\/t_hash .*value size 8 \(pinned\) vs 4 \(object\)/)
      assert.match(e.message, /SN_LAYOUT_VERSION/)
    } finally {
      b.close()
    }
  })

  it('pinning outside bpffs says how to mount it', () => {
    const obj = BpfObject.open(pinnedObj, {pinRoot: path.join(tmp, 'not-bpffs')})
    try {
      const e = bpfError(() => obj.load())
      assert.equal(e.code, 'NO_BPFFS')
      assert.match(e.message, /mount -t bpf bpf \/sys\/fs\/bpf/)
    } finally {
      obj.close()
    }
  })

  it('not root: EPERM says which privileges are needed', () => {
    // The object must be readable by the unprivileged user.
    fs.chmodSync(tmp, 0o755)
    fs.chmodSync(pinnedObj, 0o644)
    // the child drops to nobody itself once its modules are in (see load-child.ts)
    const r = spawnSync(process.execPath, ['--import', 'tsx', fixture('load-child.ts'), pinnedObj], {cwd: REPO, encoding: 'utf8'})
    assert.equal(r.status, 0, r.stderr)
    const o = JSON.parse(r.stdout.trim())
    assert.equal(o.code, 'PERMISSION')
    assert.match(o.message, /run as root, or grant CAP_BPF/)
  })

  it('attach to a device that does not exist names it', () => {
    const e = bpfError(() => attachXdp('sn-t-missing0', 3))
    assert.equal(e.code, 'NO_DEVICE')
    assert.match(e.message, /network device sn-t-missing0 not found/)
  })
})

describe('pins and features', () => {
  it('node pin dirs are validated', () => {
    assert.equal(nodePinDir('node-1'), '/sys/fs/bpf/swarmnet/node-1')
    for (const bad of ['', '-x', 'Node', '../x', 'a'.repeat(33), 'a/b']) {
      assert.throws(() => nodePinDir(bad), /invalid node name/, bad)
    }
    assert.equal(removeNodePins(`t${process.pid}`), false)
  })

  it('features are probed', () => {
    assert.equal(isBpffsMounted(), true)
    const f = probeFeatures()
    assert.match(f.libbpf, /^1\.\d+$/)
    assert.equal(f.progTypes.xdp, true)
    assert.equal(f.progTypes.sched_cls, true)
    assert.equal(f.mapTypes.hash_of_maps, true)
    assert.equal(f.helpers['bpf_redirect_neigh/sched_cls'], true)
    assert.equal(f.helpers['bpf_xdp_adjust_head/xdp'], true)
    assert.equal(f.bpffsMounted, true)
  })
})

describe('attach in a network namespace', () => {
  const ns = `sn-t-bpf${process.pid}`
  before(() => {
    execFileSync('ip', ['netns', 'add', ns])
    execFileSync('ip', ['-n', ns, 'link', 'add', 'sn-ta', 'type', 'veth', 'peer', 'name', 'sn-tb'])
    execFileSync('ip', ['-n', ns, 'link', 'set', 'sn-ta', 'up'])
    execFileSync('ip', ['-n', ns, 'link', 'set', 'sn-tb', 'up'])
    execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
  })
  after(() => {
    // Deleting the namespace deletes the veth pair (and anything attached) with it.
    spawnSync('ip', ['netns', 'del', ns])
  })

  it('XDP native/generic and tc attach, replace and detach', () => {
    const r = spawnSync(
      'nsenter',
      [`--net=/run/netns/${ns}`, process.execPath, '--import', 'tsx', fixture('attach-child.ts'), pinnedObj, 'sn-ta', 'sn-tb'],
      {cwd: REPO, encoding: 'utf8'},
    )
    assert.equal(r.status, 0, `child failed:\n${r.stderr}`)
    const o = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}')
    assert.ok(typeof o.nativeId === 'number' && o.nativeId > 0, JSON.stringify(o))
    assert.equal(o.genericIdOnNative, null)
    assert.equal(o.detachNative, true)
    assert.equal(o.afterDetach, null)
    assert.equal(o.detachAgain, false)

    assert.equal(o.genericId, o.nativeId, 'same program in generic mode')
    assert.equal(o.nativeIdOnGeneric, null)
    assert.equal(o.detachGeneric, true)

    assert.equal(o.loNative?.code, 'UNSUPPORTED')
    assert.match(o.loNative?.message, /native XDP attach to lo failed/)
    assert.match(o.loNative?.message, /mode 'generic'/)
    assert.equal(o.loAfter, null, 'no silent fallback to generic')

    assert.equal(o.noDeviceByIndex?.code, 'NO_DEVICE')

    assert.equal(o.asyncNativeId, o.nativeId, 'attachXdpAsync: the same program, native')
    assert.equal(o.asyncDetach, true)
    assert.equal(o.asyncLoNative?.code, 'UNSUPPORTED')
    assert.match(o.asyncLoNative?.message, /native XDP attach to lo failed/)
    assert.equal(o.asyncLoAfter, null)
    assert.equal(o.noDeviceByName?.code, 'NO_DEVICE')
    assert.match(o.noDeviceByName?.message, /sn-t-nope/)

    assert.ok(o.tcId1 > 0)
    assert.equal(o.tcId2, o.tcId1)
    assert.equal(o.tcIngressFilters, 1, 're-attach replaces, does not stack')
    assert.equal(o.tcEgressId, o.tcId1)
    assert.equal(o.tcQuery, o.tcId1)
    assert.equal(o.tcDetach, true)
    assert.equal(o.tcDetachAgain, false)
    assert.equal(o.tcQueryAfter, null)
    assert.equal(o.tcDestroy, true)
    assert.equal(o.tcDestroyAgain, false)
  })
})
