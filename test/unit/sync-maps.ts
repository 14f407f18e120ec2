// The mirrored maps of the two objects the map-sync tests load (dataplane-sync, dataplane-sync-memo).
import type {BpfObject} from '../../src/bpf/index.js'
import type {mirrorMaps} from '../../src/dataplane/mapsync.js'

export function syncMaps(underlay: BpfObject, task: BpfObject): Parameters<typeof mirrorMaps>[0] {
  return {
    sn_networks: underlay.map('sn_networks'),
    sn_endpoints: underlay.map('sn_endpoints'),
    sn_devices: task.map('sn_devices'),
    sn_backends: task.map('sn_backends'),
    sn_services: task.map('sn_services'),
    sn_mesh_ports: underlay.map('sn_mesh_ports'),
    sn_mesh_nodes: underlay.map('sn_mesh_nodes'),
  }
}
