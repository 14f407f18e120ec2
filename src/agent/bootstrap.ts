// What init and join write before the agent first starts: the node's config
// and its first store contents.
import {randomBytes} from 'node:crypto'
import {hostname} from 'node:os'
import {requestJoin} from '../gossip/join.js'
import {certifyNode, generateIdentity, generateNodeKey} from '../gossip/identity.js'
import {generateKey} from '../gossip/keyring.js'
import {generateToken} from '../gossip/token.js'
import {
  DEFAULT_ADDR_POOL,
  DEFAULT_DATA_PATH_PORT,
  DEFAULT_GOSSIP_PORT,
  DEFAULT_SUBNET_SIZE,
  INGRESS_NETWORK_NAME,
} from '../model/defaults.js'
import {parseCidr} from '../model/ipv4.js'
import type {ClusterSpec, DnsSpec, NodeRecord} from '../model/types.js'
import {checkDnsSpec} from '../dns/config.js'
import {checkDataPathPort} from '../model/validate.js'
import {CLUSTER_KEY, keyOf} from '../store/keys.js'
import {mtuOf} from '../sys/link.js'
import {resolveAdvertise} from './advertise.js'
import {readNodeConfig, writeNodeConfig, type NodeConfig} from './config.js'
import {Manager} from '../manager/manager.js'
import {openNodeStore} from './node-store.js'
import {checkNodeName} from './paths.js'
import {UserError} from '../model/errors.js'
import {membershipConfig, type MembershipConfig} from '../membership/config.js'

export function defaultNodeName(): string {
  const h = hostname()
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-')
    .replace(/^-+/, '')
    .slice(0, 32)
  return h || 'node'
}

function refuseIfMember(node: string): void {
  if (readNodeConfig(node)) throw new Error(`node ${node} is already part of a cluster: run \`swarmnet leave\` first`)
}

export interface InitOptions {
  node: string
  advertiseAddr?: string
  dataPathPort?: number
  defaultAddrPool?: string
  gossipPort?: number
  xdpMode: 'native' | 'generic'
  /** Failure detection timers other than the defaults (checked before anything is made). */
  membership?: Partial<MembershipConfig>
  /** --dns (upstream resolvers) and --dns-ttl, checked before anything is made. */
  dns?: DnsSpec
}

export async function bootstrapInit(o: InitOptions): Promise<NodeConfig> {
  checkNodeName(o.node)
  refuseIfMember(o.node)
  const membership = o.membership && Object.keys(o.membership).length > 0 ? o.membership : undefined
  if (membership) checkMembership(membership)
  const port = checkDataPathPort(o.dataPathPort ?? DEFAULT_DATA_PATH_PORT)
  const pool = o.defaultAddrPool ?? DEFAULT_ADDR_POOL
  parseCidr(pool)
  const dns = o.dns ? checkDnsSpec(o.dns) : undefined
  const adv = await resolveAdvertise(o.advertiseAddr)
  const identity = generateIdentity()
  const nodeKey = generateNodeKey()
  const nodeId = randomBytes(12).toString('hex')
  const cfg: NodeConfig = {
    nodeId,
    name: o.node,
    role: 'manager',
    advertiseAddr: adv.addr,
    underlay: adv.ifname,
    mtu: await mtuOf(adv.ifname),
    gossipPort: o.gossipPort ?? DEFAULT_GOSSIP_PORT,
    bindAddr: adv.addr,
    key: generateKey().toString('base64'),
    keyId: 0,
    xdpMode: o.xdpMode,
    ...(membership ? {membership} : {}),
    identity,
    token: generateToken(identity.publicKey).text,
    nodeKey,
    cert: certifyNode(identity, nodeId, nodeKey.publicKey, 'manager'),
    clusterIdentity: identity.publicKey,
  }
  const store = openNodeStore(o.node, cfg.nodeId)
  try {
    const cluster: ClusterSpec = {
      id: randomBytes(12).toString('hex'),
      createdAt: Date.now(),
      dataPathPort: port,
      defaultAddrPool: pool,
      subnetSize: DEFAULT_SUBNET_SIZE,
      ...(dns ? {dns} : {}),
    }
    store.put(CLUSTER_KEY, cluster)
    const me: NodeRecord = {
      id: cfg.nodeId,
      name: cfg.name,
      addr: cfg.advertiseAddr,
      gossipPort: cfg.gossipPort,
      role: 'manager',
      state: 'ready',
      mtu: cfg.mtu,
      joinedAt: Date.now(),
      pubKey: nodeKey.publicKey,
      cert: cfg.cert,
    }
    store.put(keyOf('node', cfg.nodeId), me)
    new Manager(store, cfg.nodeId).createNetwork({name: INGRESS_NETWORK_NAME, ingress: true})
  } finally {
    store.close()
  }
  writeNodeConfig(cfg)
  return cfg
}

export interface JoinOptions {
  node: string
  token: string
  manager: string
  advertiseAddr?: string
  gossipPort?: number
  xdpMode: 'native' | 'generic'
  /** Failure detection timers other than the defaults (checked before anything is made). */
  membership?: Partial<MembershipConfig>
}

export async function bootstrapJoin(o: JoinOptions): Promise<NodeConfig> {
  checkNodeName(o.node)
  refuseIfMember(o.node)
  const membership = o.membership && Object.keys(o.membership).length > 0 ? o.membership : undefined
  if (membership) checkMembership(membership)
  const adv = await resolveAdvertise(o.advertiseAddr)
  const nodeId = randomBytes(12).toString('hex')
  const gossipPort = o.gossipPort ?? DEFAULT_GOSSIP_PORT
  const mtu = await mtuOf(adv.ifname)
  const nodeKey = generateNodeKey()
  const r = await requestJoin({
    manager: o.manager,
    token: o.token,
    node: {id: nodeId, name: o.node, addr: adv.addr, gossipPort, mtu, pubKey: nodeKey.publicKey},
  })
  const self = r.entries.find((e) => e.key === keyOf('node', nodeId))?.value as NodeRecord | undefined
  const store = openNodeStore(o.node, nodeId)
  try {
    store.merge(r.entries)
  } finally {
    store.close()
  }
  const cfg: NodeConfig = {
    nodeId,
    name: o.node,
    role: r.role,
    advertiseAddr: adv.addr,
    underlay: adv.ifname,
    mtu,
    gossipPort,
    bindAddr: adv.addr,
    key: r.key.toString('base64'),
    keyId: r.keyId,
    xdpMode: o.xdpMode,
    ...(membership ? {membership} : {}),
    nodeKey,
    ...(self?.cert ? {cert: self.cert} : {}),
    clusterIdentity: r.identity,
  }
  writeNodeConfig(cfg)
  return cfg
}

/** Bad timers are refused in one line, before anything is made. */
function checkMembership(m: Partial<MembershipConfig>): void {
  try {
    membershipConfig(m)
  } catch (e) {
    throw new UserError((e as Error).message)
  }
}
