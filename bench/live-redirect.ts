/**
 * Child of progs.ts, run with `ip netns exec` in a namespace of its own (its
 * bpffs is private to it): the XDP decap + redirect timed with the redirect
 * carried out (BPF_F_TEST_XDP_LIVE_FRAMES). Each run gets a fresh copy of the
 * VXLAN packet; sn_xdp_underlay decapsulates it and redirects it into a veth
 * whose far end drops it in XDP. The kernel's time per packet includes the
 * program, xdp_do_redirect, the veth's transmit and, at the end of each batch,
 * the far end's NAPI with its drop program.
 * argv: <empty.o> <runs> <repeat>. Prints JSON: ns per packet of each run and the checks.
 */
import {execFileSync} from 'node:child_process'
import {BpfObject, attachXdp, ensureBpffs, ifindexOf, testRun} from '../src/bpf/index.js'
import {Loaded} from '../test/bpf/harness.js'
import * as P from '../test/bpf/packets.js'

const [emptyObj, runsArg, repeatArg] = process.argv.slice(2) as [string, string, string]
const ip = (args: string[]) => execFileSync('ip', args, {stdio: ['ignore', 'ignore', 'pipe']})
ensureBpffs()
ip(['link', 'add', 'sn-bl0', 'type', 'veth', 'peer', 'name', 'sn-bl1'])
ip(['link', 'set', 'sn-bl0', 'up'])
ip(['link', 'set', 'sn-bl1', 'up'])
const empty = BpfObject.open(emptyObj)
const xdp = new Loaded('/sys/fs/bpf/bench-live', 'xdp_underlay.o', 'sn_xdp_underlay')
try {
  empty.load()
  attachXdp('sn-bl1', empty.program('bench_xdp_drop').fd, {mode: 'native'})
  xdp.setConfig({nodeIp: '172.30.0.11', vxlanPort: 4789, underlayIfindex: 1})
  xdp.addNetwork(4097, '10.0.1.0', 24)
  xdp.addEndpoint({
    vni: 4097,
    ip: '10.0.1.4',
    nodeIp: '172.30.0.11',
    ifindex: ifindexOf('sn-bl0'),
    mac: '02:42:0a:00:01:04',
    local: true,
  })
  xdp.addEndpoint({vni: 4097, ip: '10.0.1.9', nodeIp: '172.30.0.12', ifindex: 0, mac: '02:42:0a:00:01:09', local: false})
  const pkt = P.vxlanFrame(
    {
      outerSrcMac: '02:00:ac:1e:00:0c',
      outerDstMac: '02:00:ac:1e:00:0b',
      outerSrc: '172.30.0.12',
      outerDst: '172.30.0.11',
      vni: 4097,
    },
    P.udpFrame({srcMac: '02:42:0a:00:01:09', dstMac: '02:42:0a:00:01:04', src: '10.0.1.9', dst: '10.0.1.4'}, 64),
  )
  const repeat = Number(repeatArg)
  const before = xdp.stats().xdp_decap
  const dropsBefore = xdpDrops()
  testRun(xdp.prog.fd, {data: pkt, repeat: 10_000, liveFrames: true}) // warm up
  const ns: number[] = []
  for (let i = 0; i < Number(runsArg); i++) ns.push(testRun(xdp.prog.fd, {data: pkt, repeat, liveFrames: true}).durationNs)
  const decaps = Number(xdp.stats().xdp_decap - before)
  const delivered = xdpDrops() - dropsBefore
  process.stdout.write(JSON.stringify({ns, decaps, expected: 10_000 + Number(runsArg) * repeat, delivered}))
} finally {
  xdp.close()
  empty.close()
}

/** Frames the far end's XDP program saw and dropped: proof that the redirects were carried out. */
function xdpDrops(): number {
  const out = execFileSync('ethtool', ['-S', 'sn-bl1'], {encoding: 'utf8'})
  return [...out.matchAll(/rx_queue_\d+_xdp_drops: (\d+)/g)].reduce((a, m) => a + Number(m[1]), 0)
}
