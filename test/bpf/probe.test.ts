// The data path's liveness probe (bpf/include/probe.h) in sn_xdp_underlay, on crafted
// packets: a request tagged with the node's probe key is answered in place (XDP_TX, a
// reply the prober can check); anything else to the port is dropped, never answered.

import assert from 'node:assert/strict'
import {randomBytes} from 'node:crypto'
import {after, before, describe, it} from 'node:test'
import {Loaded, XDP_DROP, XDP_PASS, pinRootFor} from './harness.js'
import * as P from './packets.js'
import {snProbeKey, u32} from '../../src/bpf/index.js'
import {PROBE_REPLY, PROBE_REQUEST, decodeProbe, encodeProbe, probeKey} from '../../src/dataplane/probe-wire.js'

const XDP_TX = 3
const NODE = '172.30.0.11'
const PEER = '172.30.0.12'
const PORT = 4789
const PEER_PORT = 41000
const NODE_MAC = '02:00:ac:1e:00:0b'
const PEER_MAC = '02:00:ac:1e:00:0c'
const KEY_ID = 3
const KEY = probeKey(Buffer.alloc(32, 7))
const WRONG_KEY = probeKey(Buffer.alloc(32, 8))
const HDRS = P.ETH_HLEN + P.IPV4_HLEN + P.UDP_HLEN

let l: Loaded

before(() => {
  l = new Loaded(pinRootFor('probe'), 'xdp_underlay.o', 'sn_xdp_underlay')
  l.setConfig({nodeIp: NODE, vxlanPort: PORT, underlayIfindex: 1})
  setKey(KEY_ID, KEY, true)
})

after(() => {
  l?.close()
})

function setKey(id: number, key: Buffer, set: boolean): void {
  l.map('sn_probe_keys').update(u32.encode(id), snProbeKey.encode({key: key.toString('hex'), flags: set ? 1 : 0}))
}

function frame(payload: Buffer, o: {dst?: string; dstPort?: number} = {}): Buffer {
  return P.ethernet(
    {dst: NODE_MAC, src: PEER_MAC, type: P.ETH_P_IP},
    P.ipv4Packet(
      {src: PEER, dst: o.dst ?? NODE, protocol: P.IPPROTO_UDP},
      P.udp({srcPort: PEER_PORT, dstPort: o.dstPort ?? PORT}, payload),
    ),
  )
}

function request(o: {key?: Buffer; keyId?: number; src?: string; dst?: string; type?: number} = {}): {
  pkt: Buffer
  nonce: Buffer
} {
  const nonce = randomBytes(16)
  const payload = encodeProbe(
    {type: o.type ?? PROBE_REQUEST, keyId: o.keyId ?? KEY_ID, nonce},
    o.key ?? KEY,
    o.src ?? PEER,
    o.dst ?? NODE,
  )
  return {pkt: frame(payload), nonce}
}

function run(pkt: Buffer): {retval: number; data: Buffer; delta: Record<string, number>} {
  const {res, delta} = l.runCounted(pkt)
  return {retval: res.retval, data: res.data, delta}
}

function expectRefused(pkt: Buffer, counter: string): void {
  const r = run(pkt)
  assert.equal(r.retval, XDP_DROP, `verdict ${r.retval}, expected XDP_DROP`)
  assert.deepEqual(r.delta, {[counter]: 1})
}

describe('the data-path probe in sn_xdp_underlay', () => {
  it('answers a request tagged with the key of its key id: addresses and ports swapped, a reply the prober can check', () => {
    const {pkt, nonce} = request()
    const r = run(pkt)
    assert.equal(r.retval, XDP_TX, `verdict ${r.retval}, expected XDP_TX`)
    assert.deepEqual(r.delta, {probe_answered: 1})
    const out = r.data
    assert.equal(out.length, pkt.length)
    assert.ok(out.subarray(0, 6).equals(P.mac(PEER_MAC)) && out.subarray(6, 12).equals(P.mac(NODE_MAC)), 'MACs swapped')
    const ip = out.subarray(P.ETH_HLEN, P.ETH_HLEN + P.IPV4_HLEN)
    assert.ok(ip.subarray(12, 16).equals(P.ipv4(NODE)) && ip.subarray(16, 20).equals(P.ipv4(PEER)), 'addresses swapped')
    assert.equal(P.inetChecksum(ip), 0, 'the IPv4 checksum still checks')
    const udp = out.subarray(P.ETH_HLEN + P.IPV4_HLEN, HDRS)
    assert.equal(udp.readUInt16BE(0), PORT)
    assert.equal(udp.readUInt16BE(2), PEER_PORT)
    assert.equal(udp.readUInt16BE(6), 0, 'no UDP checksum (the payload changed)')
    const reply = decodeProbe(out.subarray(HDRS), NODE, PEER, (id) => (id === KEY_ID ? KEY : undefined))
    assert.ok(reply, 'the reply checks under the key, from the node to the prober')
    assert.equal(reply.type, PROBE_REPLY)
    assert.ok(reply.nonce.equals(nonce), "the reply carries the prober's nonce")
    // The same reply does not check as if another node had sent it.
    assert.equal(
      decodeProbe(out.subarray(HDRS), '172.30.0.13', PEER, () => KEY),
      undefined,
    )
  })

  it('drops, never answers, a request tagged with another key', () => {
    expectRefused(request({key: WRONG_KEY}).pkt, 'probe_refused')
  })

  it('drops a request naming a key id with no key set (an unset slot is zeros, which anyone knows)', () => {
    expectRefused(request({keyId: 9, key: Buffer.alloc(16)}).pkt, 'probe_refused')
    setKey(10, KEY, false)
    expectRefused(request({keyId: 10}).pkt, 'probe_refused')
  })

  it('drops a request tagged for another source or destination (a tag cannot be carried to another pair)', () => {
    expectRefused(request({src: '172.30.0.13'}).pkt, 'probe_refused')
    expectRefused(request({dst: '172.30.0.13'}).pkt, 'probe_refused')
  })

  it('drops a reply sent to it, so two nodes cannot be made to answer each other forever', () => {
    expectRefused(request({type: PROBE_REPLY}).pkt, 'xdp_malformed')
  })

  it('drops malformed probes: cut short, a bad magic, version or reserved byte, a flipped tag bit', () => {
    const {pkt} = request()
    expectRefused(pkt.subarray(0, pkt.length - 1), 'xdp_malformed')
    for (const [off, v] of [
      [0, 0x54],
      [4, 2],
      [7, 1],
    ]) {
      const bad = Buffer.from(pkt)
      bad[HDRS + off] = v
      expectRefused(bad, 'xdp_malformed')
    }
    const flipped = Buffer.from(pkt)
    flipped[pkt.length - 1] ^= 1
    expectRefused(flipped, 'probe_refused')
    const nonce = Buffer.from(pkt)
    nonce[HDRS + 8] ^= 1
    expectRefused(nonce, 'probe_refused')
  })

  it('leaves a probe to another port or address to the kernel, untouched', () => {
    const payload = request().pkt.subarray(HDRS)
    for (const pkt of [frame(payload, {dstPort: 4790}), frame(payload, {dst: '172.30.0.13'})]) {
      const r = run(pkt)
      assert.equal(r.retval, XDP_PASS)
      assert.deepEqual(r.delta, {xdp_pass: 1})
      assert.ok(r.data.equals(pkt))
    }
  })

  it('stops answering when the key is taken away', () => {
    setKey(KEY_ID, KEY, false)
    try {
      expectRefused(request().pkt, 'probe_refused')
    } finally {
      setKey(KEY_ID, KEY, true)
    }
    assert.equal(run(request().pkt).retval, XDP_TX)
  })
})
