// Loads one of swarmnet's prebuilt programs under a private pin root and
// fills its maps through the codecs, for the BPF tests and the bench.

import fs from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {
  BpfObject,
  type BpfMap,
  type BpfProgram,
  type CounterName,
  type Counters,
  ensureBpffs,
  readCounters,
  snBackend,
  snBackendKey,
  snConfig,
  snDevice,
  snEndpoint,
  snEndpointKey,
  snMaglevChunk,
  snMaglevKey,
  snNetwork,
  snService,
  snServiceKey,
  testRun,
  type TestRunResult,
  u32,
} from '../../src/bpf/index.js'
import type {DesiredEndpoint} from '../../src/dataplane/desired.js'
import {maglevChunks} from '../../src/dataplane/mapsync.js'
import {maglevSize} from '../../src/lb/maglev.js'

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
export const DIST = path.join(REPO, 'bpf/dist')

export const XDP_DROP = 1
export const XDP_PASS = 2
export const XDP_REDIRECT = 4
export const TC_ACT_OK = 0
export const TC_ACT_SHOT = 2
export const TC_ACT_REDIRECT = 7

/** Offset of `ifindex` in struct __sk_buff (linux/bpf.h). */
const SKB_IFINDEX = 40
/** The prefix of struct __sk_buff up to and including ifindex. */
const SKB_CTX_LEN = 44

/** Offsets of gso_segs and gso_size in struct __sk_buff, and the prefix that holds them. */
const SKB_GSO_SEGS = 164
const SKB_GSO_SIZE = 176
const SKB_GSO_CTX_LEN = 180

/**
 * A struct __sk_buff prefix with ifindex set (the kernel accepts ifindex in test runs), and,
 * with `gso`, the skb made a GSO packet of segments of gso.size payload bytes.
 */
export function skbCtx(ifindex: number, gso?: {size: number; segs: number}): Buffer {
  const ctx = Buffer.alloc(gso ? SKB_GSO_CTX_LEN : SKB_CTX_LEN)
  ctx.writeUInt32LE(ifindex, SKB_IFINDEX)
  if (gso) {
    ctx.writeUInt32LE(gso.segs, SKB_GSO_SEGS)
    ctx.writeUInt32LE(gso.size, SKB_GSO_SIZE)
  }
  return ctx
}

/** An endpoint as the agent's desired state has it (without the VIP / backend marks). */
export type EndpointSpec = Pick<DesiredEndpoint, 'vni' | 'ip' | 'nodeIp' | 'ifindex' | 'mac' | 'local'>

export class Loaded {
  readonly obj: BpfObject
  readonly prog: BpfProgram

  /**
   * `keepPins`: reuse maps already pinned under pinRoot (a second object
   * sharing the first one's maps); by default the folder starts empty.
   */
  constructor(
    readonly pinRoot: string,
    objFile: string,
    progName: string,
    opts: {keepPins?: boolean} = {},
  ) {
    ensureBpffs()
    if (!opts.keepPins) fs.rmSync(pinRoot, {recursive: true, force: true})
    this.obj = BpfObject.open(path.join(DIST, objFile), {pinRoot})
    try {
      this.obj.load()
      this.prog = this.obj.program(progName)
    } catch (e) {
      this.close()
      throw e
    }
  }

  map(name: string): BpfMap {
    return this.obj.map(name)
  }

  /** `ctUdpIdle`, `meshUdpIdle`: a UDP flow's idle lifetime in seconds, VIP and mesh (absent: the programs' default). */
  setConfig(c: {nodeIp: string; vxlanPort: number; underlayIfindex: number; ctUdpIdle?: number; meshUdpIdle?: number}): void {
    this.map('sn_config').update(
      u32.encode(0),
      snConfig.encode({
        node_ip: c.nodeIp,
        vxlan_port: c.vxlanPort,
        flags: 1,
        underlay_ifindex: c.underlayIfindex,
        ct_udp_idle: c.ctUdpIdle ?? 0,
        mesh_udp_idle: c.meshUdpIdle ?? 0,
      }),
    )
  }

  /** A network, with the default MTU (1450) unless given. */
  addNetwork(vni: number, subnet: string, prefixLen: number, mtu = 1450): void {
    this.map('sn_networks').update(u32.encode(vni), snNetwork.encode({subnet, prefix_len: prefixLen, flags: 0, mtu}))
  }

  addEndpoint(e: EndpointSpec): void {
    this.map('sn_endpoints').update(
      snEndpointKey.encode({vni: e.vni, ip: e.ip}),
      snEndpoint.encode({node_ip: e.nodeIp, ifindex: e.ifindex, mac: e.mac, flags: e.local ? 1 : 0}),
    )
  }

  /**
   * A VIP on network `vni` load-balanced over `backends`, written as the agent's sync writes it: the
   * Maglev table (id `table`, `size` slots) first, then each backend's entry, and last the service
   * entry that makes the VIP live.
   */
  addService(
    vni: number,
    vip: string,
    table: number,
    backends: Array<{key: string; ip: string; nodeIp: string}>,
    size = maglevSize(Math.max(1, backends.length)),
  ): void {
    maglevChunks({size, backends}).forEach((c, i) =>
      this.map('sn_maglev').update(snMaglevKey.encode({table, chunk: i}), snMaglevChunk.encode(c)),
    )
    for (const b of backends)
      this.map('sn_backends').update(snBackendKey.encode({vni, vip, ip: b.ip}), snBackend.encode({node_ip: b.nodeIp, flags: 0}))
    this.map('sn_services').update(
      snServiceKey.encode({vni, vip}),
      snService.encode({table, size, count: backends.length, flags: 0}),
    )
  }

  addDevice(ifindex: number, vni: number, ip: string, flags = 0): void {
    this.map('sn_devices').update(u32.encode(ifindex), snDevice.encode({vni, ip, flags}))
  }

  deleteDevice(ifindex: number): void {
    this.map('sn_devices').delete(u32.encode(ifindex))
  }

  /** The counters by name, summed over CPUs. */
  stats(): Counters {
    return readCounters(this.map('sn_stats'))
  }

  run(data: Buffer, opts: {ctx?: Buffer; repeat?: number} = {}): TestRunResult {
    return testRun(this.prog.fd, {data, ctx: opts.ctx, repeat: opts.repeat})
  }

  /**
   * Run once and return the result with the counters that moved (the
   * non-zero differences only).
   */
  runCounted(data: Buffer, opts: {ctx?: Buffer} = {}): {res: TestRunResult; delta: Partial<Record<CounterName, number>>} {
    const before = this.stats()
    const res = this.run(data, opts)
    const after = this.stats()
    const delta: Partial<Record<CounterName, number>> = {}
    for (const k of Object.keys(after) as CounterName[]) {
      const d = Number(after[k] - before[k])
      if (d !== 0) delta[k] = d
    }
    return {res, delta}
  }

  /** Close the object and remove every pin; safe to call twice. */
  close(): void {
    try {
      this.obj?.close()
    } finally {
      fs.rmSync(this.pinRoot, {recursive: true, force: true})
    }
  }
}

export function pinRootFor(name: string): string {
  return `/sys/fs/bpf/swarmnet-test-${process.pid}-${name}`
}
