import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {
  Btf,
  SN_DNS_FLAGS,
  SN_DNS_VNI_KNOWN,
  checkCodecs,
  decodeEntry,
  mapCodecs,
  snConfig,
  snDevice,
  snEndpoint,
  snEndpointKey,
  snNetwork,
  structCodecs,
  u32,
  u64,
} from '../../src/bpf/index.js'
import {COUNTER_NAMES, LAYOUT_VERSION, counterEnumName} from '../../src/bpf/index.js'
import {INCLUDE, REPO, compileBpf, fixture, makeTmp} from '../fixtures/bpf/build.js'

describe('codecs: encode/decode', () => {
  it('sn_config round-trips, with network-order address and port', () => {
    const v = {node_ip: '192.168.1.10', vxlan_port: 4789, flags: 1, underlay_ifindex: 3, ct_udp_idle: 120, mesh_udp_idle: 1}
    const buf = snConfig.encode(v)
    assert.equal(buf.length, 20)
    assert.deepEqual([...buf.subarray(0, 6)], [192, 168, 1, 10, 0x12, 0xb5])
    assert.deepEqual(snConfig.decode(buf), v)
    assert.deepEqual(snConfig.flagNames('flags', 1), ['READY'])
    assert.equal(snConfig.display(v).flags, '0x1 (READY)')
  })

  it('sn_network carries the network MTU in host order', () => {
    const v = {subnet: '10.0.1.0', prefix_len: 24, flags: 1, mtu: 1450}
    const buf = snNetwork.encode(v)
    assert.deepEqual([...buf], [10, 0, 1, 0, 24, 1, ...[0xaa, 0x05]])
    assert.deepEqual(snNetwork.decode(buf), v)
  })

  it('sn_endpoint_key, sn_endpoint and sn_device round-trip', () => {
    const k = {vni: 4097, ip: '10.0.1.5'}
    assert.deepEqual(snEndpointKey.decode(snEndpointKey.encode(k)), k)
    const e = {node_ip: '172.16.0.2', ifindex: 0, mac: '02:42:0a:00:01:05', flags: 0}
    const eb = snEndpoint.encode(e)
    assert.deepEqual([...eb.subarray(8, 14)], [2, 0x42, 10, 0, 1, 5])
    assert.deepEqual(snEndpoint.decode(eb), e)
    const d = {vni: 7, ip: '10.0.9.1', flags: 1}
    assert.deepEqual(snDevice.decode(snDevice.encode(d)), d)
  })

  it('scalars and per-CPU counter slots (summed, per-CPU kept)', () => {
    assert.equal(u32.decode(u32.encode(0xdeadbeef)), 0xdeadbeef)
    assert.equal(u64.decode(u64.encode(1n << 40n)), 1n << 40n)
    const raw = Buffer.concat([u64.encode(3n), u64.encode(4n)])
    const e = decodeEntry('sn_stats', u32.encode(1), raw)
    assert.equal(e.key, 1)
    assert.equal(e.value, 7n)
    assert.deepEqual(e.perCpu, [3n, 4n])
  })

  it('rejects malformed input instead of writing garbage', () => {
    assert.throws(() => snDevice.encode({vni: 1, ip: '10.0.0.256', flags: 0}), /not an IPv4 address/)
    assert.throws(() => snEndpoint.encode({node_ip: '1.2.3.4', ifindex: 1, mac: '02:42', flags: 0}), /not a MAC/)
    assert.throws(() => snNetwork.encode({subnet: '10.0.0.0', prefix_len: 256, flags: 0, mtu: 1450}), /0\.\.255/)
    assert.throws(() => snConfig.decode(Buffer.alloc(3)), /expected 20/)
  })

  it('every map of maps.h, mesh.h (the routing mesh), mesh_addrs.h, sock_mesh.h (from the node itself), dns.h, probe.h and sock_lb.h has a codec', () => {
    const maps = ['maps.h', 'mesh.h', 'mesh_addrs.h', 'sock_mesh.h', 'dns.h', 'probe.h', 'sock_lb.h']
      .map((f) => fs.readFileSync(path.join(INCLUDE, f), 'utf8'))
      .join('\n')
    const declared = [...maps.matchAll(/^\}\s*(\w+)\s+SEC\("\.maps"\)/gm)].map((m) => m[1])
    assert.deepEqual(declared.sort(), Object.keys(mapCodecs).sort())
  })

  it('every struct a map is keyed or valued by is defined once, in a layout header', () => {
    // layout.h and the headers it includes: what the codecs mirror; any other header defining one is a second place.
    const layoutHeaders = ['layout.h', 'lb.h', 'layout_mesh.h', 'layout_sock.h', 'layout_dns.h']
    const sources = new Map<string, string>()
    for (const f of fs.readdirSync(INCLUDE).filter((f) => f.endsWith('.h')))
      sources.set(f, fs.readFileSync(path.join(INCLUDE, f), 'utf8'))
    for (const f of fs.readdirSync(path.join(REPO, 'bpf')).filter((f) => f.endsWith('.c')))
      sources.set(`../${f}`, fs.readFileSync(path.join(REPO, 'bpf', f), 'utf8'))
    const definedIn = new Map<string, string[]>()
    for (const [f, text] of sources)
      for (const m of text.matchAll(/^struct (\w+) \{/gm)) definedIn.set(m[1]!, [...(definedIn.get(m[1]!) ?? []), f])
    const used = new Set<string>()
    for (const text of sources.values()) for (const m of text.matchAll(/__type\((?:key|value), struct (\w+)\)/g)) used.add(m[1]!)
    assert.ok(
      used.has('sn_mesh_ct') && used.has('sn_sock_lb_rev') && used.has('sn_dns_scope'),
      'the map declarations were not found',
    )
    const problems = [...used]
      .map((s) => [s, definedIn.get(s) ?? []] as const)
      .filter(([, where]) => where.length !== 1 || !layoutHeaders.includes(where[0]!))
      .map(([s, where]) => `struct ${s}: defined in ${where.join(', ') || 'no header'}`)
    assert.deepEqual(problems, [])
  })

  it("layout_dns.h's name flags and the KNOWN key's VNI are the codec's", () => {
    const h = fs.readFileSync(path.join(INCLUDE, 'layout_dns.h'), 'utf8')
    const def = (n: string) => Number(new RegExp(`#define SN_DNS_${n} (0x[0-9a-f]+)`).exec(h)?.[1])
    for (const [n, v] of Object.entries(SN_DNS_FLAGS)) assert.equal(def(n), v, `SN_DNS_${n}`)
    assert.equal(def('VNI_KNOWN'), SN_DNS_VNI_KNOWN)
  })
})

describe('codecs: layout against the C headers (BTF)', () => {
  let tmp: string
  before(() => {
    tmp = makeTmp('sn-bpf-layout')
  })
  after(() => fs.rmSync(tmp, {recursive: true, force: true}))

  it('every codec matches bpf/include as compiled now', () => {
    const obj = compileBpf(fixture('layout.c'), path.join(tmp, 'layout.o'))
    assert.deepEqual(checkCodecs(obj, {structs: structCodecs}), [])
  })

  it('every codec matches the structs in the prebuilt bpf/dist objects', (t) => {
    const dist = path.join(REPO, 'bpf/dist')
    const objs = fs.existsSync(dist) ? fs.readdirSync(dist).filter((f) => f.endsWith('.o')) : []
    if (objs.length === 0) return t.diagnostic('no bpf/dist objects yet')
    for (const o of objs) {
      const p = path.join(dist, o)
      const btf = Btf.parse(p)
      // An object only carries the structs its programs use.
      const present = structCodecs.filter((c) => btf.findId(c.structName, 4) !== undefined)
      btf.close()
      assert.deepEqual(checkCodecs(p, {structs: present}), [], `bpf/dist/${o}`)
    }
  })

  it('the counter names are enum sn_counter, in order, and fit its slots', () => {
    const obj = compileBpf(fixture('layout.c'), path.join(tmp, 'counters.o'))
    const btf = Btf.parse(obj)
    try {
      const values = btf.enumValues('sn_counter')
      const expected = new Map(COUNTER_NAMES.map((n, i) => [counterEnumName(n), i]))
      expected.set('SN_C__COUNT', COUNTER_NAMES.length)
      assert.deepEqual(values, expected)
    } finally {
      btf.close()
    }
    const slots = /#define SN_COUNTER_SLOTS (\d+)/.exec(fs.readFileSync(path.join(INCLUDE, 'layout.h'), 'utf8'))
    assert.ok(slots && COUNTER_NAMES.length <= Number(slots[1]))
  })

  it('the layout version is the one layout.h declares', () => {
    const m = /#define SN_LAYOUT_VERSION (\d+)/.exec(fs.readFileSync(path.join(INCLUDE, 'layout.h'), 'utf8'))
    assert.equal(Number(m?.[1]), LAYOUT_VERSION)
  })

  it('a changed struct in layout.h is reported', () => {
    const mutated = path.join(tmp, 'mutated')
    fs.mkdirSync(mutated)
    const layout = fs.readFileSync(path.join(INCLUDE, 'layout.h'), 'utf8')
    const changed = layout.replace(/struct sn_endpoint \{\n/, 'struct sn_endpoint {\n\t__u32 sn_test_inserted;\n')
    assert.notEqual(changed, layout, 'mutation did not apply: struct sn_endpoint not found in layout.h')
    fs.writeFileSync(path.join(mutated, 'layout.h'), changed)
    fs.copyFileSync(path.join(INCLUDE, 'maps.h'), path.join(mutated, 'maps.h'))
    const obj = compileBpf(fixture('layout.c'), path.join(tmp, 'mutated.o'), {include: [mutated]})
    const problems = checkCodecs(obj, {structs: structCodecs})
    assert.ok(problems.includes('struct sn_endpoint: size is 20 in C, 16 in the codec'), problems.join('\n'))
    assert.ok(problems.includes('struct sn_endpoint.node_ip: offset is 4 in C, 0 in the codec'), problems.join('\n'))
    assert.ok(
      problems.some((p) => /member sn_test_inserted .* missing from the codec/.test(p)),
      problems.join('\n'),
    )
    assert.ok(problems.includes('map sn_endpoints: value is 20 bytes in C, 16 (struct sn_endpoint) in the codec'))
    // Nothing else changed, so nothing else is reported.
    assert.ok(
      problems.every((p) => /sn_endpoint\b|sn_endpoints/.test(p)),
      problems.join('\n'),
    )
  })
})

describe('btf', () => {
  let obj: string
  let tmp: string
  before(() => {
    tmp = makeTmp('sn-bpf-btf')
    obj = compileBpf(fixture('pinned.c'), path.join(tmp, 'pinned.o'))
  })
  after(() => fs.rmSync(tmp, {recursive: true, force: true}))

  it('resolves arrays, enums, modifiers and nested structs', () => {
    const btf = Btf.parse(obj)
    try {
      assert.deepEqual(btf.structLayout('t_nested'), {
        name: 't_nested',
        size: 20,
        members: [
          {name: 'a', offset: 0, size: 2},
          {name: 'mac', offset: 2, size: 6},
          {name: 'color', offset: 8, size: 4},
          {name: 'cv', offset: 12, size: 4},
          {name: 'anon_pair', offset: 16, size: 2},
        ],
      })
      assert.deepEqual(
        btf.enumValues('t_color'),
        new Map([
          ['T_RED', 1],
          ['T_GREEN', 2],
          ['T_BLUE', 40],
        ]),
      )
      assert.throws(() => btf.structLayout('no_such_struct'), /no struct no_such_struct/)
    } finally {
      btf.close()
    }
  })

  it('a missing object file is a clear error', () => {
    assert.throws(() => Btf.parse(path.join(tmp, 'missing.o')), /not found/)
  })
})
