import {UserError} from './errors.js'

/**
 * IPv4 addresses as unsigned 32-bit numbers. `>>> 0` after every bit operation
 * keeps them unsigned: JS bit operators work on signed 32-bit integers.
 */

export type Cidr = {addr: number; prefix: number}

export function parseIpv4(text: string): number {
  const n = tryParseIpv4(text)
  if (n === undefined) throw new UserError(`invalid IPv4 address '${text}'`)
  return n
}

export function tryParseIpv4(text: string): number | undefined {
  // By character codes (the index parses every address it is fed: a split and a regular
  // expression per part cost ~1 us a call). Canonical spelling only: four parts of 1-3 digits,
  // no signs or spaces, no leading zeros (010 is octal to some parsers), each at most 255.
  const len = text.length
  if (len < 7 || len > 15) return undefined
  let n = 0
  let part = 0
  let digits = 0
  let dots = 0
  for (let i = 0; i < len; i++) {
    const c = text.charCodeAt(i)
    if (c === 46) {
      if (digits === 0 || dots === 3 || part > 255) return undefined
      n = n * 256 + part
      part = 0
      digits = 0
      dots++
    } else if (c >= 48 && c <= 57) {
      if (digits === 1 && part === 0) return undefined
      if (++digits > 3) return undefined
      part = part * 10 + (c - 48)
    } else return undefined
  }
  if (digits === 0 || dots !== 3 || part > 255) return undefined
  return n * 256 + part
}

export function isIpv4(text: string): boolean {
  return tryParseIpv4(text) !== undefined
}

export function formatIpv4(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`
}

export function netmask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0
}

/** Parses "a.b.c.d/p"; host bits must be zero, as Docker insists. */
export function parseCidr(text: string): Cidr {
  const slash = text.indexOf('/')
  if (slash < 0) throw new UserError(`invalid CIDR '${text}': expected ADDRESS/PREFIX, like 10.0.0.0/24`)
  const addrText = text.slice(0, slash)
  const prefixText = text.slice(slash + 1)
  const addr = tryParseIpv4(addrText)
  if (addr === undefined) throw new UserError(`invalid CIDR '${text}': '${addrText}' is not an IPv4 address`)
  if (!/^[0-9]{1,2}$/.test(prefixText) || Number(prefixText) > 32) {
    throw new UserError(`invalid CIDR '${text}': prefix must be 0-32`)
  }
  const prefix = Number(prefixText)
  const network = (addr & netmask(prefix)) >>> 0
  if (network !== addr) {
    throw new UserError(`invalid CIDR '${text}': host bits are set, did you mean ${formatIpv4(network)}/${prefix}?`)
  }
  return {addr, prefix}
}

export function formatCidr(c: Cidr): string {
  return `${formatIpv4(c.addr)}/${c.prefix}`
}

export function cidrSize(c: Cidr): number {
  return 2 ** (32 - c.prefix)
}

export function broadcast(c: Cidr): number {
  return (c.addr + cidrSize(c) - 1) >>> 0
}

export function cidrContains(c: Cidr, ip: number): boolean {
  return (ip & netmask(c.prefix)) >>> 0 === c.addr
}

/** Two aligned blocks overlap exactly when one contains the other's start. */
export function cidrOverlaps(a: Cidr, b: Cidr): boolean {
  return cidrContains(a, b.addr) || cidrContains(b, a.addr)
}

/** The n-th address of the block (0 = the network address). */
export function nthHost(c: Cidr, n: number): number {
  if (!Number.isInteger(n) || n < 0 || n >= cidrSize(c)) {
    throw new UserError(`address #${n} is outside ${formatCidr(c)}`)
  }
  return (c.addr + n) >>> 0
}

/** "172.18.0.1", 16 -> "172.18.0.0/16": the network an address with that prefix is on. */
export function networkOf(ip: string, prefix: number): string {
  return formatCidr({addr: (parseIpv4(ip) & netmask(prefix)) >>> 0, prefix})
}
