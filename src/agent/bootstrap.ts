// What init and join write before the agent first starts: the node's config
// and its first store contents.
import {givenEtcdPaths, keepEtcdFiles} from './etcd-files.js'
import {randomBytes} from 'node:crypto'
import {hostname} from 'node:os'
import {parseManagerAddr, requestJoin} from '../gossip/join.js'
import {certifyNode, generateIdentity, generateNodeKey} from '../gossip/identity.js'
import {generateKey} from '../gossip/keyring.js'
import {DEFAULT_KEY_ROTATION_MS} from '../gossip/rotation.js'
import {generateToken, parseToken, tokenDigest} from '../gossip/token.js'
import {agentAnswers} from './spawn.js'
import {
  DEFAULT_ADDR_POOL,
  DEFAULT_DATA_PATH_PORT,
  DEFAULT_GOSSIP_PORT,
  DEFAULT_SUBNET_SIZE,
  INGRESS_NETWORK_NAME,
} from '../model/defaults.js'
import {parseCidr} from '../model/ipv4.js'
import type {ClusterSpec, DnsSpec, NodeRecord} from '../model/types.js'
import type {Json} from '../store/json.js'
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
import {rmSync} from 'node:fs'
import {checkEtcdSettings, etcdClient, type EtcdSettings} from '../manager/etcd-client.js'
import {EtcdBackend} from '../manager/etcd-backend.js'
import {defaultPrefix} from '../manager/etcd-keys.js'
import {isDesiredKey} from '../manager/backend.js'
import {stateDir} from './paths.js'
import type {Store} from '../store/store.js'

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
  /** Desired state in etcd (several managers); absent: the embedded store. */
  etcd?: Omit<EtcdSettings, 'prefix'>
  /** Automatic key rotation period (0 = off; default 12 h). */
  keyRotationMs?: number
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
  if (o.etcd) checkEtcdSettings(o.etcd)
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
    keyRotation: {intervalMs: o.keyRotationMs ?? DEFAULT_KEY_ROTATION_MS, lastAt: Date.now()},
    xdpMode: o.xdpMode,
    ...(membership ? {membership} : {}),
    identity,
    token: generateToken(identity.publicKey).text,
    nodeKey,
    cert: certifyNode(identity, nodeId, nodeKey.publicKey, 'manager'),
    clusterIdentity: identity.publicKey,
  }
  const clusterId = randomBytes(12).toString('hex')
  if (o.etcd) {
    cfg.etcd = {...o.etcd, prefix: defaultPrefix(clusterId)}
    cfg.managerToken = generateToken(identity.publicKey).text
  }
  const store = openNodeStore(o.node, cfg.nodeId)
  try {
    // Used from the node's state directory, which tasks never see (etcd-files.ts).
    if (cfg.etcd) {
      cfg.etcdGiven = givenEtcdPaths(cfg.etcd)
      cfg.etcd = keepEtcdFiles(o.node, cfg.etcd)
    }
    const cluster: ClusterSpec = {
      id: clusterId,
      createdAt: Date.now(),
      dataPathPort: port,
      defaultAddrPool: pool,
      subnetSize: DEFAULT_SUBNET_SIZE,
      ...(o.etcd ? {store: 'etcd' as const} : {}),
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
    if (cfg.etcd) await seedEtcd(cfg.etcd, store, cfg.nodeId)
  } catch (e) {
    // Refused means nothing made: no state left behind for a node that is not in a cluster.
    store.close()
    rmSync(stateDir(o.node), {recursive: true, force: true})
    throw e
  } finally {
    store.close()
  }
  writeNodeConfig(cfg)
  return cfg
}

/** The new cluster's desired state (cluster record, ingress network) into etcd, with its allocations. */
async function seedEtcd(settings: EtcdSettings, store: Store, selfId: string): Promise<void> {
  const client = etcdClient(settings)
  try {
    const b = new EtcdBackend({client, prefix: settings.prefix, local: store, selfId, endpoints: settings.endpoints})
    await b.importRecords(store.list('').filter((e) => isDesiredKey(e.key)) as {key: string; value: Json}[])
  } finally {
    client.close()
  }
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
  /** Join as a manager of a cluster on etcd (the token must be the manager token). */
  asManager?: boolean
  etcd?: Omit<EtcdSettings, 'prefix'>
}

/**
 * A member that missed a key rotation (it was down while the old key was
 * retired) joins again with the token under its own id and node key: it gets
 * the current key and the state, and keeps its config, tasks and data plane.
 */
async function bootstrapRejoin(o: JoinOptions, cfg: NodeConfig): Promise<NodeConfig> {
  if (await agentAnswers(o.node))
    throw new UserError(`the agent of node ${o.node} is running: stop it before joining again (it holds the old key)`)
  const r = await requestJoin({
    manager: o.manager,
    token: o.token,
    node: {
      id: cfg.nodeId,
      name: cfg.name,
      addr: cfg.advertiseAddr,
      gossipPort: cfg.gossipPort,
      mtu: cfg.mtu,
      pubKey: cfg.nodeKey!.publicKey,
    },
    rejoinKey: cfg.nodeKey!.privateKey,
  })
  if (r.identity !== cfg.clusterIdentity) throw new UserError("join refused: the token is for another cluster than this node's")
  const store = openNodeStore(o.node, cfg.nodeId)
  try {
    store.merge(r.entries)
  } finally {
    store.close()
  }
  cfg.key = r.key.toString('base64')
  cfg.keyId = r.keyId
  cfg.keys = [{id: r.keyId, key: cfg.key}]
  writeNodeConfig(cfg)
  return cfg
}

/** Whether this node's config says it is a member of the token's cluster (then join means rejoin). */
function memberOfTokensCluster(cfg: NodeConfig, token: string): boolean {
  let digest: string
  try {
    digest = parseToken(token).digest
  } catch {
    return false
  }
  return cfg.role === 'worker' && !!cfg.nodeKey && !!cfg.clusterIdentity && tokenDigest(cfg.clusterIdentity) === digest
}

/**
 * What a join's input alone can tell, with no network, no file written and no step shown: the
 * command runs this before it prints any progress, so a token that cannot be valid is one line.
 */
export function checkJoinInput(o: JoinOptions): void {
  checkNodeName(o.node)
  const membership = o.membership && Object.keys(o.membership).length > 0 ? o.membership : undefined
  if (membership) checkMembership(membership)
  if (o.asManager && !o.etcd) throw new UserError('--manager needs --etcd-endpoints: managers keep desired state in etcd')
  if (!o.asManager && o.etcd) throw new UserError('--etcd-* flags are for managers: add --manager (and use the manager token)')
  if (o.etcd) checkEtcdSettings(o.etcd)
  parseToken(o.token)
  parseManagerAddr(o.manager)
}

export async function bootstrapJoin(o: JoinOptions): Promise<NodeConfig & {rejoined?: boolean}> {
  checkJoinInput(o)
  const existing = readNodeConfig(o.node)
  if (existing && memberOfTokensCluster(existing, o.token)) return {...(await bootstrapRejoin(o, existing)), rejoined: true}
  refuseIfMember(o.node)
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
  const cluster = r.entries.find((e) => e.key === CLUSTER_KEY)?.value as ClusterSpec | undefined
  if (r.role === 'manager' && !o.asManager)
    throw new UserError('this token admits managers: join with --manager and --etcd-endpoints (or use the worker token)')
  if (r.role !== 'manager' && o.asManager)
    throw new UserError('this token admits workers: ask a manager for `swarmnet swarm join-token manager`')
  let etcd: EtcdSettings | undefined
  if (o.etcd) {
    if (cluster?.store !== 'etcd' || !cluster.id) throw new UserError('this cluster keeps its state embedded: it has one manager')
    etcd = {...o.etcd, prefix: defaultPrefix(cluster.id)}
    await checkEtcdHolds(etcd)
  }
  // Used from the node's state directory, which tasks never see (etcd-files.ts).
  const etcdGiven = etcd ? givenEtcdPaths(etcd) : undefined
  if (etcd) etcd = keepEtcdFiles(o.node, etcd)
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
    ...(o.membership && Object.keys(o.membership).length > 0 ? {membership: o.membership} : {}),
    nodeKey,
    ...(self?.cert ? {cert: self.cert} : {}),
    clusterIdentity: r.identity,
    ...(etcd ? {etcd, etcdGiven} : {}),
    // A manager admits joins and certifies roles like the first: the identity and tokens came sealed in the answer.
    ...(r.role === 'manager' && r.secrets ? r.secrets : {}),
  }
  writeNodeConfig(cfg)
  return cfg
}

/** A joining manager reaches etcd with its own credentials and finds the cluster's state there. */
async function checkEtcdHolds(settings: EtcdSettings): Promise<void> {
  const client = etcdClient(settings)
  try {
    const n = await client
      .getAll()
      .prefix(`${settings.prefix}state/cluster`)
      .count()
      .catch((e: Error) => {
        throw new UserError(`etcd at ${settings.endpoints.join(',')} cannot be read: ${e.message.split('\n')[0]}`)
      })
    if (n === 0) throw new UserError(`etcd at ${settings.endpoints.join(',')} holds no state for this cluster`)
  } finally {
    client.close()
  }
}

/** Bad timers are refused in one line, before anything is made. */
function checkMembership(m: Partial<MembershipConfig>): void {
  try {
    membershipConfig(m)
  } catch (e) {
    throw new UserError((e as Error).message)
  }
}
