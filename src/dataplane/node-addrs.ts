// The node's own IPv4 addresses that answer published ports (bpf/include/mesh_addrs.h): Docker's
// routing mesh answers on every address of a node, so a second address (added before or after a
// service is published) answers too, and one removed stops. Read from the agent's own network
// namespace, which is the node's: once in-process at the start (getifaddrs), then by `ip -4
// address show` off the event loop, only after an address changed (`ip monitor address`) or 30 s
// went by. With a thousand tasks the node has over a thousand links, and getifaddrs reads every
// one of them with every address of every family: reading them on every reconcile held the
// agent's loop (1.6 s per agent while 300 tasks started), and even once per change ~6.5 s of an
// agent's loop while 1,000 started (profiled). Only a change of the list wakes the reconciler.
//
// Left out: 127.0.0.0/8 (the node's own sockets to it are sock_mesh.c's already, and no packet
// from outside may reach it) and the gateway bridge's addresses: a task that speaks to its
// gateway reaches no published port there, as before (Docker answers on the node's addresses).
import {spawn, type ChildProcess} from 'node:child_process'
import os from 'node:os'
import {run} from '../sys/exec.js'

type Interfaces = ReturnType<typeof os.networkInterfaces>

/** The addresses of `ifaces` (the node's interfaces) that answer published ports, sorted. */
export function meshAddrs(skipDevices: readonly string[], ifaces: Interfaces = os.networkInterfaces()): string[] {
  const pairs: Array<[string, string]> = []
  for (const [name, list] of Object.entries(ifaces)) {
    for (const a of list ?? []) {
      // family is 4 (a number) on Node 18.0-18.3, 'IPv4' elsewhere.
      if (a.family === 'IPv4' || (a.family as unknown) === 4) pairs.push([name, a.address])
    }
  }
  return answering(skipDevices, pairs)
}

/** The same from `ip -4 -o address show`: "2: eth0    inet 10.0.0.5/24 brd ... scope global eth0 ...". */
export function meshAddrsFromIp(skipDevices: readonly string[], text: string): string[] {
  const pairs: Array<[string, string]> = []
  for (const line of text.split('\n')) {
    const m = /^\d+:\s+(\S+)\s+inet\s+(\d+\.\d+\.\d+\.\d+)\//.exec(line)
    if (m) pairs.push([m[1]!, m[2]!])
  }
  return answering(skipDevices, pairs)
}

function answering(skipDevices: readonly string[], pairs: Array<[string, string]>): string[] {
  const out = new Set<string>()
  for (const [name, address] of pairs) if (!skipDevices.includes(name) && !address.startsWith('127.')) out.add(address)
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
 * The node's mesh addresses. list() never reads the interfaces but the first time: a change the
 * watch saw, REREAD_MS gone by, or (while the watch is not running) any call starts one
 * `ip -4 address show` in the background, and its answer, when it differs, is the new list and
 * calls onChange (the reconciler runs again with it).
 */
export class NodeAddrs {
  private cached: string[] | undefined
  private readAt = 0
  private watching = true
  private refreshing = false
  private again = false
  private stopped = false
  private readonly watch: AddrWatch
  /** How many times the interfaces were read (the tests look). */
  reads = 0

  constructor(
    private readonly skipDevices: readonly string[],
    private readonly onChange: () => void,
    private readonly log: (line: string) => void,
    private readonly now: () => number = Date.now,
  ) {
    this.watch = watchAddrs(
      () => this.refresh(),
      log,
      () => ((this.watching = false), this.refresh()),
    )
  }

  list(): string[] {
    if (!this.cached) {
      this.reads++
      this.readAt = this.now()
      this.cached = meshAddrs(this.skipDevices)
    } else if (!this.watching || this.now() - this.readAt >= REREAD_MS) {
      this.refresh()
    }
    return this.cached
  }

  /** One read at a time; a change seen while one runs reads again after it. */
  private refresh(): void {
    if (this.stopped) return
    if (this.refreshing) {
      this.again = true
      return
    }
    this.refreshing = true
    this.reads++
    this.readAt = this.now()
    run(['ip', '-4', '-o', 'address', 'show'], 'reading the node addresses')
      .then(
        (out) => {
          const next = meshAddrsFromIp(this.skipDevices, out)
          const before = this.cached
          this.cached = next
          if (!this.stopped && (before === undefined || before.join() !== next.join())) this.onChange()
        },
        (e: Error) => this.log(`addresses: ${e.message}; read again at the next change`),
      )
      .finally(() => {
        this.refreshing = false
        if (this.again) {
          this.again = false
          this.refresh()
        }
      })
  }

  stop(): void {
    this.stopped = true
    this.watch.stop()
  }
}
