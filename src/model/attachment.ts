// A network attachment seen as what it is to the data plane: a task with one
// address on one network and no process. The placement's address accounting
// and the maps' derivation take it as such, so neither needs a second path.
import type {NetworkAttachment, Task} from './types.js'

export function attachmentAsTask(a: NetworkAttachment): Task {
  return {
    id: a.id,
    serviceId: '',
    serviceName: a.name,
    slot: 0,
    nodeId: a.nodeId,
    desiredState: 'running',
    attachments: [{networkId: a.networkId, ip: a.ip, mac: a.mac}],
    createdAt: a.createdAt,
  }
}

/** The node-side end of the attachment's veth: sn-x and the id's start (unlike a task's sn-<8>-<i>). */
export const attachmentHostIf = (id: string) => `sn-x${id.slice(0, 11)}`
