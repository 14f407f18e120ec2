// Published ports as a person writes them: the long form of --publish
// (published=P,target=T,protocol=udp,mode=host) and the short form of -p (P:T/udp, or T alone),
// and a port to remove (P or P/udp). Pure parsing: every refusal is one line naming what was typed.
import {UserError} from './errors.js'
import type {PortProtocol, PublishMode, PublishedPort} from './types.js'
import {expandPortRanges, parsePortRange} from './port-ranges.js'

/** Where a published port comes from when the user names none, as in Swarm. */
export const PUBLISHED_PORT_MIN = 30000
export const PUBLISHED_PORT_MAX = 32767

export const PORT_PROTOCOLS: readonly PortProtocol[] = ['tcp', 'udp']
export const PUBLISH_MODES: readonly PublishMode[] = ['ingress', 'host']

/** What was asked for: published absent means "allocate one". */
export type PortRequest = {published?: number; target: number; protocol: PortProtocol; mode: PublishMode}

/** A published port by its identity, as publish-rm and unpublish name it. */
export type PortRef = {published: number; protocol: PortProtocol}

const LONG_KEYS = ['published', 'target', 'protocol', 'mode'] as const
type LongKey = (typeof LONG_KEYS)[number]

const LONG_HINT = 'published=P,target=T[,protocol=tcp|udp][,mode=ingress|host]'
const SHORT_HINT = 'P:T[/udp] or T[/udp]'

/**
 * One --publish / -p value, either form (as Docker takes both on one flag): a value with '='
 * is the long form, anything else the short one; P and T may be ranges (src/model/port-ranges.ts),
 * so one value may stand for several ports. `what` names the flag in the refusal.
 */
export function parsePublishes(spec: string, what = '--publish'): PortRequest[] {
  const fail = (why: string): never => {
    throw new UserError(`invalid ${what} '${spec}': ${why}`)
  }
  if (spec.length === 0) return fail(`empty: give ${SHORT_HINT} or ${LONG_HINT}`)
  const r = spec.includes('=') ? parseLong(spec, fail) : parseShort(spec, fail)
  const port = (name: string, text: string) => portNumber(name, text, fail)
  const published = r.published === undefined ? undefined : parsePortRange(r.publishedName, r.published, port, fail)
  const target = parsePortRange(r.targetName, r.target, port, fail)
  return expandPortRanges(published, target, fail).map((p) => ({...p, protocol: r.protocol, mode: r.mode}))
}

/** One value that must stand for one port (`service publish PORT`): a range is refused. */
export function parsePublish(spec: string, what = '--publish'): PortRequest {
  const out = parsePublishes(spec, what)
  if (out.length !== 1) throw new UserError(`invalid ${what} '${spec}': one port here, not a range`)
  return out[0]!
}

/** A value as typed, its ports still text (each a port or a range). */
type RawPublish = {
  published?: string
  publishedName: string
  target: string
  targetName: string
  protocol: PortProtocol
  mode: PublishMode
}

function parseLong(spec: string, fail: (why: string) => never): RawPublish {
  const fields = new Map<LongKey, string>()
  for (const field of spec.split(',')) {
    if (field.length === 0) fail(`an empty field (a stray comma): expected ${LONG_HINT}`)
    const eq = field.indexOf('=')
    if (eq < 0)
      fail(
        `'${field}' is not key=value: the long form is ${LONG_HINT}` +
          (/[:/]/.test(field) ? `; the short form ${SHORT_HINT} goes in a --publish of its own` : ''),
      )
    const key = field.slice(0, eq)
    const value = field.slice(eq + 1)
    if (!(LONG_KEYS as readonly string[]).includes(key)) fail(`unknown key '${key}': the keys are ${LONG_KEYS.join(', ')}`)
    if (fields.has(key as LongKey)) fail(`'${key}' is given twice`)
    if (value.length === 0) fail(`'${key}' has no value`)
    fields.set(key as LongKey, value)
  }
  const target = fields.get('target')
  if (target === undefined) fail(`'target' is missing: the long form is ${LONG_HINT}`)
  const published = fields.get('published')
  return {
    ...(published === undefined ? {} : {published}),
    publishedName: 'published',
    target: target!,
    targetName: 'target',
    protocol: protocolOf(fields.get('protocol') ?? 'tcp', fail),
    mode: modeOf(fields.get('mode') ?? 'ingress', fail),
  }
}

function parseShort(spec: string, fail: (why: string) => never): RawPublish {
  if (spec.includes(',')) fail('one port per value: give -p once for each port')
  const slash = spec.indexOf('/')
  const ports = slash < 0 ? spec : spec.slice(0, slash)
  const protocol = slash < 0 ? 'tcp' : protocolOf(spec.slice(slash + 1), fail)
  const parts = ports.split(':')
  if (parts.length > 2) fail('a host address (IP:P:T) cannot be given: a published port answers on every address of the node')
  const names = {publishedName: 'published port', targetName: 'target port'}
  if (parts.length === 2) {
    if (parts[0] === '') fail(`the published port before ':' is empty: give ${SHORT_HINT}`)
    return {published: parts[0]!, target: parts[1]!, ...names, protocol, mode: 'ingress'}
  }
  return {target: parts[0]!, ...names, protocol, mode: 'ingress'}
}

/** A port to remove: P or P/tcp or P/udp (tcp when no protocol is written, as everywhere else). */
export function parsePortRef(spec: string, what = '--publish-rm'): PortRef {
  const fail = (why: string): never => {
    throw new UserError(`invalid ${what} '${spec}': ${why}`)
  }
  const m = /^([^/]*)(?:\/(.*))?$/.exec(spec)!
  if (spec.includes(':') || spec.includes('='))
    fail('give the published port alone, P or P/udp (the target is not needed to remove it)')
  return {published: portNumber('published port', m[1]!, fail), protocol: protocolOf(m[2] ?? 'tcp', fail)}
}

/** Only digits, 1-65535: no signs, spaces, hex or exponents (Number() would take those). */
function portNumber(name: string, text: string, fail: (why: string) => never): number {
  if (text === '') fail(`${name} is empty: it must be a port number 1-65535`)
  if (!/^[0-9]{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 65535)
    fail(`${name} '${text}' is not a port number 1-65535`)
  return Number(text)
}

function protocolOf(text: string, fail: (why: string) => never): PortProtocol {
  if ((PORT_PROTOCOLS as readonly string[]).includes(text)) return text as PortProtocol
  if (text === 'sctp') fail('sctp is not supported: the protocol is tcp or udp')
  return fail(`unknown protocol '${text}': tcp or udp`)
}

function modeOf(text: string, fail: (why: string) => never): PublishMode {
  if ((PUBLISH_MODES as readonly string[]).includes(text)) return text as PublishMode
  return fail(`unknown mode '${text}': ingress (every node) or host (only the nodes of the tasks)`)
}

/**
 * A port request as the API receives it (JSON from any client): checked field by field, so a
 * request is refused whole with one line rather than stored half-formed.
 */
export function checkPortRequest(v: unknown, i: number): PortRequest {
  const fail = (why: string): never => {
    throw new UserError(`port #${i + 1}: ${why}`)
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return fail('not an object')
  const r = v as Record<string, unknown>
  for (const k of Object.keys(r)) if (!(LONG_KEYS as readonly string[]).includes(k)) fail(`unknown key '${k}'`)
  const port = (k: string): number => {
    const n = r[k]
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 65535) fail(`'${k}' is not a port number 1-65535`)
    return n as number
  }
  const protocol = r.protocol ?? 'tcp'
  const mode = r.mode ?? 'ingress'
  if (typeof protocol !== 'string' || !(PORT_PROTOCOLS as readonly string[]).includes(protocol))
    fail(`'protocol' is not tcp or udp`)
  if (typeof mode !== 'string' || !(PUBLISH_MODES as readonly string[]).includes(mode)) fail(`'mode' is not ingress or host`)
  return {
    ...(r.published === undefined || r.published === null ? {} : {published: port('published')}),
    target: port('target'),
    protocol: protocol as PortProtocol,
    mode: mode as PublishMode,
  }
}

export function checkPortRef(v: unknown, i: number): PortRef {
  const fail = (why: string): never => {
    throw new UserError(`port to remove #${i + 1}: ${why}`)
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return fail('not an object')
  const r = v as Record<string, unknown>
  for (const k of Object.keys(r)) if (k !== 'published' && k !== 'protocol') fail(`unknown key '${k}'`)
  const n = r.published
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 65535) fail(`'published' is not a port number 1-65535`)
  const protocol = r.protocol ?? 'tcp'
  if (typeof protocol !== 'string' || !(PORT_PROTOCOLS as readonly string[]).includes(protocol))
    fail(`'protocol' is not tcp or udp`)
  return {published: n as number, protocol: protocol as PortProtocol}
}

/** 8080/tcp: how a port is named in messages. */
export const portKey = (p: {published: number; protocol: PortProtocol}) => `${p.published}/${p.protocol}`

/** Docker's `service ls` form of an ingress port: *:8080->80/tcp. */
export const formatIngressPort = (p: PublishedPort) => `*:${p.published}->${p.target}/${p.protocol}`

/** Any port, one word: ingress as Docker's `service ls`, host mode as Docker's `ps` shows a bound port, marked. */
export const formatPort = (p: PublishedPort) =>
  p.mode === 'ingress' ? formatIngressPort(p) : `${p.published}->${p.target}/${p.protocol} (host)`

/** The order ports are shown in: protocol, then published, as Docker sorts them. */
export function sortPorts<T extends PublishedPort>(ports: readonly T[]): T[] {
  return [...ports].sort((a, b) => (a.protocol === b.protocol ? a.published - b.published : a.protocol < b.protocol ? -1 : 1))
}
