/**
 * The services file of `swarmnet service deploy -f FILE` (and the GitHub Action's `services`
 * input): YAML, read and checked in full before anything is created. Every problem is one
 * line naming the file, the service and the key, so a person fixes it without guessing.
 *
 *   networks:                 # optional: created when missing, used as they are when present
 *     web: {attachable: true}
 *   services:                 # a list of services with a name (or a map keyed by name)
 *     - name: whoami
 *       replicas: 3
 *       networks: [web]
 *       publish: ["8080:80", "53:53/udp", {published: 9000, target: 90, protocol: tcp, mode: host}]
 */
import {LineCounter, isMap, parseDocument} from 'yaml'
import {sandboxSpec} from '../model/limits.js'
import {checkName, checkServiceMode, checkEndpointMode} from '../model/validate.js'
import {UserError} from '../model/errors.js'
import {parseCidr} from '../model/ipv4.js'
import {MAX_REPLICAS, NETWORK_MTU_MAX, NETWORK_MTU_MIN} from '../model/defaults.js'

export type FilePort = {protocol: 'tcp' | 'udp'; target: number; published?: number; mode: 'ingress' | 'host'}

/** A service as `service create` takes it (the agent API's body), checked. */
export type FileService = {
  name: string
  mode: 'replicated' | 'global'
  replicas: number
  networks: string[]
  command: string[]
  endpointMode: 'vip' | 'dnsrr'
  ports: FilePort[]
  user?: string
  limitMemory?: string
  limitCpu?: string
}

export type FileNetwork = {name: string; subnet?: string; attachable: boolean; mtu?: number}

export type ServicesFile = {networks: FileNetwork[]; services: FileService[]}

const TOP_KEYS = ['services', 'networks'] as const
const SERVICE_KEYS = [
  'name',
  'mode',
  'replicas',
  'networks',
  'command',
  'endpoint_mode',
  'publish',
  'user',
  'limit_memory',
  'limit_cpu',
] as const
const NETWORK_KEYS = ['subnet', 'attachable', 'mtu', 'driver'] as const
const PORT_KEYS = ['published', 'target', 'protocol', 'mode'] as const
/** Keys a compose or stack file has that swarmnet does not do: said so, not "unknown". */
const NOT_SUPPORTED: Record<string, string> = {
  image: 'tasks run a command of the node, not an image: use command',
  env: 'environment variables for tasks are not supported yet',
  environment: 'environment variables for tasks are not supported yet',
  ports: 'published ports are spelled publish',
  deploy: 'write mode and replicas on the service itself',
}

type Where = {file: string; service?: string; key?: string}

function fail(at: Where, message: string): never {
  const parts = [at.file]
  if (at.service !== undefined) parts.push(`service '${at.service}'`)
  if (at.key !== undefined) parts.push(at.key)
  throw new UserError(`${parts.join(': ')}: ${message}`)
}

/** Re-raises a model check's UserError with the place it came from. */
function within<T>(at: Where, check: () => T): T {
  try {
    return check()
  } catch (e) {
    if (e instanceof UserError) fail(at, e.message)
    throw e
  }
}

const show = (v: unknown): string => (typeof v === 'string' ? `'${v}'` : (JSON.stringify(v) ?? String(v)))

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function checkKeys(at: Where, obj: Record<string, unknown>, allowed: readonly string[], prefix = ''): void {
  for (const k of Object.keys(obj)) {
    if (allowed.includes(k)) continue
    const why = NOT_SUPPORTED[k]
    fail({...at, key: prefix + k}, why ? `not supported: ${why}` : `unknown key (known: ${allowed.join(', ')})`)
  }
}

function stringList(at: Where, v: unknown): string[] {
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string' && typeof x !== 'number'))
    fail(at, `must be a list of strings, not ${show(v)}`)
  return (v as (string | number)[]).map(String)
}

function optString(at: Where, v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined
  if (typeof v === 'string' || typeof v === 'number') return String(v)
  fail(at, `must be a string, not ${show(v)}`)
}

function portNumber(at: Where, what: string, v: unknown): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^[0-9]+$/.test(v) ? Number(v) : NaN
  if (!Number.isInteger(n) || n < 1 || n > 65535) fail(at, `invalid ${what} port ${show(v)}: must be 1-65535`)
  return n
}

function protocol(at: Where, v: unknown): 'tcp' | 'udp' {
  if (v === undefined || v === null) return 'tcp'
  if (v === 'tcp' || v === 'udp') return v
  fail(at, `invalid protocol ${show(v)}: must be tcp or udp`)
}

function publishMode(at: Where, v: unknown): 'ingress' | 'host' {
  if (v === undefined || v === null) return 'ingress'
  if (v === 'ingress' || v === 'host') return v
  fail(at, `invalid mode ${show(v)}: must be ingress or host`)
}

/** "8080:80", "80" (published port allocated), "53:53/udp"; Docker's short form without an address. */
function shortPort(at: Where, text: string): FilePort {
  const m = /^(?:([^:/]*):)?([^:/]*)(?:\/(.*))?$/.exec(text)
  if (!m) fail(at, `invalid publish ${show(text)}: write PUBLISHED:TARGET[/PROTOCOL], such as 8080:80 or 53:53/udp`)
  const port: FilePort = {protocol: protocol(at, m[3]), target: portNumber(at, 'target', m[2]), mode: 'ingress'}
  if (m[1] !== undefined) port.published = portNumber(at, 'published', m[1])
  return port
}

function longPort(at: Where, v: Record<string, unknown>): FilePort {
  checkKeys(at, v, PORT_KEYS, `${at.key}.`)
  if (v.target === undefined) fail(at, 'target is missing')
  const port: FilePort = {
    protocol: protocol(at, v.protocol),
    target: portNumber(at, 'target', v.target),
    mode: publishMode(at, v.mode),
  }
  if (v.published !== undefined && v.published !== null) port.published = portNumber(at, 'published', v.published)
  return port
}

function ports(at: Where, v: unknown): FilePort[] {
  if (v === undefined || v === null) return []
  if (!Array.isArray(v)) fail(at, `must be a list, such as ["8080:80"], not ${show(v)}`)
  return v.map((p, i) => {
    const here = {...at, key: `publish[${i}]`}
    if (typeof p === 'number') return {protocol: 'tcp', target: portNumber(here, 'target', p), mode: 'ingress'}
    if (typeof p === 'string') return shortPort(here, p)
    if (isRecord(p)) return longPort(here, p)
    fail(here, `must be "PUBLISHED:TARGET[/PROTOCOL]" or {published, target, protocol, mode}, not ${show(p)}`)
  })
}

function service(file: string, raw: unknown, index: number, keyedName?: string): FileService {
  const anon: Where = {file, key: keyedName === undefined ? `services[${index}]` : `services.${keyedName}`}
  if (!isRecord(raw)) {
    if (keyedName !== undefined && (raw === null || raw === undefined)) raw = {}
    else fail(anon, `must be a mapping of keys (name, replicas, ...), not ${show(raw)}`)
  }
  const r = raw as Record<string, unknown>
  let name = keyedName
  if (r.name !== undefined) {
    if (typeof r.name !== 'string') fail({...anon, key: `${anon.key}.name`}, `must be a string, not ${show(r.name)}`)
    if (keyedName !== undefined && r.name !== keyedName)
      fail({...anon, key: `${anon.key}.name`}, `'${r.name}' differs from the key it is under`)
    name = r.name
  }
  if (name === undefined) fail(anon, 'name is missing')
  const at: Where = {file, service: name}
  within({...at, key: 'name'}, () => checkName('service', name))
  checkKeys(at, r, SERVICE_KEYS)
  const mode = within({...at, key: 'mode'}, () => checkServiceMode(r.mode))
  if (mode === 'global' && r.replicas !== undefined && r.replicas !== null)
    fail({...at, key: 'replicas'}, 'cannot be used with mode global')
  const replicas = r.replicas === undefined || r.replicas === null ? 1 : (r.replicas as number)
  if (!Number.isInteger(replicas) || replicas < 0 || replicas > MAX_REPLICAS)
    fail({...at, key: 'replicas'}, `invalid replica count ${show(r.replicas)}: must be a whole number 0-${MAX_REPLICAS}`)
  const networks = r.networks === undefined || r.networks === null ? [] : stringList({...at, key: 'networks'}, r.networks)
  for (const n of networks) {
    within({...at, key: 'networks'}, () => checkName('network', n))
    if (n === 'ingress') fail({...at, key: 'networks'}, 'the ingress network is attached through publish, not networks')
  }
  if (new Set(networks).size !== networks.length) fail({...at, key: 'networks'}, 'a network is listed twice')
  let command: string[] = []
  if (r.command !== undefined && r.command !== null) {
    // A string would have to be split like a shell does; a list says exactly what runs.
    if (typeof r.command === 'string')
      fail({...at, key: 'command'}, `must be a list, such as [sleep, infinity], not the string ${show(r.command)}`)
    command = stringList({...at, key: 'command'}, r.command)
  }
  const endpointMode = within({...at, key: 'endpoint_mode'}, () => checkEndpointMode(r.endpoint_mode))
  const published = ports({...at, key: 'publish'}, r.publish)
  if (endpointMode === 'dnsrr' && published.some((p) => p.mode === 'ingress'))
    fail({...at, key: 'publish'}, 'an ingress port needs endpoint_mode vip (the routing mesh balances over the VIP)')
  const user = optString({...at, key: 'user'}, r.user)
  const limitMemory = optString({...at, key: 'limit_memory'}, r.limit_memory)
  const limitCpu = optString({...at, key: 'limit_cpu'}, r.limit_cpu)
  // The same checks service create makes, here so nothing is created before they pass.
  within(at, () => sandboxSpec({user, limitMemory, limitCpu}))
  return {
    name,
    mode,
    replicas: mode === 'global' ? 0 : replicas,
    networks,
    command,
    endpointMode,
    ports: published,
    ...(user !== undefined ? {user} : {}),
    ...(limitMemory !== undefined ? {limitMemory} : {}),
    ...(limitCpu !== undefined ? {limitCpu} : {}),
  }
}

function network(file: string, name: string, raw: unknown): FileNetwork {
  const at: Where = {file, key: `networks.${name}`}
  within(at, () => checkName('network', name))
  if (name === 'ingress') fail(at, 'the ingress network is made by swarmnet, not by a file')
  if (raw === null || raw === undefined) return {name, attachable: false}
  if (!isRecord(raw)) fail(at, `must be a mapping (subnet, attachable, mtu) or empty, not ${show(raw)}`)
  checkKeys(at, raw, NETWORK_KEYS, `networks.${name}.`)
  if (raw.driver !== undefined && raw.driver !== 'overlay')
    fail({...at, key: `${at.key}.driver`}, `invalid driver ${show(raw.driver)}: only overlay`)
  const net: FileNetwork = {name, attachable: false}
  if (raw.subnet !== undefined && raw.subnet !== null) {
    if (typeof raw.subnet !== 'string') fail({...at, key: `${at.key}.subnet`}, `must be a CIDR string, not ${show(raw.subnet)}`)
    within({...at, key: `${at.key}.subnet`}, () => parseCidr(raw.subnet as string))
    net.subnet = raw.subnet
  }
  if (raw.attachable !== undefined && raw.attachable !== null) {
    if (typeof raw.attachable !== 'boolean')
      fail({...at, key: `${at.key}.attachable`}, `must be true or false, not ${show(raw.attachable)}`)
    net.attachable = raw.attachable
  }
  if (raw.mtu !== undefined && raw.mtu !== null) {
    const m = raw.mtu
    if (typeof m !== 'number' || !Number.isInteger(m) || m < NETWORK_MTU_MIN || m > NETWORK_MTU_MAX)
      fail({...at, key: `${at.key}.mtu`}, `invalid MTU ${show(m)}: must be ${NETWORK_MTU_MIN}-${NETWORK_MTU_MAX}`)
    net.mtu = m
  }
  return net
}

/** Parses and checks a services file's text; `file` names it in every error. */
export function parseServicesFile(file: string, text: string): ServicesFile {
  const lines = new LineCounter()
  const doc = parseDocument(text, {uniqueKeys: true, prettyErrors: false, lineCounter: lines})
  const err = doc.errors[0]
  if (err) {
    const pos = lines.linePos(err.pos[0])
    const first = err.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')
    throw new UserError(`${file}${pos ? `:${pos.line}:${pos.col}` : ''}: not valid YAML: ${first}`)
  }
  if (doc.contents !== null && !isMap(doc.contents))
    fail({file}, 'must be a mapping with services (and optionally networks) at the top')
  let top: unknown
  try {
    top = doc.toJS({maxAliasCount: 100})
  } catch (e) {
    // yaml refuses alias bombs with a ReferenceError: the user's file, not our bug
    throw new UserError(`${file}: not valid YAML: ${(e as Error).message}`)
  }
  if (!isRecord(top)) fail({file}, 'is empty: it needs a services list')
  checkKeys({file}, top, TOP_KEYS)

  const networks: FileNetwork[] = []
  if (top.networks !== undefined && top.networks !== null) {
    if (!isRecord(top.networks)) fail({file, key: 'networks'}, 'must be a mapping of network names')
    for (const [name, raw] of Object.entries(top.networks)) networks.push(network(file, name, raw))
  }

  const rawServices = top.services
  let services: FileService[]
  if (Array.isArray(rawServices)) services = rawServices.map((s, i) => service(file, s, i))
  else if (isRecord(rawServices)) services = Object.entries(rawServices).map(([name, s], i) => service(file, s, i, name))
  else fail({file, key: 'services'}, rawServices === undefined ? 'is missing' : 'must be a list of services')
  if (services.length === 0) fail({file, key: 'services'}, 'is empty')
  const seen = new Set<string>()
  for (const s of services) {
    if (seen.has(s.name)) fail({file, service: s.name}, 'name used twice in this file')
    seen.add(s.name)
  }
  // (published, protocol) is unique across the cluster for ingress ports: two in one file never fit.
  const ingress = new Map<string, string>()
  for (const s of services)
    for (const p of s.ports) {
      if (p.mode !== 'ingress' || p.published === undefined) continue
      const k = `${p.published}/${p.protocol}`
      const other = ingress.get(k)
      if (other !== undefined)
        fail({file, service: s.name, key: 'publish'}, `port ${k} is already published by service '${other}' in this file`)
      ingress.set(k, s.name)
    }
  return {networks, services}
}
