/**
 * swarmnet_gwbridge: the node-local bridge through which tasks reach the world outside the
 * cluster, with the node's address as source (Docker's docker_gwbridge). Works on the current
 * namespace, which for the agent is the node's.
 */
import {networkOf} from '../model/ipv4.js'
import {addAddress, createBridge, deleteLink, setLinkUp} from '../sys/link.js'
import {addMasquerade, removeMasquerade} from '../sys/nft.js'
import {enableIpForward} from '../sys/sysctl.js'

/** The network's name as the CLI shows it. */
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
  await createBridge(GWBRIDGE_IF)
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
  await deleteLink(GWBRIDGE_IF)
}
