// The published ports kept out of the node's ephemeral ports (issue 19, hole 4). The mesh takes
// every packet to a published port of the node's address; a connection the node itself made
// from such a port (the kernel picks source ports from ip_local_port_range) would have its
// replies taken too. net.ipv4.ip_local_reserved_ports, which is per network namespace, keeps the
// kernel from picking them, as Cilium does for its NodePort range. Ports reserved by anyone else
// stay; ours are added and taken out again when no longer published.
import {readFileSync} from 'node:fs'
import {setSysctl} from '../sys/sysctl.js'

const KEY = 'net.ipv4.ip_local_reserved_ports'
const PATH = `/proc/sys/${KEY.replaceAll('.', '/')}`

/** "1000-1002,2000" -> {1000, 1001, 1002, 2000}. Refuses anything else in one line. */
export function parsePortList(s: string): Set<number> {
  const out = new Set<number>()
  for (const part of s.trim().split(',')) {
    if (part === '') continue
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim())
    const lo = m ? Number(m[1]) : NaN
    const hi = m?.[2] !== undefined ? Number(m[2]) : lo
    if (!(lo >= 0 && hi <= 65535 && lo <= hi)) throw new Error(`${KEY}: cannot read "${part}"`)
    for (let p = lo; p <= hi; p++) out.add(p)
  }
  return out
}

/** The set as the kernel writes it: ascending, runs as ranges. */
export function formatPortList(ports: ReadonlySet<number>): string {
  const sorted = [...ports].sort((a, b) => a - b)
  const parts: string[] = []
  for (let i = 0; i < sorted.length;) {
    let j = i
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++
    parts.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`)
    i = j + 1
  }
  return parts.join(',')
}

/**
 * Keeps `want` reserved in the current namespace (the agent's: its node's). What this agent
 * reserved before and no longer wants is released; ports reserved by someone else are left
 * alone. Ports reserved by an earlier agent and unpublished while no agent ran stay reserved
 * (harmless: the kernel only picks fewer ephemeral ports).
 */
export class ReservedPorts {
  private ours = new Set<number>()

  async sync(want: ReadonlySet<number>): Promise<void> {
    const now = parsePortList(readFileSync(PATH, 'utf8'))
    const next = new Set([...now].filter((p) => want.has(p) || !this.ours.has(p)))
    for (const p of want) next.add(p)
    this.ours = new Set(want)
    if (next.size === now.size && [...next].every((p) => now.has(p))) return
    await setSysctl(KEY, formatPortList(next))
  }
}
