// Child of bench/mesh.ts, run by `ip netns exec` in a namespace that has an underlay
// (sn-mu0, 172.30.0.11/24, forwarding on) with permanent neighbours, so the mesh
// program's FIB lookups answer as on a node. Prints JSON: ns/packet of sn_xdp_underlay
// for a published port, local and remote backend, connection tracked (hit) and not (miss),
// and an established TCP flow's segment to a remote backend (hit).
//
// Every case is `single`: the program rewrites the packet, so the kernel's repeat loop
// would see another packet from the second run on. The median of 3,000 calls' kernel
// time, minus an empty XDP program's (the timer and the call itself). Counters are checked
// so a case that took another path fails instead of reporting a number.
// argv: <empty.o>
import {execFileSync} from 'node:child_process'
import {
  BpfObject,
  type CounterName,
  snEndpoint,
  snEndpointKey,
  snMeshPort,
  snMeshPortKey,
  snNetwork,
  testRun,
  u32,
} from '../src/bpf/index.js'
import {Loaded} from '../test/bpf/harness.js'
import * as P from '../test/bpf/packets.js'

const CALLS = 3000
const RUNS = 5
const XDP_REDIRECT = 4
const XDP_TX = 3
const NODE = '172.30.0.11'
const VNI = 4096
const ifindex = Number(execFileSync('cat', ['/sys/class/net/sn-mu0/ifindex'], {encoding: 'utf8'}).trim())
const nodeMac = execFileSync('cat', ['/sys/class/net/sn-mu0/address'], {encoding: 'utf8'}).trim()

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}
const ctxFor = (len: number) => {
  const c = Buffer.alloc(24)
  c.writeUInt32LE(len, 4)
  c.writeUInt32LE(ifindex, 12)
  return c
}
/** 64-byte UDP frames from the client to the node's published port, source port `sport`. */
const frame = (dport: number, sport: number) =>
  P.udpFrame({srcMac: '02:00:00:00:00:64', dstMac: nodeMac, src: '172.30.0.100', dst: NODE, srcPort: sport, dstPort: dport}, 64)
/** 64-byte TCP segments (ACK and 10 bytes unless `flags` says otherwise) from the client to the published port. */
const tcpFrame = (dport: number, sport: number, flags = 0x10) =>
  P.ethernet(
    {dst: nodeMac, src: '02:00:00:00:00:64', type: 0x0800},
    P.ipv4Packet({src: '172.30.0.100', dst: NODE, protocol: 6}, P.tcp({srcPort: sport, dstPort: dport, flags}, Buffer.alloc(10))),
  )

const xdp = new Loaded('/sys/fs/bpf/mesh-bench', 'xdp_underlay.o', 'sn_xdp_underlay')
const empty = BpfObject.open(process.argv[2]!)
try {
  empty.load()
  xdp.setConfig({nodeIp: NODE, vxlanPort: 4789, underlayIfindex: ifindex})
  xdp.map('sn_networks').update(u32.encode(VNI), snNetwork.encode({subnet: '10.0.0.0', prefix_len: 24, flags: 1, mtu: 1450}))
  const svc = (vip: string, table: number, b: {key: string; ip: string; nodeIp: string}) =>
    xdp.addService(VNI, vip, table, [b], 251)
  xdp
    .map('sn_endpoints')
    .update(
      snEndpointKey.encode({vni: VNI, ip: '10.0.0.5'}),
      snEndpoint.encode({node_ip: NODE, ifindex: 7, mac: '02:42:0a:00:00:05', flags: 5}),
    )
  svc('10.0.0.2', 1, {key: 'local', ip: '10.0.0.5', nodeIp: NODE})
  svc('10.0.0.3', 2, {key: 'remote', ip: '10.0.0.9', nodeIp: '172.30.0.12'})
  const publish = (port: number, vip: string, proto = 17) =>
    xdp
      .map('sn_mesh_ports')
      .update(
        snMeshPortKey.encode({port, proto}),
        snMeshPort.encode({vni: VNI, addr: vip, target: 5201, mode: 1, flags: 0, ifindex: 0, mac: '00:00:00:00:00:00'}),
      )
  publish(8080, '10.0.0.2')
  publish(8081, '10.0.0.3')
  publish(8082, '10.0.0.3', 6)

  const timerOnce = () => {
    const f = frame(8080, 40000)
    const t: number[] = []
    for (let i = 0; i < CALLS; i++)
      t.push(testRun(empty.program('bench_xdp_pass').fd, {data: f, ctx: ctxFor(f.length)}).durationNs)
    return median(t)
  }
  timerOnce()
  const timer = median(Array.from({length: RUNS}, timerOnce))

  let nextPort = 0
  const once = (dport: number, miss: boolean, retval: number, counter: CounterName, make = frame): number => {
    const fixed = make(dport, 40000)
    const before = xdp.stats()
    const t: number[] = []
    for (let i = 0; i < CALLS; i++) {
      // 36,000 misses in all: source ports 1000-39999 never repeat, and never meet the tracked flow's 40000.
      const f = miss ? make(dport, 1000 + (nextPort++ % 39000)) : fixed
      const r = testRun(xdp.prog.fd, {data: f, ctx: ctxFor(f.length)})
      if (r.retval !== retval) throw new Error(`port ${dport}: verdict ${r.retval}, expected ${retval}`)
      t.push(r.durationNs)
    }
    const after = xdp.stats()
    if (Number(after[counter] - before[counter]) !== CALLS) throw new Error(`port ${dport}: not every run counted ${counter}`)
    const newFlows = Number(after.mesh_new_flow - before.mesh_new_flow)
    if (newFlows !== (miss ? CALLS : 0)) throw new Error(`port ${dport}: ${newFlows} new flows, expected ${miss ? CALLS : 0}`)
    return Math.max(0, median(t) - timer)
  }
  // Tracked flows need their first packet.
  testRun(xdp.prog.fd, {data: frame(8080, 40000), ctx: ctxFor(64)})
  testRun(xdp.prog.fd, {data: frame(8081, 40000), ctx: ctxFor(64)})
  // A TCP flow is established by its handshake: the client's SYN, then its ACK.
  for (const flags of [0x02, 0x10]) testRun(xdp.prog.fd, {data: tcpFrame(8082, 40000, flags), ctx: ctxFor(64)})
  const cases = [
    {name: 'mesh local backend, CT hit', dport: 8080, miss: false, retval: XDP_REDIRECT, counter: 'mesh_local' as const},
    {name: 'mesh local backend, CT miss', dport: 8080, miss: true, retval: XDP_REDIRECT, counter: 'mesh_local' as const},
    {name: 'mesh remote backend, CT hit', dport: 8081, miss: false, retval: XDP_TX, counter: 'mesh_remote' as const},
    {name: 'mesh remote backend, CT miss', dport: 8081, miss: true, retval: XDP_TX, counter: 'mesh_remote' as const},
    {
      name: 'mesh remote backend, TCP CT hit',
      dport: 8082,
      miss: false,
      retval: XDP_TX,
      counter: 'mesh_remote' as const,
      make: (d: number, s: number) => tcpFrame(d, s),
    },
  ]
  const out = cases.map((c) => {
    const make = 'make' in c ? c.make : frame
    once(c.dport, c.miss, c.retval, c.counter, make)
    const runs = Array.from({length: RUNS}, () => once(c.dport, c.miss, c.retval, c.counter, make))
    return {name: c.name, nsPerPacket: median(runs), runs, timer}
  })
  process.stdout.write(JSON.stringify(out))
} finally {
  empty.close()
  xdp.close()
}
