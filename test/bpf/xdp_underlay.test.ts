// sn_xdp_underlay on crafted packets (BPF_PROG_TEST_RUN): what it decapsulates,
// what it leaves to the kernel, what it drops, and which counter says so.

import assert from 'node:assert/strict'
import {after, before, describe, it} from 'node:test'
import {Loaded, XDP_DROP, XDP_PASS, XDP_REDIRECT, pinRootFor} from './harness.js'
import * as P from './packets.js'
import {snEndpointKey} from '../../src/bpf/index.js'

const NODE = '172.30.0.11'
const PEER = '172.30.0.12'
const THIRD = '172.30.0.13' // another node of the cluster
const STRANGER = '172.30.0.99' // a host on the underlay that is not a node
const PORT = 4789
const VNI = 4097
const OTHER_VNI = 4098 // ours too, but 10.0.1.4 is not on it

const LOCAL_IP = '10.0.1.4'
const LOCAL_MAC = '02:42:0a:00:01:04'
const REMOTE_IP = '10.0.1.9'
const REMOTE_MAC = '02:42:0a:00:01:09'
const SENDER_IP = '10.0.1.5'
const SENDER_MAC = '02:42:0a:00:01:05'
const THIRD_TASK_IP = '10.0.1.13' // a task on THIRD
// What the sending node's tc program leaves in the inner header: the destination
// task's MAC as the sender learned it; the receiver must set it anyway.
const STALE_DST_MAC = '02:00:00:00:00:ee'

const UNDERLAY_SRC_MAC = '02:00:ac:1e:00:0c'
const UNDERLAY_DST_MAC = '02:00:ac:1e:00:0b'

let l: Loaded

before(() => {
  l = new Loaded(pinRootFor('xdp_underlay'), 'xdp_underlay.o', 'sn_xdp_underlay')
  l.setConfig({nodeIp: NODE, vxlanPort: PORT, underlayIfindex: 1})
  l.addNetwork(VNI, '10.0.1.0', 24)
  l.addNetwork(OTHER_VNI, '10.0.2.0', 24)
  // ifindex 1 (lo): a device that exists, as bpf_redirect needs nothing more in a test run.
  l.addEndpoint({vni: VNI, ip: LOCAL_IP, nodeIp: NODE, ifindex: 1, mac: LOCAL_MAC, local: true})
  l.addEndpoint({vni: VNI, ip: REMOTE_IP, nodeIp: PEER, ifindex: 0, mac: REMOTE_MAC, local: false})
  // The sender: a task on PEER, the outer source of the packets below.
  l.addEndpoint({vni: VNI, ip: SENDER_IP, nodeIp: PEER, ifindex: 0, mac: SENDER_MAC, local: false})
  l.addEndpoint({vni: VNI, ip: THIRD_TASK_IP, nodeIp: THIRD, ifindex: 0, mac: '02:42:0a:00:01:0d', local: false})
})

after(() => {
  l?.close()
})

function innerUdp(dst: string, len = 64): Buffer {
  return P.udpFrame({srcMac: SENDER_MAC, dstMac: STALE_DST_MAC, src: SENDER_IP, dst}, len)
}

function encap(inner: Buffer, o: Partial<P.VxlanFrameOpts> = {}): Buffer {
  return P.vxlanFrame(
    {outerSrcMac: UNDERLAY_SRC_MAC, outerDstMac: UNDERLAY_DST_MAC, outerSrc: PEER, outerDst: NODE, vni: VNI, ...o},
    inner,
  )
}

/** Outer Ethernet/IPv4/UDP to the node's port, with `payload` as the UDP payload (lengths consistent). */
function toOurPort(payload: Buffer): Buffer {
  return P.ethernet(
    {dst: UNDERLAY_DST_MAC, src: UNDERLAY_SRC_MAC, type: P.ETH_P_IP},
    P.ipv4Packet({src: PEER, dst: NODE, protocol: P.IPPROTO_UDP}, P.udp({srcPort: 50000, dstPort: PORT}, payload)),
  )
}

function expectVerdict(pkt: Buffer, retval: number, counters: Record<string, number>): Buffer {
  const {res, delta} = l.runCounted(pkt)
  assert.equal(res.retval, retval, `verdict ${res.retval}, expected ${retval}`)
  assert.deepEqual(delta, counters)
  return res.data
}

function expectPassUntouched(pkt: Buffer): void {
  const out = expectVerdict(pkt, XDP_PASS, {xdp_pass: 1})
  assert.ok(out.equals(pkt), 'a passed packet must leave exactly as it came')
}

describe('sn_xdp_underlay', () => {
  describe('decapsulates our VXLAN', () => {
    it('redirects a good packet: the output is the inner frame with the endpoint MAC as destination', () => {
      const inner = innerUdp(LOCAL_IP)
      const out = expectVerdict(encap(inner), XDP_REDIRECT, {xdp_decap: 1})
      const expected = Buffer.from(inner)
      P.mac(LOCAL_MAC).copy(expected, 0)
      assert.equal(out.length, inner.length)
      assert.ok(out.equals(expected), `got ${out.toString('hex')}\nwant ${expected.toString('hex')}`)
    })

    it('decapsulates whatever the inner protocol on IPv4 (TCP, ICMP)', () => {
      for (const l4 of [
        P.ipv4Packet({src: SENDER_IP, dst: LOCAL_IP, protocol: P.IPPROTO_TCP}, P.tcp({srcPort: 40000, dstPort: 80})),
        P.ipv4Packet({src: SENDER_IP, dst: LOCAL_IP, protocol: P.IPPROTO_ICMP}, P.icmpEcho({id: 7, seq: 1}, Buffer.from('ping'))),
      ]) {
        const inner = P.ethernet({dst: STALE_DST_MAC, src: SENDER_MAC, type: P.ETH_P_IP}, l4)
        const out = expectVerdict(encap(inner), XDP_REDIRECT, {xdp_decap: 1})
        assert.ok(out.subarray(0, 6).equals(P.mac(LOCAL_MAC)))
        assert.ok(out.subarray(6).equals(inner.subarray(6)))
      }
    })

    it('ignores the outer UDP source port and TTL', () => {
      const inner = innerUdp(LOCAL_IP)
      const out = expectVerdict(encap(inner, {srcPort: 65535, ttl: 1}), XDP_REDIRECT, {xdp_decap: 1})
      assert.ok(out.subarray(6).equals(inner.subarray(6)))
    })
  })

  describe('leaves what is not ours to the kernel, untouched', () => {
    it("a VNI not in sn_networks (a kernel vxlan device's), whatever its sender or inner frame", () => {
      expectPassUntouched(encap(innerUdp(LOCAL_IP), {vni: 4242}))
      expectPassUntouched(encap(innerUdp(LOCAL_IP), {vni: 4242, outerSrc: STRANGER}))
      expectPassUntouched(encap(P.ethernet({dst: LOCAL_MAC, src: SENDER_MAC, type: P.ETH_P_IPV6}, Buffer.alloc(60)), {vni: 4242}))
    })

    it('another UDP port', () => {
      expectPassUntouched(encap(innerUdp(LOCAL_IP), {dstPort: 4790}))
      expectPassUntouched(encap(innerUdp(LOCAL_IP), {dstPort: 53}))
    })

    it('another outer destination than the node', () => {
      expectPassUntouched(encap(innerUdp(LOCAL_IP), {outerDst: '172.30.0.13'}))
    })

    it('outer IPv6 and ARP', () => {
      const ip6 = Buffer.alloc(40 + 8 + 8 + 64)
      ip6.writeUInt32BE(0x60000000, 0)
      ip6.writeUInt16BE(8 + 8 + 64, 4)
      ip6.writeUInt8(P.IPPROTO_UDP, 6)
      ip6.writeUInt8(64, 7)
      ip6.writeUInt16BE(PORT, 40 + 2) // even to our port
      expectPassUntouched(P.ethernet({dst: UNDERLAY_DST_MAC, src: UNDERLAY_SRC_MAC, type: P.ETH_P_IPV6}, ip6))
      expectPassUntouched(
        P.ethernet(
          {dst: 'ff:ff:ff:ff:ff:ff', src: UNDERLAY_SRC_MAC, type: P.ETH_P_ARP},
          P.arp({op: 1, sha: UNDERLAY_SRC_MAC, spa: PEER, tha: '00:00:00:00:00:00', tpa: NODE}),
        ),
      )
    })

    it('outer IPv4 fragments (first, middle, last)', () => {
      const frame = encap(innerUdp(LOCAL_IP))
      for (const fragOff of [0x2000 /* MF */, 0x2000 | 185 /* MF + offset */, 185 /* last */]) {
        const ip = P.ipv4Packet(
          {src: PEER, dst: NODE, protocol: P.IPPROTO_UDP, fragOff},
          frame.subarray(P.ETH_HLEN + P.IPV4_HLEN),
        )
        expectPassUntouched(Buffer.concat([frame.subarray(0, P.ETH_HLEN), ip]))
      }
    })

    it('outer IPv4 with options (ihl 6)', () => {
      const frame = encap(innerUdp(LOCAL_IP))
      const ip = P.ipv4Packet(
        {src: PEER, dst: NODE, protocol: P.IPPROTO_UDP, options: Buffer.from([1, 1, 1, 0]) /* NOP NOP NOP EOL */},
        frame.subarray(P.ETH_HLEN + P.IPV4_HLEN),
      )
      expectPassUntouched(Buffer.concat([frame.subarray(0, P.ETH_HLEN), ip]))
    })

    it('other IPv4 traffic to the node (TCP, ICMP)', () => {
      const eth = {dst: UNDERLAY_DST_MAC, src: UNDERLAY_SRC_MAC, type: P.ETH_P_IP}
      expectPassUntouched(
        P.ethernet(eth, P.ipv4Packet({src: PEER, dst: NODE, protocol: P.IPPROTO_TCP}, P.tcp({srcPort: 40000, dstPort: 7946}))),
      )
      expectPassUntouched(P.ethernet(eth, P.ipv4Packet({src: PEER, dst: NODE, protocol: P.IPPROTO_ICMP}, P.icmpEcho())))
    })

    it('frames too short for the outer headers', () => {
      const frame = encap(innerUdp(LOCAL_IP))
      expectPassUntouched(frame.subarray(0, P.ETH_HLEN + 10)) // IPv4 header cut
      expectPassUntouched(frame.subarray(0, P.ETH_HLEN + P.IPV4_HLEN + 4)) // UDP header cut
    })
  })

  describe('drops broken or undeliverable packets to our address and port', () => {
    it('a truncated VXLAN header', () => {
      const pkt = toOurPort(Buffer.from([0x08, 0, 0, 0]))
      expectVerdict(pkt, XDP_DROP, {xdp_malformed: 1})
    })

    it('a VXLAN header without the I flag', () => {
      expectVerdict(encap(innerUdp(LOCAL_IP), {vxlanFlags: 0}), XDP_DROP, {xdp_malformed: 1})
    })

    it('a truncated inner frame (Ethernet header, then IPv4 header)', () => {
      expectVerdict(toOurPort(P.vxlan({vni: VNI}, innerUdp(LOCAL_IP).subarray(0, 10))), XDP_DROP, {xdp_malformed: 1})
      expectVerdict(toOurPort(P.vxlan({vni: VNI}, innerUdp(LOCAL_IP).subarray(0, P.ETH_HLEN + 12))), XDP_DROP, {
        xdp_malformed: 1,
      })
      expectVerdict(toOurPort(P.vxlan({vni: VNI})), XDP_DROP, {xdp_malformed: 1}) // no inner frame at all
    })

    it('an inner frame that is not IPv4 (ARP, IPv6): a counter of its own, not "malformed"', () => {
      const arp = P.ethernet(
        {dst: 'ff:ff:ff:ff:ff:ff', src: SENDER_MAC, type: P.ETH_P_ARP},
        P.arp({op: 1, sha: SENDER_MAC, spa: SENDER_IP, tha: '00:00:00:00:00:00', tpa: LOCAL_IP}),
      )
      expectVerdict(encap(arp), XDP_DROP, {xdp_not_ipv4: 1})
      const ip6 = P.ethernet({dst: LOCAL_MAC, src: SENDER_MAC, type: P.ETH_P_IPV6}, Buffer.alloc(60, 0x60))
      expectVerdict(encap(ip6), XDP_DROP, {xdp_not_ipv4: 1})
    })

    it('an IPv4 ethertype whose header says version 6: malformed', () => {
      const liar = P.ethernet(
        {dst: LOCAL_MAC, src: SENDER_MAC, type: P.ETH_P_IP},
        P.ipv4Packet({src: SENDER_IP, dst: LOCAL_IP, protocol: P.IPPROTO_UDP, version: 6}, P.udp({srcPort: 1, dstPort: 2})),
      )
      expectVerdict(encap(liar), XDP_DROP, {xdp_malformed: 1})
    })

    it("VXLAN from a host that is not a node, carrying another node's task as inner source", () => {
      expectVerdict(encap(innerUdp(LOCAL_IP), {outerSrc: STRANGER}), XDP_DROP, {xdp_bad_source: 1})
    })

    it('VXLAN from a node speaking for a task of another node', () => {
      expectVerdict(encap(innerUdp(LOCAL_IP), {outerSrc: THIRD}), XDP_DROP, {xdp_bad_source: 1})
      const fromThird = P.udpFrame({srcMac: SENDER_MAC, dstMac: LOCAL_MAC, src: THIRD_TASK_IP, dst: LOCAL_IP}, 64)
      expectVerdict(encap(fromThird, {outerSrc: THIRD}), XDP_REDIRECT, {xdp_decap: 1}) // its own task: fine
      expectVerdict(encap(fromThird), XDP_DROP, {xdp_bad_source: 1}) // the same from PEER: not
    })

    it('an inner source that is no endpoint of the VNI, or a task of this node', () => {
      for (const src of ['10.0.1.77', LOCAL_IP]) {
        const inner = P.udpFrame({srcMac: SENDER_MAC, dstMac: LOCAL_MAC, src, dst: LOCAL_IP}, 64)
        expectVerdict(encap(inner), XDP_DROP, {xdp_bad_source: 1})
      }
      // A sender of VNI 4097 is no endpoint of 4098.
      expectVerdict(encap(innerUdp(LOCAL_IP), {vni: OTHER_VNI}), XDP_DROP, {xdp_bad_source: 1})
    })

    it('an unknown inner destination', () => {
      expectVerdict(encap(innerUdp('10.0.1.200')), XDP_DROP, {xdp_no_endpoint: 1})
    })

    it('an inner destination that is a remote (non-LOCAL) endpoint', () => {
      expectVerdict(encap(innerUdp(REMOTE_IP)), XDP_DROP, {xdp_no_endpoint: 1})
    })

    it('a local endpoint addressed on another of our VNIs (networks stay isolated)', () => {
      l.addEndpoint({vni: OTHER_VNI, ip: SENDER_IP, nodeIp: PEER, ifindex: 0, mac: SENDER_MAC, local: false})
      try {
        expectVerdict(encap(innerUdp(LOCAL_IP), {vni: OTHER_VNI}), XDP_DROP, {xdp_no_endpoint: 1})
      } finally {
        l.map('sn_endpoints').delete(snEndpointKey.encode({vni: OTHER_VNI, ip: SENDER_IP}))
      }
    })
  })
})
