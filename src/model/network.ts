import {checkSubnet, gatewayFor, nextSubnet, nextVni} from './allocate.js'
import {DEFAULT_NETWORK_MTU, NETWORK_MTU_MAX, NETWORK_MTU_MIN} from './defaults.js'
import {UserError} from './errors.js'
import {cidrContains, parseCidr, parseIpv4} from './ipv4.js'
import type {ClusterSpec, Network, NetworkDriver} from './types.js'
import {checkName} from './validate.js'

export type NetworkRequest = {
  id: string
  name: string
  driver?: NetworkDriver
  subnet?: string
  gateway?: string
  attachable?: boolean
  ingress?: boolean
  internal?: boolean
  mtu?: number
  createdAt: number
}

/**
 * Turns `network create` into a Network record, or refuses with a UserError:
 * bad or duplicate name, a second ingress, a bad or overlapping subnet, an MTU out of range.
 * Local (bridge) networks take part in the overlap check too, because a task
 * attached to both would not know where to route.
 */
export function planNetwork(req: NetworkRequest, cluster: ClusterSpec, existing: Network[]): Network {
  checkName('network', req.name)
  if (existing.some((n) => n.name === req.name)) throw new UserError(`network with name '${req.name}' already exists`)
  const driver = req.driver ?? 'overlay'
  const ingress = req.ingress ?? false
  if (ingress) {
    const other = existing.find((n) => n.ingress)
    if (other) throw new UserError(`an ingress network already exists: '${other.name}'`)
    if (req.attachable) throw new UserError('an ingress network cannot be attachable')
    if (req.internal) throw new UserError('an ingress network cannot be internal: it is how published ports come in')
  }
  if (req.mtu !== undefined) {
    if (driver !== 'overlay') throw new UserError('--mtu is for overlay networks')
    checkMtu(req.mtu)
  }
  const subnet =
    req.subnet !== undefined
      ? checkSubnet(req.subnet, existing)
      : nextSubnet(
          cluster.defaultAddrPool,
          cluster.subnetSize,
          existing.map((n) => n.subnet),
        )
  let gateway = gatewayFor(subnet)
  if (req.gateway !== undefined) {
    if (!cidrContains(parseCidr(subnet), parseIpv4(req.gateway))) {
      throw new UserError(`gateway ${req.gateway} is outside subnet ${subnet}`)
    }
    gateway = req.gateway
  }
  const net: Network = {
    id: req.id,
    name: req.name,
    driver,
    scope: driver === 'overlay' ? 'swarm' : 'local',
    subnet,
    gateway,
    attachable: req.attachable ?? false,
    ingress,
    createdAt: req.createdAt,
  }
  if (driver === 'overlay') {
    net.vni = nextVni(existing.flatMap((n) => (n.vni === undefined ? [] : [n.vni])))
    net.mtu = req.mtu ?? DEFAULT_NETWORK_MTU
  }
  if (req.internal) net.internal = true
  return net
}

/** A network MTU: an integer from the IPv4 minimum up to what a jumbo-frame underlay carries. */
export function checkMtu(mtu: number): void {
  if (!Number.isInteger(mtu) || mtu < NETWORK_MTU_MIN || mtu > NETWORK_MTU_MAX) {
    throw new UserError(`invalid MTU ${mtu}: use an integer from ${NETWORK_MTU_MIN} to ${NETWORK_MTU_MAX}`)
  }
}
