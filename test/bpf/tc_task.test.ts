// sn_tc_task on crafted frames (BPF_PROG_TEST_RUN of a sched_cls program):
// ARP answered in place, local redirect, VXLAN encapsulation, isolation drops.
//
// The test run's skb gets its device from ctx.ifindex; ifindex 1 is the
// loopback of this namespace (always there, never modified), and sn_devices[1]
// makes the program treat it as a task's host-side device.

import assert from 'node:assert/strict'
import {after, before, describe, it} from 'node:test'
import {Loaded, TC_ACT_REDIRECT, TC_ACT_SHOT, pinRootFor, skbCtx} from './harness.js'
import * as P from './packets.js'

const NODE = '172.30.0.11'
const PEER = '172.30.0.12'
const PORT = 4789
const VNI = 4097
const OTHER_VNI = 4098
const DEV_IFINDEX = 1

// The task behind the device.
const TASK_IP = '10.0.1.4'
const TASK_MAC = '02:42:0a:00:01:04'
// Another task on this node, same network.
const LOCAL_IP = '10.0.1.5'
const LOCAL_MAC = '02:42:0a:00:01:05'
// A task on the peer node, same network.
const REMOTE_IP = '10.0.1.9'
const REMOTE_MAC = '02:42:0a:00:01:09'
// A task on this node but on another network.
const FOREIGN_IP = '10.0.1.20'

const ctx = skbCtx(DEV_IFINDEX)
let l: Loaded

before(() => {
  l = new Loaded(pinRootFor('tc_task'), 'tc_task.o', 'sn_tc_task')
  l.setConfig({nodeIp: NODE, vxlanPort: PORT, underlayIfindex: 1})
  l.addNetwork(VNI, '10.0.1.0', 24)
  l.addNetwork(OTHER_VNI, '10.0.1.0', 24)
  l.addDevice(DEV_IFINDEX, VNI, TASK_IP)
  l.addEndpoint({vni: VNI, ip: TASK_IP, nodeIp: NODE, ifindex: DEV_IFINDEX, mac: TASK_MAC, local: true})
  l.addEndpoint({vni: VNI, ip: LOCAL_IP, nodeIp: NODE, ifindex: 1, mac: LOCAL_MAC, local: true})
  l.addEndpoint({vni: VNI, ip: REMOTE_IP, nodeIp: PEER, ifindex: 0, mac: REMOTE_MAC, local: false})
  l.addEndpoint({vni: OTHER_VNI, ip: FOREIGN_IP, nodeIp: NODE, ifindex: 1, mac: '02:42:0a:00:01:14', local: true})
})

after(() => {
  l?.close()
})

function expectVerdict(frame: Buffer, retval: number, counters: Record<string, number>): Buffer {
  const {res, delta} = l.runCounted(frame, {ctx})
  assert.equal(res.retval, retval, `verdict ${res.retval}, expected ${retval}`)
  assert.deepEqual(delta, counters)
  return res.data
}

function fromTask(dst: string, o: {src?: string; dstMac?: string; len?: number; srcPort?: number} = {}): Buffer {
  return P.udpFrame(
    {srcMac: TASK_MAC, dstMac: o.dstMac ?? REMOTE_MAC, src: o.src ?? TASK_IP, dst, srcPort: o.srcPort},
    o.len ?? 98,
  )
}

function arpRequest(tpa: string, o: {spa?: string; op?: number} = {}): Buffer {
  return P.ethernet(
    {dst: 'ff:ff:ff:ff:ff:ff', src: TASK_MAC, type: P.ETH_P_ARP},
    P.arp({op: o.op ?? 1, sha: TASK_MAC, spa: o.spa ?? TASK_IP, tha: '00:00:00:00:00:00', tpa}),
  )
}

describe('sn_tc_task', () => {
  describe('ARP', () => {
    for (const [what, ip, epMac] of [
      ['a local endpoint', LOCAL_IP, LOCAL_MAC],
      ['a remote endpoint', REMOTE_IP, REMOTE_MAC],
    ] as const) {
      it(`answers a request for ${what} with a reply back to the asker`, () => {
        const out = expectVerdict(arpRequest(ip), TC_ACT_REDIRECT, {tc_arp_reply: 1})
        const expected = P.ethernet(
          {dst: TASK_MAC, src: epMac, type: P.ETH_P_ARP},
          P.arp({op: 2, sha: epMac, spa: ip, tha: TASK_MAC, tpa: TASK_IP}),
        )
        assert.ok(out.equals(expected), `got ${out.toString('hex')}\nwant ${expected.toString('hex')}`)
      })
    }

    it('keeps the padding of a minimum-size frame and rewrites only the ARP fields', () => {
      const req = P.padTo(arpRequest(LOCAL_IP), 60)
      const out = expectVerdict(req, TC_ACT_REDIRECT, {tc_arp_reply: 1})
      assert.equal(out.length, 60)
      assert.ok(out.subarray(42).equals(Buffer.alloc(18)))
    })

    it('drops a request for an address with no endpoint', () => {
      expectVerdict(arpRequest('10.0.1.200'), TC_ACT_SHOT, {tc_no_endpoint: 1})
    })

    it('drops a request for an endpoint of another network', () => {
      expectVerdict(arpRequest(FOREIGN_IP), TC_ACT_SHOT, {tc_no_endpoint: 1})
    })

    it('drops gratuitous ARP (spa == tpa)', () => {
      expectVerdict(arpRequest(TASK_IP, {spa: TASK_IP}), TC_ACT_SHOT, {tc_drop_other: 1})
    })

    it("does not answer a probe for the task's own address (duplicate address detection)", () => {
      expectVerdict(arpRequest(TASK_IP, {spa: '0.0.0.0'}), TC_ACT_SHOT, {tc_drop_other: 1})
    })

    it('drops ARP replies and truncated ARP', () => {
      expectVerdict(arpRequest(LOCAL_IP, {op: 2}), TC_ACT_SHOT, {tc_drop_other: 1})
      expectVerdict(arpRequest(LOCAL_IP).subarray(0, 14 + 20), TC_ACT_SHOT, {tc_drop_other: 1})
    })
  })

  describe('IPv4', () => {
    it('redirects to a local endpoint with its MAC as destination, nothing else changed', () => {
      const frame = fromTask(LOCAL_IP, {dstMac: '02:00:00:00:00:ee'})
      const out = expectVerdict(frame, TC_ACT_REDIRECT, {tc_local: 1})
      const expected = Buffer.from(frame)
      P.mac(LOCAL_MAC).copy(expected, 0)
      assert.ok(out.equals(expected), `got ${out.toString('hex')}\nwant ${expected.toString('hex')}`)
    })

    it('encapsulates for a remote endpoint: byte for byte what Linux vxlan would send', () => {
      const inner = fromTask(REMOTE_IP)
      const out = expectVerdict(inner, TC_ACT_REDIRECT, {tc_encap: 1})
      assert.equal(out.length, inner.length + P.VXLAN_OVERHEAD)

      // The outer Ethernet header is left as the task sent it (bpf_redirect_neigh
      // fills in the MACs on the way out); the ethertype is IPv4.
      assert.ok(out.subarray(0, 12).equals(inner.subarray(0, 12)), "outer MACs: the task frame's, until redirect_neigh")
      assert.equal(out.readUInt16BE(12), P.ETH_P_IP)

      // UDP source port: from the flow hash, in the ephemeral range.
      const sport = out.readUInt16BE(P.ETH_HLEN + P.IPV4_HLEN)
      assert.ok(sport >= 49152 && sport <= 65535, `source port ${sport}`)

      // DF set and ID 0: an atomic datagram (RFC 6864 4.1), never fragmented on the way.
      assert.equal(out.readUInt16BE(P.ETH_HLEN + 6), 0x4000, 'outer flags/fragment offset: DF only')
      assert.equal(out.readUInt16BE(P.ETH_HLEN + 4), 0, 'outer IP ID')

      const reference = P.ethernet(
        {dst: REMOTE_MAC, src: TASK_MAC, type: P.ETH_P_IP},
        P.ipv4Packet(
          {src: NODE, dst: PEER, protocol: P.IPPROTO_UDP, ttl: 64, id: 0, fragOff: 0x4000, tos: 0},
          P.udp({srcPort: 0, dstPort: PORT, checksum: 0}, P.vxlan({vni: VNI, flags: 0x08}, inner)),
        ),
      )
      const got = Buffer.from(out)
      got.writeUInt16BE(0, P.ETH_HLEN + P.IPV4_HLEN) // the one field not compared
      assert.ok(got.equals(reference), `got  ${got.toString('hex')}\nwant ${reference.toString('hex')}`)

      // And the header checksum verifies on its own.
      assert.equal(P.inetChecksum(out.subarray(P.ETH_HLEN, P.ETH_HLEN + P.IPV4_HLEN)), 0)
    })

    it('keeps one source port per flow and spreads flows over several', () => {
      const sport = (srcPort: number): number => {
        const out = expectVerdict(fromTask(REMOTE_IP, {srcPort}), TC_ACT_REDIRECT, {tc_encap: 1})
        return out.readUInt16BE(P.ETH_HLEN + P.IPV4_HLEN)
      }
      assert.equal(sport(40001), sport(40001))
      const ports = new Set<number>()
      for (let p = 40000; p < 40016; p++) ports.add(sport(p))
      assert.ok(ports.size > 1, `16 flows all got source port ${[...ports].join(',')}`)
      for (const p of ports) assert.ok(p >= 49152 && p <= 65535)
    })

    it('encapsulates a minimum (60-byte) and a full-MTU (1450-byte IP) inner frame', () => {
      for (const len of [60, 14 + 1450]) {
        const inner = fromTask(REMOTE_IP, {len})
        const out = expectVerdict(inner, TC_ACT_REDIRECT, {tc_encap: 1})
        assert.equal(out.length, len + 50)
        assert.equal(out.readUInt16BE(P.ETH_HLEN + 2), len + 36, 'outer IPv4 total length')
        assert.equal(out.readUInt16BE(P.ETH_HLEN + P.IPV4_HLEN + 4), len + 16, 'UDP length')
        assert.ok(out.subarray(P.VXLAN_OVERHEAD).equals(inner), 'the inner frame follows the 50 bytes of outer headers')
      }
    })

    it('drops an address that is not an endpoint of the network', () => {
      expectVerdict(fromTask('10.0.1.200'), TC_ACT_SHOT, {tc_no_endpoint: 1})
      expectVerdict(fromTask('8.8.8.8'), TC_ACT_SHOT, {tc_no_endpoint: 1})
      expectVerdict(fromTask(FOREIGN_IP), TC_ACT_SHOT, {tc_no_endpoint: 1}) // on another network
    })

    it('drops a spoofed source address', () => {
      expectVerdict(fromTask(LOCAL_IP, {src: REMOTE_IP}), TC_ACT_SHOT, {tc_drop_other: 1})
      expectVerdict(fromTask(REMOTE_IP, {src: '10.0.1.77'}), TC_ACT_SHOT, {tc_drop_other: 1})
    })

    // A truncated IPv4 header cannot be tried here: BPF_PROG_TEST_RUN refuses
    // (EINVAL) an skb whose ethertype is IPv4 with less than 20 bytes after
    // the Ethernet header, before the program runs.

    it('drops encapsulation when the node has no underlay device configured', () => {
      l.setConfig({nodeIp: NODE, vxlanPort: PORT, underlayIfindex: 0})
      try {
        expectVerdict(fromTask(REMOTE_IP), TC_ACT_SHOT, {tc_encap_fail: 1})
      } finally {
        l.setConfig({nodeIp: NODE, vxlanPort: PORT, underlayIfindex: 1})
      }
    })
  })

  describe('the network MTU (1450 here)', () => {
    const TOO_BIG = 14 + 1451

    /** A UDP frame from the task with DF set (as Linux sends UDP by default), `len` bytes long. */
    function dfFrame(dst: string, dstMac: string, len: number, df = true): Buffer {
      const f = P.udpFrame({srcMac: TASK_MAC, dstMac, src: TASK_IP, dst}, len)
      if (df) {
        f.writeUInt16BE(0x4000, P.ETH_HLEN + 6)
        f.writeUInt16BE(0, P.ETH_HLEN + 10)
        f.writeUInt16BE(P.inetChecksum(f.subarray(P.ETH_HLEN, P.ETH_HLEN + P.IPV4_HLEN)), P.ETH_HLEN + 10)
      }
      return f
    }

    /** ICMP "fragmentation needed" as RFC 792/1191 define it, from `from` back to the task, quoting 548 bytes. */
    function fragNeeded(refused: Buffer, from: string, fromMac: string, mtu: number): Buffer {
      const icmp = Buffer.concat([
        Buffer.from([3, 4, 0, 0, 0, 0, mtu >> 8, mtu & 0xff]),
        refused.subarray(P.ETH_HLEN, P.ETH_HLEN + 548),
      ])
      icmp.writeUInt16BE(P.inetChecksum(icmp), 2)
      return P.ethernet(
        {dst: TASK_MAC, src: fromMac, type: P.ETH_P_IP},
        P.ipv4Packet({src: from, dst: TASK_IP, protocol: P.IPPROTO_ICMP, ttl: 64, id: 0, fragOff: 0x4000}, icmp),
      )
    }

    for (const [what, dst, dstMac] of [
      ['a remote endpoint', REMOTE_IP, REMOTE_MAC],
      ['a local endpoint', LOCAL_IP, LOCAL_MAC],
    ] as const) {
      it(`answers a DF frame one byte over the MTU to ${what} with ICMP fragmentation needed, back to the task`, () => {
        const frame = dfFrame(dst, dstMac, TOO_BIG)
        const out = expectVerdict(frame, TC_ACT_REDIRECT, {tc_frag_needed: 1})
        const want = fragNeeded(frame, dst, dstMac, 1450)
        assert.equal(out.length, 14 + 576, 'the reply is a 576-byte datagram')
        assert.ok(out.equals(want), `got  ${out.toString('hex')}\nwant ${want.toString('hex')}`)
        assert.equal(P.inetChecksum(out.subarray(P.ETH_HLEN, P.ETH_HLEN + P.IPV4_HLEN)), 0, 'IPv4 header checksum')
        assert.equal(P.inetChecksum(out.subarray(P.ETH_HLEN + P.IPV4_HLEN)), 0, 'ICMP checksum')
      })
    }

    it('drops an oversized frame without DF (nothing may fragment it) and counts it', () => {
      expectVerdict(dfFrame(REMOTE_IP, REMOTE_MAC, TOO_BIG, false), TC_ACT_SHOT, {tc_too_big: 1})
    })

    it('takes a frame of exactly the MTU, and a larger one on a network with a larger MTU', () => {
      expectVerdict(dfFrame(REMOTE_IP, REMOTE_MAC, 14 + 1450), TC_ACT_REDIRECT, {tc_encap: 1})
      // 3000, not jumbo: a test run's packet must fit in one page.
      l.addNetwork(VNI, '10.0.1.0', 24, 3000)
      try {
        const out = expectVerdict(dfFrame(REMOTE_IP, REMOTE_MAC, 14 + 3000), TC_ACT_REDIRECT, {tc_encap: 1})
        assert.equal(out.length, 14 + 3000 + 50)
        const refused = dfFrame(REMOTE_IP, REMOTE_MAC, 14 + 3001)
        const icmp = expectVerdict(refused, TC_ACT_REDIRECT, {tc_frag_needed: 1})
        assert.equal(icmp.readUInt16BE(P.ETH_HLEN + P.IPV4_HLEN + 6), 3000, 'next-hop MTU: the network MTU')
      } finally {
        l.addNetwork(VNI, '10.0.1.0', 24)
      }
    })

    it('never looks up the network of a frame of 576 bytes or less (no network MTU is smaller)', () => {
      // An MTU below the minimum, which `network create` refuses, shows which frames are checked.
      l.addNetwork(VNI, '10.0.1.0', 24, 500)
      try {
        expectVerdict(dfFrame(REMOTE_IP, REMOTE_MAC, 14 + 576), TC_ACT_REDIRECT, {tc_encap: 1})
        const icmp = expectVerdict(dfFrame(REMOTE_IP, REMOTE_MAC, 14 + 577), TC_ACT_REDIRECT, {tc_frag_needed: 1})
        assert.equal(icmp.readUInt16BE(P.ETH_HLEN + P.IPV4_HLEN + 6), 500)
      } finally {
        l.addNetwork(VNI, '10.0.1.0', 24)
      }
    })

    it('holds a GSO packet to the MTU segment by segment: fitting segments pass, larger ones are dropped', () => {
      // 2 UDP segments in one skb: 20 (IPv4) + 8 (UDP) + gso_size must fit 1450. To a local
      // endpoint: a test run's GSO skb has no GSO type, which encapsulation needs (a real one
      // is encapsulated in tc_task_gso.test.ts).
      const frame = dfFrame(LOCAL_IP, LOCAL_MAC, 14 + 20 + 8 + 2 * 1422)
      const fits = l.runCounted(frame, {ctx: skbCtx(DEV_IFINDEX, {size: 1422, segs: 2})})
      assert.deepEqual([fits.res.retval, fits.delta], [TC_ACT_REDIRECT, {tc_local: 1}])
      const over = l.runCounted(frame, {ctx: skbCtx(DEV_IFINDEX, {size: 1423, segs: 2})})
      assert.deepEqual([over.res.retval, over.delta], [TC_ACT_SHOT, {tc_too_big: 1}])
    })
  })

  describe('other traffic', () => {
    it('drops IPv6', () => {
      const ip6 = Buffer.alloc(40 + 8)
      ip6.writeUInt32BE(0x60000000, 0)
      ip6.writeUInt16BE(8, 4)
      ip6.writeUInt8(P.IPPROTO_UDP, 6)
      ip6.writeUInt8(64, 7)
      expectVerdict(P.ethernet({dst: '33:33:00:00:00:01', src: TASK_MAC, type: P.ETH_P_IPV6}, ip6), TC_ACT_SHOT, {
        tc_drop_other: 1,
      })
    })

    it('drops and counts everything from a device that is not in sn_devices (a miss is a drop)', () => {
      l.deleteDevice(DEV_IFINDEX)
      try {
        for (const frame of [fromTask(REMOTE_IP), arpRequest(LOCAL_IP), fromTask(LOCAL_IP, {src: '1.2.3.4'})]) {
          expectVerdict(frame, TC_ACT_SHOT, {tc_unknown_device: 1})
        }
      } finally {
        l.addDevice(DEV_IFINDEX, VNI, TASK_IP)
      }
    })
  })
})
