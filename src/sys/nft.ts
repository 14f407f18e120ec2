/**
 * Source NAT for a bridge subnet, and the bridge's isolation at layer 3, as an nftables table of
 * its own so that adding and removing it never touches anyone else's rules.
 */
import {run} from './exec.js'
import {nsenterArgv} from './netns.js'

/** nft identifiers may not start with a digit and we keep them to [a-z0-9_]. */
export function masqueradeTable(bridge: string): string {
  return `swarmnet_${bridge.replace(/[^A-Za-z0-9_]/g, '_')}`
}

function nft(script: string, ns: string | undefined, doing: string): Promise<string> {
  const argv = ['nft', '-f', '-']
  return run(ns ? nsenterArgv(ns, argv) : argv, doing, {input: script})
}

/**
 * Masquerades what leaves subnet (e.g. 172.18.0.0/16) through any device but the bridge itself,
 * like Docker's `-s SUBNET ! -o BRIDGE -j MASQUERADE`, and drops what the node would route from
 * the bridge back into it, like Docker's `-i BRIDGE -o BRIDGE -j DROP` for a bridge without
 * inter-container communication (docker_gwbridge). The bridge's isolated ports stop frames
 * between tasks, but not a packet a task sends to another task's address through its gateway
 * (a route via the gateway, or a frame written with NET_RAW): the node would route it back out
 * of the bridge to the other task (issue 19, hole 3). Re-adding replaces the table atomically
 * (add+delete+define in one transaction), so it is idempotent and fixes a drifted table.
 */
export async function addMasquerade(bridge: string, subnet: string, ns?: string): Promise<void> {
  const t = masqueradeTable(bridge)
  const script = [
    `add table ip ${t}`,
    `delete table ip ${t}`,
    `table ip ${t} {`,
    `  chain postrouting {`,
    `    type nat hook postrouting priority srcnat; policy accept;`,
    `    ip saddr ${subnet} oifname != "${bridge}" masquerade`,
    `  }`,
    `  chain forward {`,
    `    type filter hook forward priority filter; policy accept;`,
    `    iifname "${bridge}" oifname "${bridge}" counter drop`,
    `  }`,
    `}`,
    '',
  ].join('\n')
  await nft(script, ns, `adding masquerade for ${subnet} on ${bridge}`)
}

/** Idempotent: a missing table is created and deleted in the same transaction. */
export async function removeMasquerade(bridge: string, ns?: string): Promise<void> {
  const t = masqueradeTable(bridge)
  await nft(`add table ip ${t}\ndelete table ip ${t}\n`, ns, `removing masquerade on ${bridge}`)
}

/** The table as nft prints it, or undefined when absent (for tests and `inspect`). */
export async function showMasquerade(bridge: string, ns?: string): Promise<string | undefined> {
  const argv = ['nft', 'list', 'table', 'ip', masqueradeTable(bridge)]
  try {
    return await run(ns ? nsenterArgv(ns, argv) : argv, `reading masquerade on ${bridge}`)
  } catch {
    return undefined
  }
}
