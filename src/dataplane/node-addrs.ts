// The node's own IPv4 addresses that answer published ports (bpf/include/mesh_addrs.h): Docker's
// routing mesh answers on every address of a node, so a second address (added before or after a
// service is published) answers too, and one removed stops. Read from the agent's own network
// namespace, which is the node's (getifaddrs in-process: no command run), again only after an
// address changed (`ip monitor address`, which also wakes the reconciler at once) or 30 s went by:
// with a few hundred tasks the node has a thousand links, and reading them all on every reconcile
// held the agent's event loop (1.6 s per agent while 300 tasks started, profiled).
//
// Left out: 127.0.0.0/8 (the node's own sockets to it are sock_mesh.c's already, and no packet
// from outside may reach it) and the gateway bridge's addresses: a task that speaks to its
// gateway reaches no published port there, as before (Docker answers on the node's addresses).
import {spawn, type ChildProcess} from 'node:child_process'
import os from 'node:os'

type Interfaces = ReturnType<typeof os.networkInterfaces>

/** The addresses of `ifaces` (the node's interfaces that are up) that answer published ports, sorted. */
export function meshAddrs(skipDevices: readonly string[], ifaces: Interfaces = os.networkInterfaces()): string[] {
  const out = new Set<string>()
  for (const [name, list] of Object.entries(ifaces)) {
    if (skipDevices.includes(name)) continue
    for (const a of list ?? []) {
      // family is 4 (a number) on Node 18.0-18.3, 'IPv4' elsewhere.
      if ((a.family === 'IPv4' || (a.family as unknown) === 4) && !a.address.startsWith('127.')) out.add(a.address)
    }
  }
  return [...out].sort()
}

export interface AddrWatch {
  stop(): void
}

/**
 * Calls `onChange` whenever an IPv4 address of the current namespace is added or removed. A
 * missing or failed `ip monitor` is said once through `log` and told to `onLost`: the periodic
 * reconcile still picks up changes, only later.
 */
export function watchAddrs(onChange: () => void, log: (line: string) => void, onLost: () => void = () => {}): AddrWatch {
  let child: ChildProcess | undefined
  let stopped = false
  try {
    child = spawn('ip', ['-4', 'monitor', 'address'], {stdio: ['ignore', 'pipe', 'ignore']})
  } catch (e) {
    log(`addresses: cannot watch for changes (${(e as Error).message}); the periodic reconcile picks them up`)
    onLost()
    return {stop: () => {}}
  }
  child.stdout?.on('data', () => onChange())
  child.on('error', (e) => {
    log(`addresses: cannot watch for changes (${e.message}); the periodic reconcile picks them up`)
    onLost()
  })
  child.on('exit', (code, signal) => {
    if (!stopped) log(`addresses: ip monitor ended (${signal ?? code}); the periodic reconcile picks changes up`)
    onLost()
  })
  return {
    stop: () => {
      stopped = true
      if (child?.exitCode === null && child.signalCode === null) child.kill()
    },
  }
}

/** Re-read at least this often, in case a change fell before the watch was listening. */
const REREAD_MS = 30_000

/**
 * The node's mesh addresses, read again only when the watch saw an address change, or when the
 * watch is not running (then on every call, as before), or after REREAD_MS.
 */
export class NodeAddrs {
  private cached: string[] | undefined
  private readAt = 0
  private watching = true
  private readonly watch: AddrWatch
  /** How many times the interfaces were read (the metrics and the tests look). */
  reads = 0

  constructor(
    private readonly skipDevices: readonly string[],
    onChange: () => void,
    log: (line: string) => void,
    private readonly now: () => number = Date.now,
  ) {
    this.watch = watchAddrs(
      () => ((this.cached = undefined), onChange()),
      log,
      () => ((this.watching = false), (this.cached = undefined)),
    )
  }

  list(): string[] {
    if (this.cached && this.watching && this.now() - this.readAt < REREAD_MS) return this.cached
    this.reads++
    this.readAt = this.now()
    this.cached = meshAddrs(this.skipDevices)
    return this.cached
  }

  stop(): void {
    this.watch.stop()
  }
}
