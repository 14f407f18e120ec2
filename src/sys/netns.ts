import {existsSync, readdirSync} from 'node:fs'
import {run, type RunOptions} from './exec.js'

/** Where iproute2 keeps the bind mounts of named namespaces. */
export const NETNS_DIR = '/run/netns'

export function netnsPath(ns: string): string {
  return `${NETNS_DIR}/${ns}`
}

export function netnsExists(ns: string): boolean {
  return existsSync(netnsPath(ns))
}

export async function addNetns(ns: string): Promise<void> {
  await run(['ip', 'netns', 'add', ns], `creating netns ${ns}`)
}

/** Idempotent: a missing namespace is not an error. */
export async function delNetns(ns: string): Promise<void> {
  if (!netnsExists(ns)) return
  await run(['ip', 'netns', 'del', ns], `deleting netns ${ns}`)
}

/** Named namespaces whose name starts with prefix (read from the directory, which `ip netns list` also reads). */
export function listNetns(prefix = ''): string[] {
  if (!existsSync(NETNS_DIR)) return []
  return readdirSync(NETNS_DIR)
    .filter((n) => n.startsWith(prefix))
    .sort()
}

/**
 * argv that runs `argv` inside ns. nsenter rather than `ip netns exec`: the latter remounts
 * /sys, which hides the BPF pins under /sys/fs/bpf from the command.
 */
export function nsenterArgv(ns: string, argv: readonly string[]): string[] {
  return ['nsenter', `--net=${netnsPath(ns)}`, '--', ...argv]
}

export function execIn(ns: string, argv: readonly string[], doing?: string, opts?: RunOptions): Promise<string> {
  return run(nsenterArgv(ns, argv), doing ?? `running ${argv[0] ?? ''} in ${ns}`, opts)
}

/** Pids of the processes whose network namespace is ns. */
export async function netnsPids(ns: string): Promise<number[]> {
  if (!netnsExists(ns)) return []
  const out = await run(['ip', 'netns', 'pids', ns], `listing processes in ${ns}`)
  return out
    .split(/\s+/)
    .filter(Boolean)
    .map(Number)
    .filter((p) => Number.isInteger(p) && p > 0)
}
