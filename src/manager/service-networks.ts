// service update --network-add NAME[,alias=A] / --network-rm NAME: the networks and aliases a live
// service ends up with. Pure: checked in full, one line for what is wrong, before anything is written.
// What it means for the tasks (an address on the new network for each running task, plugged in
// live; tasks on a network that was removed replaced) is placement's (plan.ts).
import {UserError} from '../model/errors.js'
import {parseNetworkSpec} from '../model/network-spec.js'
import type {Network, Service, ServiceAlias} from '../model/types.js'

export type NetworksUpdate = {add: string[]; rm: string[]}

export function nextNetworks(
  svc: Service,
  req: NetworksUpdate,
  findNetwork: (ref: string) => Network,
): Pick<Service, 'networks' | 'aliases'> {
  if (req.add.length === 0 && req.rm.length === 0)
    throw new UserError('nothing to change: give --network-add NETWORK or --network-rm NETWORK')
  const gone = new Set<string>()
  for (const ref of req.rm) {
    const net = findNetwork(ref)
    if (net.ingress) throw new UserError('the ingress network is left through --publish-rm, not --network-rm')
    if (!svc.networks.includes(net.id)) throw new UserError(`service ${svc.name} is not attached to network ${net.name}`)
    if (gone.has(net.id)) throw new UserError(`network ${net.name} is given twice to remove`)
    gone.add(net.id)
  }
  const added: {net: Network; aliases: string[]}[] = []
  for (const spec of req.add.map(parseNetworkSpec)) {
    const net = findNetwork(spec.network)
    if (net.driver !== 'overlay') throw new UserError(`network ${net.name} is node-local: services attach to overlay networks`)
    if (net.ingress) throw new UserError('the ingress network is attached through --publish, not --network-add')
    if (added.some((a) => a.net.id === net.id)) throw new UserError(`network ${net.name} is given twice to add`)
    // Removed and added in one command: attached again (its aliases as now given).
    if (svc.networks.includes(net.id) && !gone.has(net.id))
      throw new UserError(`service ${svc.name} is already attached to network ${net.name}`)
    added.push({net, aliases: spec.aliases})
  }
  const kept = svc.networks.filter((id) => !gone.has(id))
  // New networks before the ingress network, which stays last (its place since the first ingress port).
  const ingressAt = kept.findIndex((id) => findNetwork(id).ingress)
  const at = ingressAt < 0 ? kept.length : ingressAt
  const networks = [
    ...kept.slice(0, at),
    ...added.filter((a) => !kept.includes(a.net.id)).map((a) => a.net.id),
    ...kept.slice(at),
  ]
  const readded = new Set(added.map((a) => a.net.id))
  const aliases: ServiceAlias[] = [
    ...(svc.aliases ?? []).filter((a) => networks.includes(a.networkId) && !readded.has(a.networkId)),
    ...added.filter((a) => a.aliases.length > 0).map((a) => ({networkId: a.net.id, names: a.aliases})),
  ]
  return {networks, ...(aliases.length > 0 ? {aliases} : {})}
}
