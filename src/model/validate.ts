import {DATA_PATH_PORT_MAX, DATA_PATH_PORT_MIN} from './defaults.js'
import {UserError} from './errors.js'

// Docker's own rule for object names (daemon/names: RestrictedNamePattern).
const NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/
const NAME_MAX = 63

export function checkName(kind: string, name: string): string {
  if (name.length === 0) throw new UserError(`${kind} name must not be empty`)
  if (name.length > NAME_MAX) {
    throw new UserError(`invalid ${kind} name '${name}': at most ${NAME_MAX} characters`)
  }
  if (!NAME.test(name)) {
    throw new UserError(`invalid ${kind} name '${name}': must match [a-zA-Z0-9][a-zA-Z0-9_.-]*`)
  }
  return name
}

/**
 * A network alias is a DNS name the tasks ask for: Docker's name rule, and every label between
 * dots non-empty (`a..b` could never be asked). `tasks.` is refused at the start: those names are
 * each service's task list, which an alias would shadow.
 */
export function checkAlias(name: string): string {
  checkName('alias', name)
  if (
    name
      .replace(/\.$/, '')
      .split('.')
      .some((l) => l === '')
  ) {
    throw new UserError(`invalid alias name '${name}': a label between dots is empty`)
  }
  if (/^tasks\./i.test(name)) throw new UserError(`invalid alias name '${name}': names under 'tasks.' are task lists`)
  return name
}

export function isValidName(name: string): boolean {
  return name.length <= NAME_MAX && NAME.test(name)
}

/** Accepts numbers and numeric strings (flags arrive as strings). */
export function checkPort(what: string, value: number | string, min = 1, max = 65535): number {
  const n = typeof value === 'number' ? value : /^[0-9]+$/.test(value) ? Number(value) : NaN
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new UserError(`invalid ${what} '${value}': must be a port number ${min}-${max}`)
  }
  return n
}

export function checkDataPathPort(value: number | string): number {
  return checkPort('data path port', value, DATA_PATH_PORT_MIN, DATA_PATH_PORT_MAX)
}

export function checkMtu(value: number): number {
  if (!Number.isInteger(value) || value < 576 || value > 65535) {
    throw new UserError(`invalid MTU '${value}': must be 576-65535`)
  }
  return value
}

export const SERVICE_MODES = ['replicated', 'global'] as const
export type ServiceModeName = (typeof SERVICE_MODES)[number]

/** One of `names`: absent is `absent`, anything unknown is refused (never guessed). */
function oneOf<N extends string>(value: unknown, names: readonly N[], absent: N, what: string): N {
  if (value === undefined || value === null) return absent
  if (typeof value === 'string' && (names as readonly string[]).includes(value)) return value as N
  throw new UserError(`invalid ${what} ${JSON.stringify(value)}: must be ${names.join(' or ')}`)
}

/** A service's mode by name: absent is replicated, anything unknown is refused (never guessed). */
export function checkServiceMode(value: unknown): ServiceModeName {
  return oneOf(value, SERVICE_MODES, 'replicated', 'service mode')
}

export const ENDPOINT_MODES = ['vip', 'dnsrr'] as const
export type EndpointModeName = (typeof ENDPOINT_MODES)[number]

/** A service's endpoint mode: absent is vip, anything unknown is refused (never guessed). */
export function checkEndpointMode(value: unknown): EndpointModeName {
  return oneOf(value, ENDPOINT_MODES, 'vip', 'endpoint mode')
}
