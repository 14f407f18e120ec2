// The names the cluster resolves, per network, derived from the store alone
// (pure): what the responder answers and what the fast path's map holds.
//
// Per network, like Swarm's embedded DNS:
//   NAME             -> the service's VIP there (vip mode) or its running tasks' addresses (dnsrr)
//   tasks.NAME       -> its running tasks' addresses there
//   ALIAS, tasks.ALIAS (--network name=N,alias=A) -> the same as NAME, tasks.NAME
//   NAME.SLOT.TASKID and NAME.SLOT (the task's hostname) -> that task's address there
//   an attachment's name (network connect --name) -> its address
//   PTR of a VIP -> NAME; of a task's address -> NAME.SLOT.TASKID; of an attachment's -> its name
//   _PORT._tcp.NAME, _PORT._udp.NAME (PORT a published port's target or published number) -> SRV
//     records with the target port: NAME itself (vip) or each running task's NAME.SLOT (dnsrr)
// A task sees the names of the networks it is attached to and nothing else of the cluster.
import {isServing, servingNodes} from '../dataplane/desired.js'
import type {MembershipView} from '../membership/view.js'
import {taskName} from '../model/task-name.js'
import type {
  AttachmentStatus,
  Network,
  NetworkAttachment,
  NodeRecord,
  PublishedPort,
  Service,
  Task,
  TaskStatus,
} from '../model/types.js'

export interface DnsView {
  selfId: string
  nodes: NodeRecord[]
  networks: Network[]
  services: Service[]
  tasks: Task[]
  statuses: ReadonlyMap<string, Pick<TaskStatus, 'state' | 'nodeId' | 'gwIp'>>
  attachments?: NetworkAttachment[]
  attachmentStatus?: (id: string) => Pick<AttachmentStatus, 'state'> | undefined
  membership?: MembershipView
}

/** One name on one network. rotate: dnsrr's service name, whose order turns with every answer. */
export interface NameRecord {
  ips: string[]
  rotate: boolean
  /** What it is, for inspect: service (its VIP or dnsrr list), tasks, alias, task, attachment. */
  kind: 'service' | 'tasks' | 'alias' | 'task' | 'attachment'
}

export interface NetworkNames {
  id: string
  name: string
  /** Lower-case names without the trailing dot. */
  a: Map<string, NameRecord>
  /** IPv4 address -> the name its PTR gives. */
  ptr: Map<string, string>
  /** A service's name or alias -> what its SRV records are made of. */
  srv: Map<string, SrvService>
}

/** A service as SRV records see it on one network. */
export interface SrvService {
  ports: readonly PublishedPort[]
  /** Where the records point, each with its address: the name itself (vip), or each running task (dnsrr). */
  targets: {name: string; ip: string}[]
}

export interface SrvRecord {
  port: number
  target: string
  ip: string
}

export interface NameTable {
  networks: Map<string, NetworkNames>
  /** The asking task, by its gateway-bridge address (on this node) -> the networks it may see, in attachment order. */
  scopes: Map<string, string[]>
  /** Every name some network resolves: an asker out of scope gets NXDOMAIN for these, never a forward. */
  known: Set<string>
  /** The asking task's gateway-bridge address -> its id (the fast path finds its device by it). */
  askers: Map<string, string>
}

export const normalize = (name: string) => name.toLowerCase().replace(/\.$/, '')

export function buildNames(v: DnsView): NameTable {
  const nodeById = servingNodes(v)
  const nets = new Map<string, NetworkNames>()
  for (const n of v.networks) {
    if (n.driver !== 'overlay') continue
    nets.set(n.id, {id: n.id, name: n.name, a: new Map(), ptr: new Map(), srv: new Map()})
  }
  const add = (netId: string, name: string, rec: NameRecord) => {
    const nn = nets.get(netId)
    const key = normalize(name)
    // The first writer keeps a name: services before tasks before attachments, each in a stable order.
    if (!nn || nn.a.has(key)) return
    nn.a.set(key, rec)
  }
  const services = [...v.services].sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1))
  const tasksBySvc = new Map<string, Task[]>()
  for (const t of v.tasks) {
    if (!isServing(t, nodeById, v.statuses)) continue
    const l = tasksBySvc.get(t.serviceId) ?? []
    l.push(t)
    tasksBySvc.set(t.serviceId, l)
  }
  for (const l of tasksBySvc.values()) l.sort((a, b) => a.slot - b.slot || (a.id < b.id ? -1 : 1))

  for (const s of services) {
    const tasks = tasksBySvc.get(s.id) ?? []
    const dnsrr = s.endpointMode === 'dnsrr'
    for (const netId of s.networks) {
      const nn = nets.get(netId)
      if (!nn) continue
      const ips = tasks.flatMap((t) => t.attachments.filter((a) => a.networkId === netId).map((a) => a.ip))
      const vip = s.vips?.find((x) => x.networkId === netId)?.ip
      const names = [s.name, ...(s.aliases?.find((a) => a.networkId === netId)?.names ?? [])]
      const taskTargets = tasks.flatMap((t) =>
        t.attachments.filter((a) => a.networkId === netId).map((a) => ({name: normalize(taskName(t)), ip: a.ip})),
      )
      for (const [i, name] of names.entries()) {
        const kind = i === 0 ? 'service' : 'alias'
        if (dnsrr) add(netId, name, {ips, rotate: true, kind})
        else if (vip) add(netId, name, {ips: [vip], rotate: false, kind})
        add(netId, `tasks.${name}`, {ips, rotate: false, kind: 'tasks'})
        const key = normalize(name)
        // Only the service that holds the name answers its SRV questions (the first writer, as for A).
        if (nn.a.get(key)?.kind !== kind || nn.srv.has(key)) continue
        const targets = dnsrr ? taskTargets : vip ? [{name: key, ip: vip}] : []
        nn.srv.set(key, {ports: s.ports ?? [], targets})
      }
      if (vip && !dnsrr) nn.ptr.set(vip, normalize(s.name))
    }
  }
  for (const s of services) {
    for (const t of tasksBySvc.get(s.id) ?? []) {
      const short = taskName(t)
      const full = `${short}.${t.id}`
      for (const a of t.attachments) {
        add(a.networkId, full, {ips: [a.ip], rotate: false, kind: 'task'})
        add(a.networkId, short, {ips: [a.ip], rotate: false, kind: 'task'})
        nets.get(a.networkId)?.ptr.set(a.ip, normalize(full))
      }
    }
  }
  for (const x of v.attachments ?? []) {
    if (!nodeById.has(x.nodeId) || v.attachmentStatus?.(x.id)?.state !== 'attached') continue
    add(x.networkId, x.name, {ips: [x.ip], rotate: false, kind: 'attachment'})
    const nn = nets.get(x.networkId)
    if (nn && !nn.ptr.has(x.ip)) nn.ptr.set(x.ip, normalize(x.name))
  }

  const scopes = new Map<string, string[]>()
  const askers = new Map<string, string>()
  for (const t of v.tasks) {
    const st = v.statuses.get(t.id)
    if (t.nodeId !== v.selfId || t.desiredState !== 'running' || !st?.gwIp || st.nodeId !== v.selfId) continue
    askers.set(st.gwIp, t.id)
    scopes.set(
      st.gwIp,
      t.attachments.map((a) => a.networkId).filter((id) => nets.has(id)),
    )
  }
  const known = new Set<string>()
  for (const nn of nets.values()) for (const k of nn.a.keys()) known.add(k)
  return {networks: nets, scopes, known, askers}
}

/** _PORT._PROTO.NAME: a name resolve() takes for an SRV question's, whatever the type asked. */
export const SRV_NAME = /^_([^.]+)\._(tcp|udp)\.(.+)$/

/** What the responder answers for a question from a task, or 'forward' when the name is not the cluster's. */
export type Resolution =
  | {rcode: 'NOERROR'; a: string[]; rotate: boolean; name: string}
  | {rcode: 'NOERROR'; ptr: string}
  /** SRV records, with the targets' addresses for the additional section. */
  | {rcode: 'NOERROR'; srv: SrvRecord[]}
  /** A name of the cluster with no record of the asked type (AAAA, MX...): NOERROR and no answer. */
  | {rcode: 'NOERROR'; empty: true}
  | {rcode: 'NXDOMAIN'}
  | 'forward'

export function resolve(t: NameTable, asker: string, qname: string, qtype: string): Resolution {
  const name = normalize(qname)
  const scope = t.scopes.get(asker) ?? []
  if (name.endsWith('.in-addr.arpa')) {
    const ip = reverseIp(name)
    if (!ip) return 'forward'
    for (const id of scope) {
      const p = t.networks.get(id)?.ptr.get(ip)
      if (p !== undefined) return qtype === 'PTR' ? {rcode: 'NOERROR', ptr: p} : {rcode: 'NOERROR', empty: true}
    }
    return 'forward'
  }
  const srv = SRV_NAME.exec(name)
  if (srv) return resolveSrv(t, scope, srv[1]!, srv[2] as PublishedPort['protocol'], srv[3]!, qtype)
  for (const id of scope) {
    const r = t.networks.get(id)?.a.get(name)
    if (!r) continue
    if (qtype === 'A' || qtype === 'ANY') return {rcode: 'NOERROR', a: r.ips, rotate: r.rotate, name}
    return {rcode: 'NOERROR', empty: true}
  }
  return t.known.has(name) ? {rcode: 'NXDOMAIN'} : 'forward'
}

/**
 * _PORT._PROTO.NAME: NAME a service (or alias) on a network in scope, PORT one of its published
 * ports' target or published number for that protocol -> one record per target port and target,
 * the port being the target port (what the overlay reaches, at the VIP or at the task). A port it
 * does not publish: NOERROR and empty, the service is there. NAME not a service in scope:
 * NXDOMAIN when the cluster knows it (never sent upstream), else forwarded.
 */
function resolveSrv(
  t: NameTable,
  scope: string[],
  port: string,
  proto: PublishedPort['protocol'],
  svc: string,
  qtype: string,
): Resolution {
  for (const id of scope) {
    const s = t.networks.get(id)?.srv.get(svc)
    if (!s) continue
    if (qtype !== 'SRV' && qtype !== 'ANY') return {rcode: 'NOERROR', empty: true}
    const n = /^(0|[1-9][0-9]{0,4})$/.test(port) ? Number(port) : -1
    const targetPorts = [
      ...new Set(s.ports.filter((p) => p.protocol === proto && (p.target === n || p.published === n)).map((p) => p.target)),
    ].sort((a, b) => a - b)
    const records = targetPorts.flatMap((p) => s.targets.map((x) => ({port: p, target: x.name, ip: x.ip})))
    return records.length > 0 ? {rcode: 'NOERROR', srv: records} : {rcode: 'NOERROR', empty: true}
  }
  return t.known.has(svc) ? {rcode: 'NXDOMAIN'} : 'forward'
}

/** 4.3.2.1.in-addr.arpa -> 1.2.3.4 (four decimal labels only). */
export function reverseIp(name: string): string | undefined {
  const labels = name.slice(0, -'.in-addr.arpa'.length).split('.')
  if (labels.length !== 4 || !labels.every((l) => /^(0|[1-9][0-9]{0,2})$/.test(l) && Number(l) <= 255)) return undefined
  return labels.reverse().join('.')
}

/** dnsrr's order: the list turned by n, so each answer starts with the next address. */
export function rotated<T>(list: readonly T[], n: number): T[] {
  if (list.length === 0) return []
  const k = n % list.length
  return [...list.slice(k), ...list.slice(0, k)]
}
