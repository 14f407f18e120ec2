// The node's BPF programs and maps: loaded from the prebuilt objects with
// their maps pinned under /sys/fs/bpf/swarmnet/<node>/ (a reload reuses the
// pins, so the data plane never forgets), XDP on the underlay device, tc on
// each task device. Programs stay attached when the agent exits: forwarding
// goes on without it.
import {mkdirSync} from 'node:fs'
import {attachTc, attachXdp, detachXdp, type XdpMode} from '../bpf/attach.js'
import {
  snConfig,
  snDevice,
  snEndpoint,
  snEndpointKey,
  snNetwork,
  u32,
  SN_EP_FLAGS,
  SN_NET_FLAGS,
  SN_CONFIG_FLAGS,
} from '../bpf/codecs.js'
import type {BpfMap} from '../bpf/map.js'
import {BpfObject} from '../bpf/object.js'
import {run} from '../sys/exec.js'
import {ensureBpffs, removeNodePins} from '../bpf/pins.js'
import {layoutPinDir, retireOldLayouts, type UpgradeReport} from '../bpf/upgrade.js'
import {bpfObjectPath} from '../util/root.js'
import type {DesiredMaps} from './desired.js'

export interface DatapathOptions {
  node: string
  underlay: string
  xdpMode: XdpMode
}

export class Datapath {
  private constructor(
    private readonly o: DatapathOptions,
    private readonly objects: BpfObject[],
    private readonly tcFd: number,
    private readonly peerFd: number,
    readonly maps: {config: BpfMap; networks: BpfMap; endpoints: BpfMap; devices: BpfMap; stats: BpfMap},
    /** What opening did with the pins of other layout versions (empty when there were none). */
    readonly upgrades: UpgradeReport[],
  ) {}

  static open(o: DatapathOptions): Datapath {
    ensureBpffs()
    // Each layout version pins apart, so an upgrade never meets old pins (src/bpf/upgrade.ts).
    const pinRoot = layoutPinDir(o.node)
    mkdirSync(pinRoot, {recursive: true, mode: 0o700})
    const objects: BpfObject[] = []
    try {
      for (const name of ['xdp_underlay', 'tc_task', 'xdp_task_peer']) {
        const obj = BpfObject.open(bpfObjectPath(name), {pinRoot})
        objects.push(obj)
        obj.load()
      }
      const [underlay, task, peer] = objects as [BpfObject, BpfObject, BpfObject]
      const upgrades = retireOldLayouts(o.node, {sn_stats: underlay.map('sn_stats')})
      attachXdp(o.underlay, underlay.program('sn_xdp_underlay').fd, {mode: o.xdpMode})
      return new Datapath(
        o,
        objects,
        task.program('sn_tc_task').fd,
        peer.program('sn_xdp_task_peer').fd,
        {
          config: underlay.map('sn_config'),
          networks: underlay.map('sn_networks'),
          endpoints: underlay.map('sn_endpoints'),
          devices: task.map('sn_devices'),
          stats: underlay.map('sn_stats'),
        },
        upgrades,
      )
    } catch (e) {
      for (const obj of objects) obj.close()
      throw e
    }
  }

  setConfig(c: {nodeIp: string; vxlanPort: number; underlayIfindex: number}): void {
    this.maps.config.update(
      u32.encode(0),
      snConfig.encode({
        node_ip: c.nodeIp,
        vxlan_port: c.vxlanPort,
        flags: SN_CONFIG_FLAGS.READY,
        underlay_ifindex: c.underlayIfindex,
      }),
    )
  }

  /** tc on the host side of a task's overlay device: what the task sends. */
  attachTask(hostIf: string): void {
    attachTc(hostIf, this.tcFd, 'ingress')
  }

  /**
   * XDP on the task side, before it moves: redirected frames need NAPI there. And GRO: the
   * underlay program redirects one wire segment at a time, and this device's NAPI is the only
   * place they can be merged before the task's stack (the kernel's vxlan path merges in the
   * vxlan device's GRO cells). veth leaves GRO off, and since Linux 6.8 attaching XDP no longer
   * turns it on, so without this a TCP receiver handles every 1.4 kB segment on its own.
   * Best effort: GRO is performance, not correctness.
   */
  async preparePeer(peerIf: string): Promise<void> {
    attachXdp(peerIf, this.peerFd, {mode: 'native'})
    try {
      await run(['ethtool', '-K', peerIf, 'gro', 'on'], `turning on GRO on ${peerIf}`)
    } catch {
      // no ethtool, or a kernel without veth GRO: forwarding works, only slower
    }
  }

  /** Makes the maps hold exactly `want`: writes what differs, deletes what is extra. */
  sync(want: DesiredMaps): {written: number; deleted: number} {
    let written = 0
    let deleted = 0
    const apply = (map: BpfMap, desired: Map<string, [Buffer, Buffer]>) => {
      const have = new Map(map.entries().map(([k, v]) => [k.toString('hex'), v]))
      for (const [hex, [k, v]] of desired) {
        const cur = have.get(hex)
        if (!cur || !cur.equals(v)) {
          map.update(k, v)
          written++
        }
      }
      for (const [hex] of have) {
        if (!desired.has(hex)) {
          map.delete(Buffer.from(hex, 'hex'))
          deleted++
        }
      }
    }
    const entry = (k: Buffer, v: Buffer): [string, [Buffer, Buffer]] => [k.toString('hex'), [k, v]]

    apply(
      this.maps.networks,
      new Map(
        [...want.networks].map(([vni, n]) =>
          entry(
            u32.encode(vni),
            snNetwork.encode({
              subnet: n.subnet,
              prefix_len: n.prefixLen,
              flags: n.ingress ? SN_NET_FLAGS.INGRESS : 0,
              mtu: n.mtu,
            }),
          ),
        ),
      ),
    )
    apply(
      this.maps.endpoints,
      new Map(
        [...want.endpoints.values()].map((e) =>
          entry(
            snEndpointKey.encode({vni: e.vni, ip: e.ip}),
            snEndpoint.encode({node_ip: e.nodeIp, ifindex: e.ifindex, mac: e.mac, flags: e.local ? SN_EP_FLAGS.LOCAL : 0}),
          ),
        ),
      ),
    )
    apply(
      this.maps.devices,
      new Map([...want.devices].map(([ifindex, d]) => entry(u32.encode(ifindex), snDevice.encode({vni: d.vni, ip: d.ip})))),
    )
    return {written, deleted}
  }

  /** Closes our handles; programs stay attached and maps stay pinned. */
  close(): void {
    for (const obj of this.objects) obj.close()
  }

  /** leave: take the programs off the underlay and forget the pinned state. */
  static teardown(node: string, underlay: string, mode: XdpMode): void {
    try {
      detachXdp(underlay, {mode})
    } catch {
      // already gone with its device: nothing to detach
    }
    removeNodePins(node)
  }
}
