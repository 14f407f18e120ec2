// Writing the store-owned maps (MAP_OWNERSHIP's 'mirror' rule) from the
// desired state: stale keys out first, then what is missing or different.
// A map that cannot take more (E2BIG) or fails otherwise is reported and
// skipped, and the sync goes on with the next map: one full table must not
// leave the others stale.
import {snDevice, snEndpoint, snEndpointKey, snNetwork, u32, SN_EP_FLAGS, SN_NET_FLAGS} from '../bpf/codecs.js'
import type {BpfMap} from '../bpf/map.js'
import {MIRRORED, planMirror, type DesiredMaps, type Entries, type MirroredMap} from './desired.js'

export type {MirroredMap}

export interface MapSyncError {
  map: MirroredMap
  /** Entries that could not be written or deleted in this sync. */
  failed: number
  message: string
}

export interface SyncReport {
  written: number
  deleted: number
  errors: MapSyncError[]
}

const entry = (k: Buffer, v: Buffer): [string, [Buffer, Buffer]] => [k.toString('hex'), [k, v]]

/** The desired state as the maps' own bytes. */
export function encodeDesired(want: DesiredMaps): Record<MirroredMap, Entries> {
  return {
    sn_networks: new Map(
      [...want.networks].map(([vni, n]) =>
        entry(
          u32.encode(vni),
          snNetwork.encode({subnet: n.subnet, prefix_len: n.prefixLen, flags: n.ingress ? SN_NET_FLAGS.INGRESS : 0, mtu: n.mtu}),
        ),
      ),
    ),
    sn_endpoints: new Map(
      [...want.endpoints.values()].map((e) =>
        entry(
          snEndpointKey.encode({vni: e.vni, ip: e.ip}),
          snEndpoint.encode({node_ip: e.nodeIp, ifindex: e.ifindex, mac: e.mac, flags: e.local ? SN_EP_FLAGS.LOCAL : 0}),
        ),
      ),
    ),
    sn_devices: new Map(
      [...want.devices].map(([ifindex, d]) => entry(u32.encode(ifindex), snDevice.encode({vni: d.vni, ip: d.ip}))),
    ),
  }
}

/** Makes each mirrored map hold exactly its desired entries, as far as it can. */
export function mirrorMaps(maps: Record<MirroredMap, BpfMap>, want: Record<MirroredMap, Entries>): SyncReport {
  const report: SyncReport = {written: 0, deleted: 0, errors: []}
  for (const name of MIRRORED) {
    const map = maps[name]
    let failed = 0
    let first: string | undefined
    const note = (e: unknown) => {
      failed++
      first ??= (e as Error).message
    }
    try {
      const have = new Map(map.entries().map(([k, v]) => [k.toString('hex'), v]))
      const plan = planMirror(have, want[name])
      for (const k of plan.remove) {
        try {
          if (map.delete(k)) report.deleted++
        } catch (e) {
          note(e)
        }
      }
      // Updates of keys already there succeed in a full map: keep going after a failure.
      for (const [k, v] of plan.write) {
        try {
          map.update(k, v)
          report.written++
        } catch (e) {
          note(e)
        }
      }
    } catch (e) {
      note(e) // the map could not even be read
    }
    if (failed > 0) report.errors.push({map: name, failed, message: first!})
  }
  return report
}
