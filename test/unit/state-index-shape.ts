// What a state index (src/store/state-index.ts) answers, in a form two indexes can be
// compared by: the tests check an index kept from changes against one built by a full scan.
import type {StateIndex} from '../../src/store/state-index.js'

/** Everything an index answers, in a form two indexes can be compared by. */
export function shape(ix: StateIndex) {
  const byKey = <T>(m: Map<string, T>) => [...m].sort(([a], [b]) => (a < b ? -1 : 1))
  const sets = (m: Map<string, ReadonlyMap<string, unknown> | ReadonlySet<string>>) =>
    [...m]
      .map(([k, v]) => [k, [...v.keys()].sort()] as const)
      .filter(([, v]) => v.length > 0)
      .sort(([a], [b]) => (a < b ? -1 : 1))
  const addresses = ix
    .addressNetworks()
    .map((n) => [n, [...ix.addressesOn(n)].map(([ip, o]) => [ip, [...o].sort()]).sort()] as const)
    .filter(([, v]) => v.length > 0)
    .sort(([a], [b]) => (a < b ? -1 : 1))
  return {
    services: byKey(ix.services),
    tasks: byKey(ix.tasks),
    nodes: byKey(ix.nodes),
    networks: byKey(ix.networks),
    attachments: byKey(ix.attachments),
    statuses: byKey(ix.statuses),
    attachmentStatuses: byKey(ix.attachmentStatuses),
    tasksByService: sets(ix.tasksByService),
    tasksByNode: sets(ix.tasksByNode),
    hostPorts: sets(ix.hostPorts),
    servicesByName: sets(ix.servicesByName),
    addresses,
    lists: (['service', 'task', 'node', 'network', 'attachment'] as const).map((k) => ix.list<{id: string}>(k).map((v) => v.id)),
  }
}
