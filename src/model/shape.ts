import {DATA_PATH_PORT_MAX, DATA_PATH_PORT_MIN, DNS_TTL_MAX, MAX_REPLICAS, VNI_MAX, VNI_MIN} from './defaults.js'
import {cidrContains, parseCidr, tryParseIpv4} from './ipv4.js'
import {sandboxSpecProblem} from './limits.js'
import {containerProblem} from './container.js'
import {stopSpecProblem} from '../tasks/stop.js'
import {healthSpecProblem} from '../tasks/health.js'
import {isTaskId} from './ids.js'
import {isValidName} from './validate.js'
import {nodeSpecProblem, placementSpecProblem} from './placement.js'

/**
 * Shape checks for the values the store holds, by kind (the key's prefix).
 * Every reader casts store values to the model's types (store.values<Task>),
 * so a value that does not have that shape must never get in: one malformed
 * task from a peer would otherwise throw in every reconcile pass on every node.
 *
 * A check returns why the value is refused, or undefined when it is fine.
 * Keys of kinds this version does not know pass: nothing here reads them, and
 * a newer node may gossip kinds an older one has not heard of yet.
 */
export function valueProblem(key: string, value: unknown): string | undefined {
  if (key === 'cluster') return clusterProblem(value)
  const slash = key.indexOf('/')
  if (slash < 0) return undefined
  const kind = key.slice(0, slash)
  const id = key.slice(slash + 1)
  const check = byKind[kind]
  if (!check) return undefined
  if (!ID.test(id)) return `${kind} id '${id}' is not a valid id`
  return keyProblem(key) ?? check(value, id)
}

/** Kinds whose ids become paths on the node: their keys are checked for tombstones too (keyProblem). */
const TASK_KINDS = new Set(['task', 'taskstatus'])

/**
 * Why a key may not be held, value or tombstone: a task's id must be a task id
 * (ids.ts), so a record, or the delete of one, never names a path it should not.
 */
export function keyProblem(key: string): string | undefined {
  const slash = key.indexOf('/')
  if (slash < 0 || !TASK_KINDS.has(key.slice(0, slash))) return undefined
  const id = key.slice(slash + 1)
  return isTaskId(id) ? undefined : `${key.slice(0, slash)} id '${id.slice(0, 64)}' is not a task id (24 hex digits)`
}

type Check = (v: unknown, id: string) => string | undefined
type Rec = Record<string, unknown>

// Ids are hex in practice; the rule is what the key space and file names allow.
const ID = /^[A-Za-z0-9_.-]{1,128}$/
// A netns name ends up in /run/netns/<name>: no slashes, no dot-names.
const NETNS = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/
// A namespace file is named by an absolute path; no '..', so it cannot point outside what it says.
const NS_PATH = /^(?!.*\/\.\.?(\/|$))\/[A-Za-z0-9_.@:+\/-]{1,4095}$/
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/
// Generous: a command may carry a script, a status message a command's stderr.
// The bound is only there so no single value can be unboundedly large.
const STR_MAX = 65536
const LIST_MAX = 4096

const byKind: Record<string, Check> = {
  node: (v, id) =>
    obj(v) ??
    sameId(v as Rec, 'id', id) ??
    str(v as Rec, 'name') ??
    ipv4(v as Rec, 'addr') ??
    int(v as Rec, 'gossipPort', 1, 65535) ??
    oneOf(v as Rec, 'role', ['manager', 'worker']) ??
    oneOf(v as Rec, 'state', ['ready', 'down', 'left']) ??
    int(v as Rec, 'mtu', 68, 1 << 20) ??
    time(v as Rec, 'joinedAt') ??
    optional(v as Rec, 'managerStatus', (r, k) => oneOf(r, k, ['leader', 'reachable'])),
  network: (v, id) => obj(v) ?? sameId(v as Rec, 'id', id) ?? networkProblem(v as Rec),
  service: (v, id) => obj(v) ?? sameId(v as Rec, 'id', id) ?? serviceProblem(v as Rec),
  task: (v, id) => obj(v) ?? sameId(v as Rec, 'id', id) ?? taskProblem(v as Rec),
  taskstatus: (v, id) => obj(v) ?? sameId(v as Rec, 'taskId', id) ?? statusProblem(v as Rec),
  attachment: (v, id) => obj(v) ?? sameId(v as Rec, 'id', id) ?? attachmentProblem(v as Rec),
  nodespec: (v, id) => nodeSpecProblem(v, id),
  attachmentstatus: (v, id) => obj(v) ?? sameId(v as Rec, 'id', id) ?? attachmentStatusProblem(v as Rec),
  drained: (v) => obj(v) ?? drainedProblem((v as Rec).tasks),
}

function drainedProblem(v: unknown): string | undefined {
  if (!Array.isArray(v) || v.length > LIST_MAX || !v.every((x) => typeof x === 'string' && isTaskId(x)))
    return "'tasks' is not a list of task ids"
  return undefined
}

function attachmentProblem(r: Rec): string | undefined {
  return (
    name(r, 'name') ??
    str(r, 'networkId') ??
    str(r, 'nodeId') ??
    match(r, 'netns', NS_PATH) ??
    ipv4(r, 'ip') ??
    match(r, 'mac', MAC) ??
    time(r, 'createdAt')
  )
}

function attachmentStatusProblem(r: Rec): string | undefined {
  return (
    str(r, 'nodeId') ??
    oneOf(r, 'state', ['attached', 'failed', 'gone']) ??
    (r.netnsIno === undefined ? undefined : int(r, 'netnsIno', 1, Number.MAX_SAFE_INTEGER)) ??
    (r.message === undefined ? undefined : str(r, 'message')) ??
    time(r, 'updatedAt')
  )
}

function clusterProblem(v: unknown): string | undefined {
  const r = v as Rec
  const shape =
    obj(v) ??
    str(r, 'id') ??
    time(r, 'createdAt') ??
    int(r, 'dataPathPort', DATA_PATH_PORT_MIN, DATA_PATH_PORT_MAX) ??
    cidr(r, 'defaultAddrPool') ??
    int(r, 'subnetSize', 1, 32) ??
    optional(r, 'store', (x, k) => oneOf(x, k, ['etcd'])) ??
    dnsSpecProblem(r.dns)
  if (shape) return shape
  if ((r.subnetSize as number) < parseCidr(r.defaultAddrPool as string).prefix)
    return `subnetSize /${r.subnetSize} is larger than the pool ${r.defaultAddrPool}`
  return undefined
}

function dnsSpecProblem(v: unknown): string | undefined {
  if (v === undefined) return undefined
  const r = v as Rec
  const p = obj(v) ?? (r.ttl === undefined ? undefined : int(r, 'ttl', 0, DNS_TTL_MAX))
  if (p) return `dns: ${p}`
  if (r.servers === undefined) return undefined
  const s = r.servers
  if (!Array.isArray(s) || s.length > 8 || !s.every((x) => typeof x === 'string' && tryParseIpv4(x) !== undefined))
    return "dns: 'servers' is not a list of IPv4 addresses"
  return undefined
}

function networkProblem(r: Rec): string | undefined {
  const shape =
    name(r, 'name') ??
    oneOf(r, 'driver', ['overlay', 'bridge']) ??
    oneOf(r, 'scope', ['swarm', 'local']) ??
    cidr(r, 'subnet') ??
    ipv4(r, 'gateway') ??
    bool(r, 'attachable') ??
    bool(r, 'ingress') ??
    (r.internal === undefined ? undefined : bool(r, 'internal')) ??
    time(r, 'createdAt') ??
    (r.driver === 'overlay' || r.vni !== undefined ? int(r, 'vni', VNI_MIN, VNI_MAX) : undefined)
  if (shape) return shape
  if (!cidrContains(parseCidr(r.subnet as string), tryParseIpv4(r.gateway as string)!))
    return `gateway ${r.gateway} is outside ${r.subnet}`
  return undefined
}

function serviceProblem(r: Rec): string | undefined {
  const shape = name(r, 'name') ?? strList(r, 'networks') ?? strList(r, 'command') ?? time(r, 'createdAt') ?? time(r, 'updatedAt')
  if (shape) return shape
  const ep =
    endpointProblem(r) ??
    portsProblem(r) ??
    aliasesProblem(r) ??
    containerProblem(r) ??
    stopSpecProblem(r) ??
    healthSpecProblem(r) ??
    placementSpecProblem(r)
  if (ep) return ep
  const m = r.mode
  if (typeof m !== 'object' || m === null || Array.isArray(m)) return "'mode' is not an object"
  const mode = m as Rec
  if ('global' in mode)
    return mode.global === true && Object.keys(mode).length === 1 ? sandboxSpecProblem(r) : "'mode' is malformed"
  return sandboxSpecProblem(r) ?? int(mode, 'replicas', 0, MAX_REPLICAS)
}

function endpointProblem(r: Rec): string | undefined {
  if (r.endpointMode !== undefined) {
    const p = oneOf(r, 'endpointMode', ['vip', 'dnsrr'])
    if (p) return p
  }
  if (r.vips === undefined) return undefined
  const v = r.vips
  if (!Array.isArray(v) || v.length > LIST_MAX) return "'vips' is not a list"
  if (r.endpointMode === 'dnsrr' && v.length > 0) return 'a dnsrr service has no VIPs'
  const nets = new Set<unknown>()
  for (const [i, x] of v.entries()) {
    const p = obj(x) ?? str(x as Rec, 'networkId') ?? ipv4(x as Rec, 'ip')
    if (p) return `vip #${i}: ${p}`
    const netId = (x as Rec).networkId
    if (nets.has(netId)) return `vip #${i}: a second VIP on network ${String(netId)}`
    nets.add(netId)
  }
  return undefined
}

/** Published ports: each well-formed, none twice, no ingress port on a dnsrr service (contracts: PublishedPort). */
function portsProblem(r: Rec): string | undefined {
  if (r.ports === undefined) return undefined
  const v = r.ports
  if (!Array.isArray(v) || v.length > LIST_MAX) return "'ports' is not a list"
  const seen = new Set<string>()
  for (const [i, x] of v.entries()) {
    const p =
      obj(x) ??
      oneOf(x as Rec, 'protocol', ['tcp', 'udp']) ??
      int(x as Rec, 'target', 1, 65535) ??
      int(x as Rec, 'published', 1, 65535) ??
      oneOf(x as Rec, 'mode', ['ingress', 'host'])
    if (p) return `port #${i}: ${p}`
    const {published, protocol, mode} = x as Rec
    const key = `${String(published)}/${String(protocol)}`
    if (seen.has(key)) return `port #${i}: ${key} a second time`
    seen.add(key)
    if (mode === 'ingress' && r.endpointMode === 'dnsrr') return `port #${i}: a dnsrr service has no ingress ports`
  }
  return undefined
}

function aliasesProblem(r: Rec): string | undefined {
  if (r.aliases === undefined) return undefined
  const v = r.aliases
  if (!Array.isArray(v) || v.length > LIST_MAX) return "'aliases' is not a list"
  for (const [i, x] of v.entries()) {
    const p = obj(x) ?? str(x as Rec, 'networkId') ?? strList(x as Rec, 'names')
    if (p) return `alias #${i}: ${p}`
    if (!((x as Rec).names as string[]).every((n) => isValidName(n))) return `alias #${i}: a name is not valid`
  }
  return undefined
}

function taskProblem(r: Rec): string | undefined {
  const shape =
    str(r, 'serviceId') ??
    name(r, 'serviceName') ??
    int(r, 'slot', 0, MAX_REPLICAS) ??
    str(r, 'nodeId') ??
    oneOf(r, 'desiredState', ['running', 'shutdown']) ??
    time(r, 'createdAt')
  if (shape) return shape
  const a = r.attachments
  if (!Array.isArray(a) || a.length > LIST_MAX) return "'attachments' is not a list"
  for (const [i, x] of a.entries()) {
    const p = obj(x) ?? str(x as Rec, 'networkId') ?? ipv4(x as Rec, 'ip') ?? match(x as Rec, 'mac', MAC)
    if (p) return `attachment #${i}: ${p}`
  }
  return undefined
}

function statusProblem(r: Rec): string | undefined {
  return (
    str(r, 'nodeId') ??
    oneOf(r, 'state', ['new', 'starting', 'running', 'failed', 'shutdown']) ??
    (r.pid === undefined ? undefined : int(r, 'pid', 1, 2 ** 22)) ??
    (r.netns === undefined ? undefined : match(r, 'netns', NETNS)) ??
    int(r, 'restarts', 0, Number.MAX_SAFE_INTEGER) ??
    (r.message === undefined ? undefined : str(r, 'message')) ??
    (r.gwIp === undefined ? undefined : ipv4(r, 'gwIp')) ??
    (r.health === undefined ? undefined : oneOf(r, 'health', ['starting', 'healthy', 'unhealthy'])) ??
    time(r, 'updatedAt')
  )
}

function obj(v: unknown): string | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? undefined : 'not an object'
}

function sameId(r: Rec, k: string, id: string): string | undefined {
  return r[k] === id ? undefined : `'${k}' does not match the key`
}

function str(r: Rec, k: string): string | undefined {
  const v = r[k]
  return typeof v === 'string' && v.length > 0 && v.length <= STR_MAX ? undefined : `'${k}' is not a string`
}

function name(r: Rec, k: string): string | undefined {
  const v = r[k]
  return typeof v === 'string' && isValidName(v) ? undefined : `'${k}' is not a valid name`
}

function match(r: Rec, k: string, re: RegExp): string | undefined {
  const v = r[k]
  return typeof v === 'string' && re.test(v) ? undefined : `'${k}' is malformed`
}

function int(r: Rec, k: string, min: number, max: number): string | undefined {
  const v = r[k]
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max
    ? undefined
    : `'${k}' is not an integer ${min}-${max}`
}

function time(r: Rec, k: string): string | undefined {
  return int(r, k, 0, Number.MAX_SAFE_INTEGER)
}

function bool(r: Rec, k: string): string | undefined {
  return typeof r[k] === 'boolean' ? undefined : `'${k}' is not a boolean`
}

function optional(r: Rec, k: string, check: (r: Rec, k: string) => string | undefined): string | undefined {
  return r[k] === undefined ? undefined : check(r, k)
}

function oneOf(r: Rec, k: string, allowed: string[]): string | undefined {
  const v = r[k]
  return typeof v === 'string' && allowed.includes(v) ? undefined : `'${k}' is not one of ${allowed.join(', ')}`
}

function ipv4(r: Rec, k: string): string | undefined {
  const v = r[k]
  return typeof v === 'string' && tryParseIpv4(v) !== undefined ? undefined : `'${k}' is not an IPv4 address`
}

function cidr(r: Rec, k: string): string | undefined {
  const v = r[k]
  if (typeof v !== 'string') return `'${k}' is not a CIDR`
  try {
    parseCidr(v)
    return undefined
  } catch {
    return `'${k}' is not a CIDR`
  }
}

function strList(r: Rec, k: string): string | undefined {
  const v = r[k]
  return Array.isArray(v) && v.length <= LIST_MAX && v.every((x) => typeof x === 'string' && x.length <= STR_MAX)
    ? undefined
    : `'${k}' is not a list of strings`
}
