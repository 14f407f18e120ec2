/**
 * Sources that may not leave the node through a bridge: the gateway-bridge addresses of tasks
 * attached only to internal networks (`network create --internal`). Such a task has no default
 * route, but it holds CAP_NET_RAW (as Docker's tasks do) and could still hand the bridge a frame
 * for any address; this drops whatever the node would forward for it, so nothing is masqueraded
 * out. What is addressed to the node itself (the resolver at the bridge's address) is input, not
 * forward, and still answers. A table of its own: the masquerade table is replaced whole at start,
 * which must not open the door for a moment.
 */
import {run} from './exec.js'
import {nsenterArgv} from './netns.js'

export function noExitTable(bridge: string): string {
  return `swarmnet_${bridge.replace(/[^A-Za-z0-9_]/g, '_')}_noexit`
}

function nft(script: string, ns: string | undefined, doing: string): Promise<string> {
  const argv = ['nft', '-f', '-']
  return run(ns ? nsenterArgv(ns, argv) : argv, doing, {input: script})
}

/**
 * Makes the set hold exactly `addrs`, in one transaction (the table, chain and rule made if
 * missing, the rule made once): an address stays in the set across the call, never out of it.
 */
export async function setNoExit(bridge: string, addrs: readonly string[], ns?: string): Promise<void> {
  const t = noExitTable(bridge)
  const script = [
    `add table ip ${t}`,
    `add set ip ${t} noexit { type ipv4_addr; }`,
    `add chain ip ${t} forward { type filter hook forward priority filter; policy accept; }`,
    `flush chain ip ${t} forward`,
    `add rule ip ${t} forward iifname "${bridge}" ip saddr @noexit drop`,
    `flush set ip ${t} noexit`,
    ...(addrs.length > 0 ? [`add element ip ${t} noexit { ${addrs.join(', ')} }`] : []),
    '',
  ].join('\n')
  await nft(script, ns, `setting the sources that may not leave ${bridge}`)
}

export async function removeNoExit(bridge: string, ns?: string): Promise<void> {
  const t = noExitTable(bridge)
  await nft(`add table ip ${t}\ndelete table ip ${t}\n`, ns, `removing the no-exit table of ${bridge}`)
}
