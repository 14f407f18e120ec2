/**
 * The source address a task's UDP sockets on its ingress-published target ports answer from.
 *
 * The routing mesh delivers a client's datagrams to the task's ingress-network address with the
 * client's own address as source. The task's route to the client is its default route, through
 * the gateway bridge, so connect() on a socket bound to 0.0.0.0 would take the gateway-bridge
 * address as the socket's local address, and the client's next datagrams (to the ingress
 * address) would match no socket: a connected UDP server (iperf3 -u, QUIC, game servers) got only
 * the first one. A policy rule by source port and protocol sends the route lookups of sockets on
 * those ports (connect() and sendmsg() pass the port into the rule match) to a table whose default
 * route is the same one with the ingress address as source. The replies still leave through the
 * gateway bridge, where tc_gw finds mesh replies from either address and drops an untracked one
 * from the ingress address. Before those rules, main without its default route: a peer on an
 * overlay network or the bridge's subnet is still reached the usual way.
 *
 * UDP only: an accepted TCP socket already has the SYN's destination as its local address, and a
 * rule for TCP would only move the task's own connections that happen to get that port as their
 * ephemeral one onto the ingress address, where tc_gw drops them. A target port that is also
 * published in host mode (same protocol) gets no rule: host-mode datagrams come to the
 * gateway-bridge address, and its replies are found by that address.
 */
import {run} from '../sys/exec.js'
import {ipBatch} from '../sys/link.js'

/** Main without its default route; then the per-port rules, all into one table. */
export const MESH_SOURCE_MAIN_PREF = 1000
export const MESH_SOURCE_PREF = 1001
export const MESH_SOURCE_TABLE = 1001

export interface MeshSource {
  /** The task's ingress-network address. */
  ingressIp: string
  /** The gateway bridge's address, the task's default gateway. */
  gatewayIp: string
  /** UDP target ports published in mode=ingress only, sorted. */
  ports: number[]
}

/** What a task's namespace holds: nothing, or these ports' rules and the table's route. */
export const meshSourceKey = (m: MeshSource | undefined) =>
  m && m.ports.length > 0 ? `${m.ingressIp} ${m.gatewayIp} ${m.ports.join(',')}` : ''

/** The UDP target ports of a service that get the rule: published in mode=ingress and not in mode=host. */
export function meshSourcePorts(ports: ReadonlyArray<{protocol: string; target: number; mode: string}>): number[] {
  const udp = ports.filter((p) => p.protocol === 'udp')
  const host = new Set(udp.filter((p) => p.mode === 'host').map((p) => p.target))
  return [...new Set(udp.filter((p) => p.mode === 'ingress' && !host.has(p.target)).map((p) => p.target))].sort((a, b) => a - b)
}

interface RuleJson {
  priority?: number
  table?: string
  ipproto?: string
  sport?: number | string
}

/** The per-port rules in the namespace now (ours by priority), and whether main's is there. */
async function readRules(netns: string): Promise<{ports: number[]; main: boolean}> {
  const out = await run(['ip', '-n', netns, '-j', 'rule', 'show'], `reading the rules of ${netns}`)
  const rules = JSON.parse(out || '[]') as RuleJson[]
  return {
    ports: rules.filter((r) => r.priority === MESH_SOURCE_PREF && r.sport !== undefined).map((r) => Number(r.sport)),
    main: rules.some((r) => r.priority === MESH_SOURCE_MAIN_PREF),
  }
}

/**
 * Makes the namespace's rules those of `want` (none when undefined or no ports). `have` is what
 * this agent last wrote there; undefined (a sandbox adopted after a restart) reads them first,
 * so a second run adds nothing twice and removes what a port change made stale meanwhile.
 */
export async function syncMeshSource(
  netns: string,
  want: MeshSource | undefined,
  have: MeshSource | undefined | null,
): Promise<void> {
  const ports = want?.ports ?? []
  let cur: {ports: number[]; main: boolean}
  if (have === undefined) cur = await readRules(netns)
  else cur = {ports: have?.ports ?? [], main: (have?.ports.length ?? 0) > 0}
  const rule = (op: 'add' | 'del', p: number) => [
    'rule',
    op,
    'pref',
    String(MESH_SOURCE_PREF),
    'sport',
    String(p),
    'ipproto',
    'udp',
    'lookup',
    String(MESH_SOURCE_TABLE),
  ]
  const main = (op: 'add' | 'del') => [
    'rule',
    op,
    'pref',
    String(MESH_SOURCE_MAIN_PREF),
    'lookup',
    'main',
    'suppress_prefixlength',
    '0',
  ]
  const cmds: string[][] = []
  for (const p of cur.ports) if (!ports.includes(p)) cmds.push(rule('del', p))
  if (ports.length > 0) {
    // replace: the same after a restart, and a new address (never for a running task) would be taken.
    cmds.push(['route', 'replace', 'default', 'via', want!.gatewayIp, 'src', want!.ingressIp, 'table', String(MESH_SOURCE_TABLE)])
    if (!cur.main) cmds.push(main('add'))
    for (const p of ports) if (!cur.ports.includes(p)) cmds.push(rule('add', p))
  } else {
    if (cur.main) cmds.push(main('del'))
    if (cur.main || cur.ports.length > 0) cmds.push(['route', 'flush', 'table', String(MESH_SOURCE_TABLE)])
  }
  await ipBatch(netns, cmds, `setting the mesh source rules of ${netns}`)
}
