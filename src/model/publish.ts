// The published ports a service ends up with, from what it keeps and what is asked for:
// every rule checked and every missing port allocated before anything is written, as a pure
// function of the store's services (the store is the only memory, so any manager computes the same).
import {UserError} from './errors.js'
import {PUBLISHED_PORT_MAX, PUBLISHED_PORT_MIN, portKey, type PortRequest} from './ports.js'
import type {EndpointMode, PortProtocol, PublishedPort, Service} from './types.js'

/** Ports of the node that swarmnet itself listens on: key (8080/tcp) -> what it is. */
export type ReservedPorts = Map<string, string>

export function reservedPorts(dataPathPort: number, nodes: {name: string; gossipPort: number}[]): ReservedPorts {
  const out: ReservedPorts = new Map()
  out.set(`${dataPathPort}/udp`, "the cluster's data-path port (VXLAN)")
  for (const n of nodes)
    for (const proto of ['tcp', 'udp'] as const)
      if (!out.has(`${n.gossipPort}/${proto}`)) out.set(`${n.gossipPort}/${proto}`, `the gossip port of node ${n.name}`)
  return out
}

export type PortPlanInput = {
  service: {name: string; endpointMode: EndpointMode}
  /** The ports the service keeps (an update), in their order. */
  keep: PublishedPort[]
  add: PortRequest[]
  /** Every other service of the cluster. */
  others: Pick<Service, 'name' | 'ports'>[]
  reserved: ReservedPorts
}

/**
 * keep + add, each added port with its published number (allocated from 30000-32767, lowest
 * free first, when absent). Refused with one line: a port given twice, a port the service
 * already has, a port swarmnet itself uses, a port another service publishes in a way that
 * clashes (an ingress port answers on every node, so it clashes with any other use of its
 * number and protocol; two host-mode ports clash only on one node, which placement prevents),
 * an ingress port on a dnsrr service (it has no VIP to balance over), no free port left.
 */
export function planPorts(input: PortPlanInput): PublishedPort[] {
  const {service, keep, add, others, reserved} = input
  // Who holds each (published, protocol) elsewhere, and in which mode.
  const taken = new Map<string, {service: string; mode: PublishedPort['mode']}>()
  for (const o of others) for (const p of o.ports ?? []) taken.set(portKey(p), {service: o.name, mode: p.mode})
  const mine = new Set(keep.map(portKey))

  for (const [i, r] of add.entries()) {
    if (r.published === undefined) continue
    const key = portKey({published: r.published, protocol: r.protocol})
    if (add.findIndex((x) => x.published === r.published && x.protocol === r.protocol) !== i)
      throw new UserError(`port ${key} is given twice`)
    if (mine.has(key)) throw new UserError(`service ${service.name} already publishes port ${key}`)
    const why = reserved.get(key)
    if (why) throw new UserError(`port ${key} is ${why}: choose another published port`)
    const other = taken.get(key)
    if (other && (r.mode === 'ingress' || other.mode === 'ingress'))
      throw new UserError(
        `port ${key} is already published by service ${other.service}` +
          (other.mode === 'ingress' ? '' : ' (mode=host: an ingress port answers on every node)'),
      )
  }

  const out = [...keep]
  const used = (protocol: PortProtocol) =>
    new Set([
      ...[...taken.keys(), ...mine, ...reserved.keys()].filter((k) => k.endsWith(`/${protocol}`)).map((k) => parseInt(k)),
      ...add.filter((r) => r.protocol === protocol && r.published !== undefined).map((r) => r.published!),
      ...out.filter((p) => p.protocol === protocol).map((p) => p.published),
    ])
  for (const r of add) {
    const published = r.published ?? freePort(used(r.protocol), r.protocol)
    out.push({protocol: r.protocol, target: r.target, published, mode: r.mode})
  }

  if (service.endpointMode === 'dnsrr') {
    const p = out.find((x) => x.mode === 'ingress')
    if (p)
      throw new UserError(
        `port ${portKey(p)}: mode=ingress needs endpoint mode vip (a dnsrr service has no VIP to balance over); publish it with mode=host`,
      )
  }
  return out
}

/** The lowest port of 30000-32767 not in used. */
export function freePort(used: ReadonlySet<number>, protocol: PortProtocol): number {
  for (let p = PUBLISHED_PORT_MIN; p <= PUBLISHED_PORT_MAX; p++) if (!used.has(p)) return p
  throw new UserError(`no free published port left in ${PUBLISHED_PORT_MIN}-${PUBLISHED_PORT_MAX}/${protocol}`)
}

/** (published, protocol) of a service's host-mode ports: two tasks holding one of them never share a node. */
export function hostPortKeys(svc: Pick<Service, 'ports'>): Set<string> {
  return new Set((svc.ports ?? []).filter((p) => p.mode === 'host').map(portKey))
}

export const hasIngressPorts = (svc: Pick<Service, 'ports'>) => (svc.ports ?? []).some((p) => p.mode === 'ingress')
