// The node's own IPv4 addresses that answer published ports (bpf/include/mesh_addrs.h): Docker's
// routing mesh answers on every address of a node, so a second address (added before or after a
// service is published) answers too, and one removed stops. Read from the agent's own network
// namespace, which is the node's, on every reconcile (getifaddrs in-process: no command run), and
// an address change wakes the reconciler at once (`ip monitor address`), so the maps follow
// without waiting for the periodic pass.
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
 * missing or failed `ip monitor` is said once through `log`: the periodic reconcile still picks
 * up changes, only later.
 */
export function watchAddrs(onChange: () => void, log: (line: string) => void): AddrWatch {
  let child: ChildProcess | undefined
  let stopped = false
  try {
    child = spawn('ip', ['-4', 'monitor', 'address'], {stdio: ['ignore', 'pipe', 'ignore']})
  } catch (e) {
    log(`addresses: cannot watch for changes (${(e as Error).message}); the periodic reconcile picks them up`)
    return {stop: () => {}}
  }
  child.stdout?.on('data', () => onChange())
  child.on('error', (e) => log(`addresses: cannot watch for changes (${e.message}); the periodic reconcile picks them up`))
  child.on('exit', (code, signal) => {
    if (!stopped) log(`addresses: ip monitor ended (${signal ?? code}); the periodic reconcile picks changes up`)
  })
  return {
    stop: () => {
      stopped = true
      if (child?.exitCode === null && child.signalCode === null) child.kill()
    },
  }
}
