// The node's BPF programs and maps: loaded from the prebuilt objects with
// their maps pinned under /sys/fs/bpf/swarmnet/<node>/ (a reload reuses the
// pins, so the data plane never forgets), XDP on the underlay device, tc on
// each task device. The programs are attached through bpf_links pinned under
// <node>/links/: they stay attached when the agent exits (forwarding goes on
// without it), a restarted agent updates them in place, and a device that
// already runs someone else's XDP program is refused, never taken over.
import {existsSync, mkdirSync, readdirSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {attachXdpAsync, detachXdp, ifindexOf, queryXdp, tcAttachedId, type XdpMode} from '../bpf/attach.js'
import {snConfig, snDevice, u32, SN_CONFIG_FLAGS} from '../bpf/codecs.js'
import {
  attachTcxLink,
  attachTcxLinkAsync,
  attachXdpLink,
  linkAttachedAsync,
  progIdOf,
  progNameById,
  removeLink,
  removeLinkAsync,
} from '../bpf/links.js'
import type {BpfMap} from '../bpf/map.js'
import {BpfObject} from '../bpf/object.js'
import {loadWithFloor} from '../bpf/kernel-floor.js'
import {run} from '../sys/exec.js'
import {ensureBpffs, nodePinDir, removeNodePins} from '../bpf/pins.js'
import {LayoutUpgrade, layoutPinDir, type LayoutSteps, type UpgradeReport} from '../bpf/upgrade.js'
import {bpfObjectPath} from '../util/root.js'
import {MIRRORED, type DesiredMaps} from './desired.js'
import {
  encodeDesired,
  forgetPrepared,
  mirrorMaps,
  prepareTable,
  newMirrorMemo,
  type MirroredMap,
  type MirrorMemo,
  type SyncReport,
  type TableState,
} from './mapsync.js'
import {syncMeshExtras} from './mesh.js'
import {EntryCache} from './entry-cache.js'
import {attachSockMesh, setSockConfig} from './sock-mesh.js'
import {attachSockLb, detachSockLb, sockLbCgroup, SockLbEnder, syncSockLbTasks, type SockLbMemo} from './sock-lb.js'
import {listTaskNetns, taskCgroup} from '../tasks/runner.js'
import {removeIfEmpty} from '../sys/cgroup.js'

export interface DatapathOptions {
  node: string
  underlay: string
  xdpMode: XdpMode
  /**
   * Another build of the programs than bpf/dist's, with its layout version and the steps that
   * lead to it: how an upgrade test plays a next layout (the agent always runs its own build).
   */
  build?: {objectPath: (name: string) => string; layoutVersion: number; steps: LayoutSteps}
  /** DRIFT_CHECK_MS unless given (a test that must not meet the clock sets a long one). */
  driftCheckMs?: number
}

const UNDERLAY_PROG = 'sn_xdp_underlay'
const TASK_PROG = 'sn_tc_task'
/** The routing mesh's replies, on each task's gateway-bridge veth (bpf/tc_gw.c). */
const GW_PROG = 'sn_tc_gw'
const gwLink = (hostIf: string) => `gw-${hostIf}`
const UNDERLAY_LINK = 'xdp-underlay'
const taskLink = (hostIf: string) => `tcx-${hostIf}`
const DNS_PROG = 'sn_tc_dns'
/**
 * How often the drift check (Datapath.repair) reads every map back and checks every attachment
 * (what was changed by hand comes back within this, plus the check's own few turns of the event
 * loop); the syncs between only write what the store changed.
 */
export const DRIFT_CHECK_MS = 3000
/**
 * Task devices whose attachments the drift check looks at in one turn of the event loop (a
 * device read and a pin read each): at 1,000 tasks a check of all at once held the loop for
 * tens of ms, and SWIM's probes wait 120 ms.
 */
const REPAIR_SLICE = 64
/** Detaches at once on libuv's thread pool (4 threads, shared with the agent's file reads). */
const DETACH_PARALLEL = 2
/** Lets the event loop run what waits (probes, requests) before the drift check goes on. */
const yieldLoop = () => new Promise<void>((resolve) => setImmediate(resolve))
const dnsLink = (gwIf: string) => `dns-${gwIf}`

/** Where a node's links are pinned (inside its pin folder, so `leave` removes them with the maps). */
export function nodeLinkDir(node: string): string {
  return join(nodePinDir(node), 'links')
}

/** What the agent reports about the data plane (GET /info). */
export interface DatapathStatus {
  /** How the programs are attached: bpf_link, or netlink on kernels without links. */
  underlayVia: 'link' | 'netlink'
  /** Syncs in which a map could not be written in full (full map, or another error), per map. */
  syncErrors: Partial<Record<MirroredMap | 'sn_maglev', number>>
  lastSyncError?: string
  /** Attachments found missing by the drift check and made again. */
  repairs: number
  /**
   * The published ports from the node itself (bpf/sock_mesh.c): why its programs are not attached, when
   * they are not (a kernel or host without what they need); the rest of the data plane works without them.
   */
  nodeLocalMeshError?: string
  /**
   * Load balancing at connect() (bpf/sock_lb.c): why its programs are not attached, when they are
   * not; tc_task then balances every flow to a VIP, as it does what the socket programs miss.
   */
  socketLbError?: string
}

export class Datapath {
  /** Task devices we attached: host-side name -> its ifindex then. */
  private readonly tasks = new Map<string, number>()
  private readonly taskVia = new Map<string, 'link' | 'netlink'>()
  /** Gateway-bridge veths we attached tc_gw to: host-side name -> its ifindex then. */
  private readonly gws = new Map<string, number>()
  private readonly st: DatapathStatus
  /** Maglev tables this agent wrote, by id: an unchanged one is not written again. */
  private readonly tables: TableState
  /** Every VIP's backends (vni/vip/ip) as the last sync wrote them: one that left ends its sockets. */
  private backendKeys = new Set<string>()
  /** A backend left (or the agent just started): sockets to it are ended at the next endSockets(). */
  private endPending = true
  /** What the syncs wrote: a map whose wanted entries did not change is not read back (mapsync.ts MirrorMemo). */
  private readonly memo: MirrorMemo = newMirrorMemo()
  /** The last sync's encoded entries, taken again where their inputs are the same. */
  private readonly encoded = new EntryCache()
  /** The last sync's desired state and its encoding: the drift check that follows it reads the maps against it. */
  private last: {want: DesiredMaps; encoded: ReturnType<typeof encodeDesired>} | undefined
  /** sn_sock_lb_tasks as the last sync wrote it, and the task cgroups' ids. */
  private readonly sockLbMemo: SockLbMemo = {ids: new Map()}
  /** When the drift check last read every map back and checked every attachment (ms). */
  private lastFullRepair = -Infinity
  /** Counts the agent's own map writes outside a sync (attachTask): a drift check's read back in flight is then not trusted. */
  private outsideWrites = 0
  /**
   * close() was called: a drift check or a preparation that yielded the loop stops at its next
   * turn (the agent closes the maps' fds while a pass may still be under way).
   */
  private closed = false

  private constructor(
    private readonly o: DatapathOptions,
    private readonly objects: BpfObject[],
    private readonly xdpFd: number,
    private readonly tcFd: number,
    private readonly peerFd: number,
    private readonly gwFd: number,
    private readonly dnsFd: number,
    readonly maps: {
      config: BpfMap
      stats: BpfMap
      sn_maglev: BpfMap
      sn_ct: BpfMap
      sn_mesh_ct: BpfMap
      sn_mesh_stats: BpfMap
      sn_mesh_config: BpfMap
      sn_sock_config: BpfMap
      sn_probe_keys: BpfMap
      sn_sock_lb_tasks: BpfMap
    } & Record<MirroredMap, BpfMap>,
    underlayVia: 'link' | 'netlink',
    private readonly sockError: string | undefined,
    /** What opening did with the pins of other layout versions (empty when there were none). */
    readonly upgrades: UpgradeReport[],
    private readonly sockLb: {error?: string; ender?: SockLbEnder},
  ) {
    this.st = {
      underlayVia,
      syncErrors: {},
      repairs: 0,
      ...(sockError ? {nodeLocalMeshError: sockError} : {}),
      ...(sockLb.error ? {socketLbError: sockLb.error} : {}),
    }
    this.tables = {map: maps.sn_maglev, written: new Map()}
  }

  static open(o: DatapathOptions): Datapath {
    ensureBpffs()
    const fresh = !existsSync(nodePinDir(o.node))
    // Each layout version pins apart, so an upgrade never meets old pins (src/bpf/upgrade.ts).
    const pinRoot = layoutPinDir(o.node, o.build?.layoutVersion)
    mkdirSync(pinRoot, {recursive: true, mode: 0o700})
    const objects: BpfObject[] = []
    let upgrade: LayoutUpgrade | undefined
    try {
      for (const name of ['xdp_underlay', 'tc_task', 'xdp_task_peer', 'tc_gw', 'tc_dns', 'sock_mesh', 'sock_lb']) {
        const obj = BpfObject.open(o.build ? o.build.objectPath(name) : bpfObjectPath(name), {pinRoot})
        objects.push(obj)
        loadWithFloor(obj, name)
      }
      const [underlay, task, peer, gw, dns, sock, sockLb] = objects as [
        BpfObject,
        BpfObject,
        BpfObject,
        BpfObject,
        BpfObject,
        BpfObject,
        BpfObject,
      ]
      // An upgrade from an older layout: its maps are carried into the new ones before any new
      // program is attached, so the new programs start with every flow and all forwarding state;
      // then every attachment is swapped at once, then what the old programs wrote meanwhile is
      // copied again (src/bpf/upgrade.ts).
      const current = Object.fromEntries(
        objects.flatMap((obj) =>
          obj
            .mapNames()
            .filter((n) => n.startsWith('sn_'))
            .map((n) => [n, obj.map(n)] as const),
        ),
      )
      upgrade = LayoutUpgrade.begin(o.node, current, o.build ? {version: o.build.layoutVersion, steps: o.build.steps} : {})
      upgrade.carryOver()
      const xdpFd = underlay.program(UNDERLAY_PROG).fd
      const r = attachXdpLink(o.underlay, xdpFd, o.xdpMode, {
        pinPath: join(nodeLinkDir(o.node), UNDERLAY_LINK),
        ownName: UNDERLAY_PROG,
      })
      let sockError: string | undefined
      try {
        attachSockMesh(sock, nodeLinkDir(o.node))
      } catch (e) {
        sockError = e instanceof Error ? e.message : String(e)
      }
      // Load balancing at connect(): on the cgroup that holds all of this node's tasks. Without it
      // (a host whose cgroups refuse it) tc_task balances every flow, as it always did.
      // The probe for bpf_sock_destroy (Linux 6.5+): its object loads, or the kernel lacks it, and
      // then no socket is balanced at connect(): one whose backend left could not be ended.
      const lb: {error?: string; ender?: SockLbEnder} = {}
      try {
        lb.ender = SockLbEnder.open(
          o.build ? o.build.objectPath('sock_lb_end') : bpfObjectPath('sock_lb_end'),
          pinRoot,
          nodeLinkDir(o.node),
        )
        attachSockLb(sockLb, nodeLinkDir(o.node), sockLbCgroup(o.node))
      } catch (e) {
        lb.error = e instanceof Error ? e.message : String(e)
        detachSockLb(nodeLinkDir(o.node))
      }
      if (upgrade.active) {
        swapLinks(o.node, {tcx: task.program(TASK_PROG).fd, gw: gw.program(GW_PROG).fd, dns: dns.program(DNS_PROG).fd})
      }
      const upgrades = upgrade.finish()
      return new Datapath(
        o,
        objects,
        xdpFd,
        task.program(TASK_PROG).fd,
        peer.program('sn_xdp_task_peer').fd,
        gw.program(GW_PROG).fd,
        dns.program(DNS_PROG).fd,
        {
          config: underlay.map('sn_config'),
          sn_networks: underlay.map('sn_networks'),
          sn_endpoints: underlay.map('sn_endpoints'),
          sn_devices: task.map('sn_devices'),
          sn_services: task.map('sn_services'),
          sn_maglev: task.map('sn_maglev'),
          sn_backends: task.map('sn_backends'),
          sn_ct: task.map('sn_ct'),
          sn_mesh_ports: underlay.map('sn_mesh_ports'),
          sn_mesh_nodes: underlay.map('sn_mesh_nodes'),
          sn_mesh_addrs: underlay.map('sn_mesh_addrs'),
          sn_mesh_ct: underlay.map('sn_mesh_ct'),
          sn_mesh_stats: underlay.map('sn_mesh_stats'),
          sn_mesh_config: gw.map('sn_mesh_config'),
          sn_gateways: gw.map('sn_gateways'),
          sn_sock_config: sock.map('sn_sock_config'),
          sn_sock_targets: sock.map('sn_sock_targets'),
          stats: underlay.map('sn_stats'),
          sn_dns_names: dns.map('sn_dns_names'),
          sn_dns_ptrs: dns.map('sn_dns_ptrs'),
          sn_dns_scopes: dns.map('sn_dns_scopes'),
          sn_probe_keys: underlay.map('sn_probe_keys'),
          sn_sock_lb_tasks: sockLb.map('sn_sock_lb_tasks'),
        },
        r.via,
        sockError,
        upgrades,
        lb,
      )
    } catch (e) {
      upgrade?.close()
      for (const obj of objects) obj.close()
      if (fresh) removeNodePins(o.node) // refused means nothing half-made
      throw e
    }
  }

  /**
   * `ctUdpIdle`, `meshUdpIdle`: seconds a UDP flow through a VIP, to a published port, lives idle
   * (absent: the programs' default, 120).
   */
  setConfig(c: {nodeIp: string; vxlanPort: number; underlayIfindex: number; ctUdpIdle?: number; meshUdpIdle?: number}): void {
    this.maps.config.update(
      u32.encode(0),
      snConfig.encode({
        node_ip: c.nodeIp,
        vxlan_port: c.vxlanPort,
        flags: SN_CONFIG_FLAGS.READY,
        underlay_ifindex: c.underlayIfindex,
        ct_udp_idle: c.ctUdpIdle ?? 0,
        mesh_udp_idle: c.meshUdpIdle ?? 0,
      }),
    )
    if (!this.sockError) {
      try {
        setSockConfig(this.maps.sn_sock_config, c.nodeIp)
      } catch (e) {
        this.st.nodeLocalMeshError = e instanceof Error ? e.message : String(e)
      }
    }
  }

  /**
   * The host side of a task's overlay device: its sn_devices entry first, then tc on what the
   * task sends. Called before the task's process starts, so its first frame finds both. The
   * kernel's part of the attach runs off the event loop (attachTcxLinkAsync).
   */
  async attachTask(hostIf: string, device: {vni: number; ip: string}): Promise<void> {
    const ifindex = ifindexOf(hostIf)
    // The backend flag comes with the next sync, once the task runs; a task adopted after a
    // restart keeps the one its entry has (its replies to local clients must not lose their VIP).
    const key = u32.encode(ifindex)
    const had = this.maps.sn_devices.lookup(key)
    const old = had ? snDevice.decode(had) : undefined
    const flags = old && old.vni === device.vni && old.ip === device.ip ? old.flags : 0
    this.maps.sn_devices.update(key, snDevice.encode({...device, flags}))
    this.memo.wrote.delete('sn_devices') // written here, not by a sync: the next one reads it back
    this.outsideWrites++ // a drift check's read of sn_devices in flight may have missed it
    const r = await attachTcxLinkAsync(hostIf, this.tcFd, 'ingress', this.taskLinkOptions(hostIf))
    this.taskVia.set(hostIf, r.via)
    // In the same turn as the pin: repair() never sees a pinned link of a device it does not know.
    this.tasks.set(hostIf, ifindex)
  }

  /** tc_gw on the host side of a task's gateway-bridge veth: the mesh's replies leave the task there. */
  async attachGateway(hostIf: string): Promise<void> {
    const ifindex = ifindexOf(hostIf)
    await attachTcxLinkAsync(hostIf, this.gwFd, 'ingress', {
      pinPath: join(nodeLinkDir(this.o.node), gwLink(hostIf)),
      ownName: GW_PROG,
    })
    this.gws.set(hostIf, ifindex)
  }

  /** The DNS fast path on a task's gateway-bridge device (host side), before the task's process starts. */
  async attachDns(gwIf: string): Promise<void> {
    await attachTcxLinkAsync(gwIf, this.dnsFd, 'ingress', {
      pinPath: join(nodeLinkDir(this.o.node), dnsLink(gwIf)),
      ownName: DNS_PROG,
    })
  }

  private taskLinkOptions(hostIf: string): {pinPath: string; ownName: string} {
    return {pinPath: join(nodeLinkDir(this.o.node), taskLink(hostIf)), ownName: TASK_PROG}
  }

  /** Drift repair's attach (rare: a link removed by hand), synchronous. */
  private attachTc(hostIf: string): void {
    const r = attachTcxLink(hostIf, this.tcFd, 'ingress', this.taskLinkOptions(hostIf))
    this.taskVia.set(hostIf, r.via)
  }

  /**
   * XDP on the task side, before it moves: redirected frames need NAPI there. And GRO: the
   * underlay program redirects one wire segment at a time, and this device's NAPI is the only
   * place they can be merged before the task's stack (the kernel's vxlan path merges in the
   * vxlan device's GRO cells). veth leaves GRO off, and since Linux 6.8 attaching XDP no longer
   * turns it on, so without this a TCP receiver handles every 1.4 kB segment on its own.
   * Best effort: GRO is performance, not correctness. A netlink attachment: the device was made
   * by us a moment ago and moves into the task's namespace, where no pin of ours could follow.
   */
  async preparePeer(peerIf: string): Promise<void> {
    await attachXdpAsync(peerIf, this.peerFd, {mode: 'native'})
    try {
      await run(['ethtool', '-K', peerIf, 'gro', 'on'], `turning on GRO on ${peerIf}`)
    } catch {
      // no ethtool, or a kernel without veth GRO: forwarding works, only slower
    }
  }

  /**
   * The Maglev tables `want` needs and this agent has not written, computed ahead, one per turn of
   * the event loop (a table of a large tier is milliseconds, and when tasks come up every
   * service's backends change at once); the sync that follows writes them without computing.
   */
  async prepareTables(want: DesiredMaps): Promise<void> {
    const services = [...(want.services?.values() ?? [])]
    forgetPrepared(this.tables, services)
    for (const s of services) {
      if (this.closed) return
      if (prepareTable(this.tables, s)) await yieldLoop()
    }
  }

  /**
   * Makes the store-owned maps hold `want`; a map that fails is reported, the others still written.
   * A map whose wanted entries are those the last sync wrote is left alone (not read back) unless
   * `full`: the drift check (repair) reads each map back, one per turn of the event loop.
   */
  sync(want: DesiredMaps, opts: {full?: boolean} = {}): SyncReport {
    const full = opts.full === true
    const encoded = encodeDesired(want, this.encoded)
    this.last = {want, encoded}
    const r = mirrorMaps(
      this.maps,
      encoded,
      {state: this.tables, services: want.services?.values() ?? []},
      {state: this.memo, full},
    )
    this.syncSockLb(want, full, r)
    const keys = new Set(
      [...(want.services?.values() ?? [])].flatMap((s) =>
        [...s.backends, ...(s.draining ?? [])].map((b) => `${s.vni}/${s.vip}/${b.ip}`),
      ),
    )
    for (const k of this.backendKeys) if (!keys.has(k)) this.endPending = true
    this.backendKeys = keys
    this.count(r)
    return r
  }

  private count(r: SyncReport): void {
    for (const e of r.errors) this.st.syncErrors[e.map] = (this.st.syncErrors[e.map] ?? 0) + 1
    if (r.errors.length > 0) this.st.lastSyncError = r.errors.map((e) => `${e.map}: ${e.message}`).join('; ')
  }

  private syncSockLb(want: DesiredMaps, full: boolean, r: SyncReport, read?: Array<[Buffer, Buffer]>): void {
    try {
      syncMeshExtras(this.maps, want.mesh)
    } catch (e) {
      r.errors.push({map: 'sn_mesh_ports', failed: 1, message: `sn_mesh_config/sn_mesh_stats: ${(e as Error).message}`})
    }
    if (!this.sockLb.error) {
      try {
        const tasks = new Map([...(want.sockTasks ?? [])].map(([id, nets]) => [taskCgroup(this.o.node, id), nets] as const))
        syncSockLbTasks(this.maps.sn_sock_lb_tasks, tasks, this.sockLbMemo, full, read)
      } catch (e) {
        r.errors.push({map: 'sn_backends', failed: 1, message: `sn_sock_lb_tasks: ${(e as Error).message}`})
      }
    }
  }

  /**
   * Drift: puts back what was changed by hand in the maps and what was taken off the devices (XDP
   * on the underlay, tc on a task device), and lets go of the attachments of devices no task
   * wants any more. Returns one line per attachment repaired.
   *
   * The check itself runs once every DRIFT_CHECK_MS (or when `full`), spread over turns of the
   * event loop: each mirrored map read back against `want` in a turn of its own (want is what the
   * last sync was given, so only what changed behind the agent's back is written), then the
   * devices REPAIR_SLICE at a time. The caller runs no sync meanwhile (a reconcile pass awaits it).
   */
  async repair(want: DesiredMaps, opts: {full?: boolean} = {}): Promise<string[]> {
    const done: string[] = []
    // Links of devices no task wants any more go at every pass, detached off the event loop (each
    // detach waits for an RCU grace period: a few hundred tasks leaving held the loop for seconds).
    const gone: string[] = []
    for (const [hostIf, ifindex] of this.tasks) {
      if (want.devices.has(ifindex)) continue
      gone.push(hostIf)
      this.tasks.delete(hostIf)
      this.taskVia.delete(hostIf)
    }
    for (let i = 0; i < gone.length; i += DETACH_PARALLEL)
      await Promise.all(
        gone.slice(i, i + DETACH_PARALLEL).map((hostIf) => removeLinkAsync(join(nodeLinkDir(this.o.node), taskLink(hostIf)))),
      )
    const at = performance.now()
    if (opts.full !== true && at - this.lastFullRepair < (this.o.driftCheckMs ?? DRIFT_CHECK_MS)) return done
    this.lastFullRepair = at
    await this.checkMaps(want)
    if (this.closed) return done
    const underlayOk = await this.underlayAttached()
    if (this.closed) return done
    if (!underlayOk) {
      attachXdpLink(this.o.underlay, this.xdpFd, this.o.xdpMode, {
        pinPath: join(nodeLinkDir(this.o.node), UNDERLAY_LINK),
        ownName: UNDERLAY_PROG,
      })
      done.push(`XDP on ${this.o.underlay} was gone: attached again`)
    }
    // The task devices' pins are read off the event loop, a slice at a time side by side.
    const devices = [...this.tasks]
    for (let i = 0; i < devices.length; i += REPAIR_SLICE) {
      const slice = devices.slice(i, i + REPAIR_SLICE)
      const gone = await Promise.all(slice.map(([hostIf, ifindex]) => this.taskGone(hostIf, ifindex)))
      if (this.closed) return done
      for (const [j, [hostIf, ifindex]] of slice.entries()) {
        if (!gone[j] || this.tasks.get(hostIf) !== ifindex) continue // let go of or attached anew meanwhile
        this.attachTc(hostIf)
        done.push(`tc on ${hostIf} was gone: attached again`)
      }
    }
    let n = 0
    for (const [hostIf, ifindex] of [...this.gws]) {
      if (++n % REPAIR_SLICE === 0) await yieldLoop()
      if (this.closed) return done
      if (this.gws.get(hostIf) !== ifindex) continue
      let now: number | undefined
      try {
        now = ifindexOf(hostIf)
      } catch {
        now = undefined
      }
      const pin = join(nodeLinkDir(this.o.node), gwLink(hostIf))
      if (now !== ifindex) {
        removeLink(pin) // the task is gone (its veth with it); a new one attaches its own
        this.gws.delete(hostIf)
      } else if (!(await linkAttachedAsync(pin, hostIf, 'ingress'))) {
        if (this.closed) return done
        if (this.gws.get(hostIf) !== ifindex) continue // let go of or attached anew meanwhile
        attachTcxLink(hostIf, this.gwFd, 'ingress', {pinPath: pin, ownName: GW_PROG})
        done.push(`tc_gw on ${hostIf} was gone: attached again`)
      }
    }
    // Links of task devices from before a restart that no task claimed, and of gateway devices that are gone.
    const dir = nodeLinkDir(this.o.node)
    if (existsSync(dir)) {
      for (const f of readdirSync(dir)) {
        if (f.startsWith('tcx-') && !this.tasks.has(f.slice(4))) removeLink(join(dir, f))
        if (f.startsWith('gw-') && !this.gws.has(f.slice(3))) removeLink(join(dir, f))
        if (f.startsWith('dns-') && !deviceExists(f.slice(4))) removeLink(join(dir, f))
      }
    }
    this.st.repairs += done.length
    return done
  }

  /**
   * Every mirrored map read back against `want` and made to hold it, one map per turn of the event
   * loop (a read of a map of thousands of entries, and the compare, is milliseconds; all of them
   * at once were tens), then the stale Maglev tables, then sn_sock_lb_tasks with each cgroup's id
   * looked up again.
   */
  private async checkMaps(want: DesiredMaps): Promise<void> {
    const encoded = this.last?.want === want ? this.last.encoded : encodeDesired(want, this.encoded)
    const tables = {state: this.tables, services: [...(want.services?.values() ?? [])]}
    for (const name of [...MIRRORED, 'sn_maglev'] as const) {
      await yieldLoop()
      if (this.closed) return
      let have: Map<MirroredMap, Array<[Buffer, Buffer]>> | undefined
      if (name !== 'sn_maglev') {
        const read = await this.readBack(this.maps[name])
        if (this.closed) return
        if (read) have = new Map([[name, read]])
      }
      const r = mirrorMaps(this.maps, encoded, tables, {state: this.memo, full: new Set([name]), have})
      this.count(r)
    }
    await yieldLoop()
    if (this.closed) return
    const read = this.sockLb.error ? undefined : await this.readBack(this.maps.sn_sock_lb_tasks)
    if (this.closed) return
    const r: SyncReport = {written: 0, deleted: 0, errors: []}
    this.syncSockLb(want, true, r, read)
    this.count(r)
  }

  /**
   * A map's entries read off the event loop (BpfMap.entriesAsync) for the drift check to compare,
   * or undefined, and the compare reads it in place as before: when the read failed (that read's
   * error is then reported as a sync's would be), or when the agent wrote a map itself meanwhile
   * (attachTask: the read may have missed its entry, and the memo would then be wrong).
   */
  private async readBack(map: BpfMap): Promise<Array<[Buffer, Buffer]> | undefined> {
    const writes = this.outsideWrites
    const read = await map.entriesAsync().catch(() => undefined)
    return writes === this.outsideWrites ? read : undefined
  }

  private async underlayAttached(): Promise<boolean> {
    if (this.st.underlayVia === 'link')
      return linkAttachedAsync(join(nodeLinkDir(this.o.node), UNDERLAY_LINK), this.o.underlay, 'xdp')
    const q = queryXdp(this.o.underlay)
    return (q.progId || q.drvProgId || q.skbProgId) === progIdOf(this.xdpFd)
  }

  /** Whether the task device `hostIf` (at `ifindex` when adopted) is there and its tc program is not. */
  private async taskGone(hostIf: string, ifindex: number): Promise<boolean> {
    if (this.tasks.get(hostIf) !== ifindex) return false
    let now: number
    try {
      now = ifindexOf(hostIf)
    } catch {
      return false // the device itself is gone: the task reconciler makes it again
    }
    if (now !== ifindex) return false
    if (this.taskVia.get(hostIf) === 'netlink') return tcAttachedId(hostIf, 'ingress') !== progIdOf(this.tcFd)
    return !(await linkAttachedAsync(join(nodeLinkDir(this.o.node), taskLink(hostIf)), hostIf, 'ingress'))
  }

  /**
   * After a sync in which a backend left a VIP's set: ends, in every task namespace of the node,
   * the sockets the connect() load balancer sent to it (bpf/sock_lb_end.c), so their clients see
   * ECONNABORTED now rather than a hang until their own timeout. (Without bpf_sock_destroy no
   * socket is balanced at connect(): tc_task's tracking ends such flows, as before.)
   */
  async endSockets(): Promise<void> {
    if (!this.endPending || !this.sockLb.ender) return
    this.endPending = false
    await this.sockLb.ender.run(listTaskNetns(this.o.node))
  }

  status(): DatapathStatus {
    return {...this.st, syncErrors: {...this.st.syncErrors}}
  }

  /** Closes our handles; programs stay attached (their links pinned) and maps stay pinned. */
  close(): void {
    this.closed = true
    this.sockLb.ender?.close()
    for (const obj of this.objects) obj.close()
  }

  /** leave: take our programs off the devices and forget the pinned state. Never touches another tool's program. */
  static teardown(node: string, underlay: string, mode: XdpMode): void {
    const dir = nodeLinkDir(node)
    if (existsSync(dir)) for (const f of readdirSync(dir)) removeLink(join(dir, f))
    try {
      // A netlink attachment (kernels without XDP links, or an agent from before links).
      const q = queryXdp(underlay)
      const id = q.progId || q.drvProgId || q.skbProgId
      if (id && progNameById(id) === UNDERLAY_PROG) detachXdp(underlay, {mode})
    } catch {
      // the device is gone, and its programs with it
    }
    removeNodePins(node)
    // The node's task cgroup, made for the connect() programs when no task had made it: gone with
    // them when no task is left in it (and the shared parent when no node is).
    try {
      const cg = sockLbCgroup(node)
      removeIfEmpty(cg)
      removeIfEmpty(dirname(cg))
    } catch {
      // no cgroup2 in sight (a namespace whose /sys hides it): nothing of ours there either
    }
  }
}

/**
 * The tc programs of a node's task and gateway devices, put on the new programs at once (each
 * pinned link updated in place) rather than as each task is adopted: old and new programs must not
 * run side by side on two maps for long. A device that is gone is left to the reconciler. Kernels
 * without TCX attach tc by netlink, with no pin to find: their devices change as tasks are adopted.
 */
function swapLinks(node: string, fds: {tcx: number; gw: number; dns: number}): void {
  const dir = nodeLinkDir(node)
  if (!existsSync(dir)) return
  const progs = {tcx: [fds.tcx, TASK_PROG], gw: [fds.gw, GW_PROG], dns: [fds.dns, DNS_PROG]} as const
  for (const f of readdirSync(dir)) {
    const m = /^(tcx|gw|dns)-(.+)$/.exec(f)
    if (!m || !deviceExists(m[2]!)) continue
    const [fd, ownName] = progs[m[1] as keyof typeof progs]
    attachTcxLink(m[2]!, fd, 'ingress', {pinPath: join(dir, f), ownName})
  }
}

function deviceExists(name: string): boolean {
  try {
    ifindexOf(name)
    return true
  } catch {
    return false
  }
}
