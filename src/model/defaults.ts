/** Values that follow Docker Swarm, so a Swarm user finds what they expect. */

export const DEFAULT_DATA_PATH_PORT = 4789
export const DATA_PATH_PORT_MIN = 1024
export const DATA_PATH_PORT_MAX = 49151

export const DEFAULT_ADDR_POOL = '10.0.0.0/8'
export const DEFAULT_SUBNET_SIZE = 24

export const DEFAULT_GOSSIP_PORT = 7946

/** Swarm's overlay driver allocates from 4096 "to be consistent with windows". */
export const VNI_MIN = 4096
export const VNI_MAX = 0xffffff

/** Outer Ethernet-less VXLAN overhead: IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14. */
export const VXLAN_OVERHEAD = 50

/**
 * A network's MTU when `network create` names none: Ethernet's 1500 minus VXLAN, so it fits any
 * standard underlay. One value per network, the same on every node, as Docker has it.
 */
export const DEFAULT_NETWORK_MTU = 1500 - VXLAN_OVERHEAD
/** The IPv4 datagram every host must take whole (RFC 791); SN_MTU_MIN in bpf/include/layout.h. */
export const NETWORK_MTU_MIN = 576
/** A jumbo-frame (9000-byte) underlay minus VXLAN. */
export const NETWORK_MTU_MAX = 9000 - VXLAN_OVERHEAD

export const INGRESS_NETWORK_NAME = 'ingress'
export const GWBRIDGE_NETWORK_NAME = 'swarmnet_gwbridge'

/**
 * The most tasks one replicated service may ask for. Docker has no such bound,
 * but every task here is a namespace, veths and a process on some node; a typo
 * (`web=100000`) should be refused, not attempted. Addresses bound it further.
 */
export const MAX_REPLICAS = 1000

/** TTL of the answers about the cluster's names (s): short, so a client that caches follows scaling. */
export const DEFAULT_DNS_TTL = 5
export const DNS_TTL_MAX = 3600
