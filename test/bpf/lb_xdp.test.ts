// Reverse NAT on the XDP decap path: a client's flow to a VIP is tracked by
// sn_tc_task on the client's node, the backend on another node answers, and
// sn_xdp_underlay (sharing the pinned maps, as on a node) hands the reply to
// the client with the VIP as its source and its checksums still valid.

import assert from 'node:assert/strict'
import {after, before, describe, it} from 'node:test'
import {snCtKey, snEndpoint, snEndpointKey} from '../../src/bpf/index.js'
import {Loaded, TC_ACT_REDIRECT, XDP_REDIRECT, pinRootFor, skbCtx} from './harness.js'
import * as P from './packets.js'

const NODE = '172.30.0.11'
const PEER = '172.30.0.12'
const VNI = 4097
const CLIENT = {ip: '10.0.1.4', mac: '02:42:0a:00:01:04'}
const VIP = {ip: '10.0.1.100', mac: '02:42:0a:00:01:64'}
const BACKEND = {key: 'task-b', ip: '10.0.1.9', mac: '02:42:0a:00:01:09'}
const root = pinRootFor('lb-xdp')
let tc: Loaded
let xdp: Loaded

function frame(
  src: string,
  dst: string,
  proto: number,
  sport: number,
  dport: number,
  srcMac: string,
  dstMac: string,
  sum = true,
): Buffer {
  const l4 =
    proto === P.IPPROTO_TCP
      ? P.tcp({srcPort: sport, dstPort: dport, flags: 0x12}, Buffer.from('reply'))
      : P.udp({srcPort: sport, dstPort: dport}, Buffer.from('reply udp'))
  if (sum) l4.writeUInt16BE(P.l4Checksum(src, dst, proto, l4), proto === P.IPPROTO_TCP ? 16 : 6)
  return P.ethernet({dst: dstMac, src: srcMac, type: P.ETH_P_IP}, P.ipv4Packet({src, dst, protocol: proto}, l4))
}

const addrOf = (b: Buffer, at: number): string => [...b.subarray(at, at + 4)].join('.')

before(() => {
  tc = new Loaded(root, 'tc_task.o', 'sn_tc_task')
  xdp = new Loaded(root, 'xdp_underlay.o', 'sn_xdp_underlay', {keepPins: true})
  tc.setConfig({nodeIp: NODE, vxlanPort: 4789, underlayIfindex: 1})
  tc.addNetwork(VNI, '10.0.1.0', 24)
  tc.addDevice(1, VNI, CLIENT.ip)
  const ep = (ip: string, mac: string, flags: number, nodeIp: string, ifindex: number) =>
    tc.map('sn_endpoints').update(snEndpointKey.encode({vni: VNI, ip}), snEndpoint.encode({node_ip: nodeIp, ifindex, mac, flags}))
  ep(CLIENT.ip, CLIENT.mac, 1, NODE, 1)
  ep(VIP.ip, VIP.mac, 2, '0.0.0.0', 0)
  ep(BACKEND.ip, BACKEND.mac, 4, PEER, 0)
  tc.addService(VNI, VIP.ip, 9, [{key: BACKEND.key, ip: BACKEND.ip, nodeIp: PEER}])
})

after(() => {
  xdp?.close()
  tc?.close()
})

describe('VIP replies through XDP decap', () => {
  for (const [name, proto] of [
    ['TCP', P.IPPROTO_TCP],
    ['UDP', P.IPPROTO_UDP],
  ] as const) {
    it(`${name}: the reply from the remote backend reaches the client from the VIP, checksums valid`, () => {
      const out = tc.run(frame(CLIENT.ip, VIP.ip, proto, 40001, 80, CLIENT.mac, VIP.mac), {ctx: skbCtx(1)})
      assert.equal(out.retval, TC_ACT_REDIRECT)
      assert.equal(addrOf(out.data, P.ETH_HLEN + P.VXLAN_OVERHEAD + 16), BACKEND.ip, 'encapsulated to the backend')

      const reply = frame(BACKEND.ip, CLIENT.ip, proto, 80, 40001, BACKEND.mac, CLIENT.mac)
      const pkt = P.vxlanFrame(
        {outerSrcMac: '02:00:ac:1e:00:0c', outerDstMac: '02:00:ac:1e:00:0b', outerSrc: PEER, outerDst: NODE, vni: VNI},
        reply,
      )
      const {res, delta} = xdp.runCounted(pkt)
      assert.equal(res.retval, XDP_REDIRECT)
      assert.deepEqual(delta, {xdp_decap: 1, lb_rev_nat: 1})
      const ip = res.data.subarray(P.ETH_HLEN)
      assert.equal(addrOf(ip, 12), VIP.ip)
      assert.equal(addrOf(ip, 16), CLIENT.ip)
      assert.equal(P.inetChecksum(ip.subarray(0, 20)), 0)
      assert.equal(P.l4Checksum(VIP.ip, CLIENT.ip, proto, ip.subarray(20, ip.readUInt16BE(2))), 0)
    })
  }

  it('a UDP reply without a checksum keeps none; a flow not tracked is left alone', () => {
    tc.run(frame(CLIENT.ip, VIP.ip, P.IPPROTO_UDP, 40002, 80, CLIENT.mac, VIP.mac), {ctx: skbCtx(1)})
    const wrap = (f: Buffer) =>
      P.vxlanFrame(
        {outerSrcMac: '02:00:ac:1e:00:0c', outerDstMac: '02:00:ac:1e:00:0b', outerSrc: PEER, outerDst: NODE, vni: VNI},
        f,
      )
    const r = xdp.run(wrap(frame(BACKEND.ip, CLIENT.ip, P.IPPROTO_UDP, 80, 40002, BACKEND.mac, CLIENT.mac, false)))
    const ip = r.data.subarray(P.ETH_HLEN)
    assert.equal(addrOf(ip, 12), VIP.ip)
    assert.equal(ip.readUInt16BE(26), 0)
    const untracked = xdp.run(wrap(frame(BACKEND.ip, CLIENT.ip, P.IPPROTO_UDP, 80, 40999, BACKEND.mac, CLIENT.mac)))
    assert.equal(addrOf(untracked.data.subarray(P.ETH_HLEN), 12), BACKEND.ip)
  })

  const wrapX = (f: Buffer) =>
    P.vxlanFrame(
      {outerSrcMac: '02:00:ac:1e:00:0c', outerDstMac: '02:00:ac:1e:00:0b', outerSrc: PEER, outerDst: NODE, vni: VNI},
      f,
    )

  it('an ICMP port unreachable from the remote backend reaches the client from the VIP, quoting the VIP', () => {
    const out = tc.run(frame(CLIENT.ip, VIP.ip, P.IPPROTO_UDP, 40003, 53, CLIENT.mac, VIP.mac), {ctx: skbCtx(1)})
    const sent = out.data.subarray(P.ETH_HLEN + P.VXLAN_OVERHEAD) // the datagram as the backend got it
    const msg = Buffer.concat([Buffer.from([3, 3, 0, 0, 0, 0, 0, 0]), sent.subarray(0, sent.readUInt16BE(2))])
    msg.writeUInt16BE(P.inetChecksum(msg), 2)
    const icmp = P.ethernet(
      {dst: CLIENT.mac, src: BACKEND.mac, type: P.ETH_P_IP},
      P.ipv4Packet({src: BACKEND.ip, dst: CLIENT.ip, protocol: P.IPPROTO_ICMP}, msg),
    )
    const {res, delta} = xdp.runCounted(wrapX(icmp))
    assert.equal(res.retval, XDP_REDIRECT)
    assert.deepEqual(delta, {xdp_decap: 1, lb_rev_nat_icmp: 1})
    const ip = res.data.subarray(P.ETH_HLEN)
    assert.equal(addrOf(ip, 12), VIP.ip)
    assert.equal(P.inetChecksum(ip.subarray(0, 20)), 0)
    assert.equal(P.inetChecksum(ip.subarray(20, ip.readUInt16BE(2))), 0, 'ICMP checksum')
    const q = ip.subarray(28)
    assert.equal(addrOf(q, 16), VIP.ip)
    assert.equal(P.inetChecksum(q.subarray(0, 20)), 0)
    assert.equal(P.l4Checksum(CLIENT.ip, VIP.ip, P.IPPROTO_UDP, q.subarray(20, q.readUInt16BE(2))), 0)
  })

  it('a RST from the remote backend still reaches the client from the VIP, and ends the tracking of the flow', () => {
    tc.run(frame(CLIENT.ip, VIP.ip, P.IPPROTO_TCP, 40004, 80, CLIENT.mac, VIP.mac), {ctx: skbCtx(1)})
    const fk = snCtKey.encode({vni: VNI, src: CLIENT.ip, dst: VIP.ip, sport: 40004, dport: 80, proto: P.IPPROTO_TCP, dir: 0})
    assert.ok(tc.map('sn_ct').lookup(fk))
    const rst = frame(BACKEND.ip, CLIENT.ip, P.IPPROTO_TCP, 80, 40004, BACKEND.mac, CLIENT.mac)
    rst[P.ETH_HLEN + 33] = 0x14 // RST|ACK, checksum fixed below
    rst.writeUInt16BE(0, P.ETH_HLEN + 36)
    rst.writeUInt16BE(P.l4Checksum(BACKEND.ip, CLIENT.ip, P.IPPROTO_TCP, rst.subarray(P.ETH_HLEN + 20)), P.ETH_HLEN + 36)
    const {res, delta} = xdp.runCounted(wrapX(rst))
    assert.deepEqual(delta, {xdp_decap: 1, lb_rev_nat: 1, lb_ct_reset: 1})
    assert.equal(addrOf(res.data.subarray(P.ETH_HLEN), 12), VIP.ip)
    assert.equal(tc.map('sn_ct').lookup(fk), undefined)
  })
})
