/**
 * swarmnet_gwbridge: the node-local bridge through which tasks reach the world outside the
 * cluster, with the node's address as source (Docker's docker_gwbridge). Works on the current
 * namespace, which for the agent is the node's.
 */
import {macForIp} from '../model/allocate.js'
import {networkOf} from '../model/ipv4.js'
import {addAddress, createBridge, deleteLink, getLink, setLinkUp, setMac} from '../sys/link.js'
import {addMasquerade, removeMasquerade} from '../sys/nft.js'
import {removeNoExit} from '../sys/nft-noexit.js'
import {enableIpForward} from '../sys/sysctl.js'

/** The Linux device (names are limited to 15 characters). */
export const GWBRIDGE_IF = 'sn-gwbridge'
export const GWBRIDGE_GATEWAY = '172.18.0.1'
export const GWBRIDGE_PREFIX = 16
export const GWBRIDGE_MTU = 1500

export interface GwBridgeOptions {
  gatewayIp?: string
  prefixLen?: number
}

export interface GwBridge {
  ifname: string
  gatewayIp: string
  prefixLen: number
  /** e.g. "172.18.0.0/16" */
  subnet: string
}

/** Idempotent: creates what is missing and leaves the rest. */
export async function ensureGwBridge(opts: GwBridgeOptions = {}): Promise<GwBridge> {
  const gatewayIp = opts.gatewayIp ?? GWBRIDGE_GATEWAY
  const prefixLen = opts.prefixLen ?? GWBRIDGE_PREFIX
  const subnet = networkOf(gatewayIp, prefixLen)
  // The gateway's MAC must never change under running tasks: their neighbour entry for the gateway
  // would point at a port that is gone, and everything they send to the node (DNS questions to
  // the responder, traffic to the outside) would vanish until the entry expired, seconds later.
  // Linux moves a bridge's MAC to its lowest port's unless the MAC was set, so it is set: derived
  // from the gateway address for a new bridge (the same after a restart), the current one pinned
  // for a bridge an older agent made (its tasks know that one).
  const existing = await getLink(GWBRIDGE_IF)
  if (existing?.kind === 'bridge') await setMac(GWBRIDGE_IF, existing.address)
  else await createBridge(GWBRIDGE_IF, undefined, macForIp(gatewayIp))
  await addAddress(GWBRIDGE_IF, `${gatewayIp}/${prefixLen}`)
  await setLinkUp(GWBRIDGE_IF)
  await addMasquerade(GWBRIDGE_IF, subnet)
  await enableIpForward()
  return {ifname: GWBRIDGE_IF, gatewayIp, prefixLen, subnet}
}

/**
 * Removes the bridge and its NAT table. ip_forward is left on: the node may route for other
 * reasons, and turning it off under someone would be the worse surprise.
 */
export async function removeGwBridge(): Promise<void> {
  await removeMasquerade(GWBRIDGE_IF)
  await removeNoExit(GWBRIDGE_IF)
  await deleteLink(GWBRIDGE_IF)
}
