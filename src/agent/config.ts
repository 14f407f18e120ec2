// A node's own settings, written once by init or join, read by its agent at
// every start. Holds the cluster key, so it is root-only (0600).
import {existsSync, mkdirSync, readFileSync} from 'node:fs'
import {dirname} from 'node:path'
import {Keyring} from '../gossip/keyring.js'
import type {MembershipConfig} from '../membership/config.js'
import type {NodeRole} from '../model/types.js'
import type {EtcdSettings} from '../manager/etcd-client.js'
import {nodeConfigPath} from './paths.js'
import {writeFileDurably} from '../sys/durable-file.js'

export type NodeConfig = {
  nodeId: string
  name: string
  role: NodeRole
  advertiseAddr: string
  /** the underlay device: where XDP attaches and VXLAN leaves */
  underlay: string
  mtu: number
  gossipPort: number
  bindAddr: string
  /** base64 AES-256 cluster key, and the id its packets carry (the manager's, given at join) */
  key: string
  keyId: number
  /** every installed key, the one in use included (more than one during a rotation) */
  keys?: {id: number; key: string}[]
  /** managers: automatic key rotation (intervalMs 0 = off) and when the last one ended */
  keyRotation?: {intervalMs: number; lastAt?: number}
  xdpMode: 'native' | 'generic'
  /** failure detection timers set at init or join; the defaults otherwise */
  membership?: Partial<MembershipConfig>
  /** this node's Ed25519 key pair: signs every store entry it writes */
  nodeKey?: {publicKey: string; privateKey: string}
  /** the cluster identity's certificate for nodeKey and role (issued at init or join) */
  cert?: string
  /** the cluster identity's public key: the root of trust for every writer's certificate */
  clusterIdentity?: string
  /** managers only: the cluster identity and the join token */
  identity?: {publicKey: string; privateKey: string}
  token?: string
  /** etcd clusters: the token that admits a node as a manager (managers holding the identity only) */
  managerToken?: string
  /** managers of an etcd cluster: where the desired state lives and the TLS files to reach it (the node's copies) */
  etcd?: EtcdSettings
  /** The TLS paths as the user gave them: what node promote offers the new manager by default (src/agent/etcd-files.ts). */
  etcdGiven?: {ca?: string; cert?: string; key?: string}
}

export function readNodeConfig(node: string): NodeConfig | undefined {
  const p = nodeConfigPath(node)
  if (!existsSync(p)) return undefined
  try {
    return JSON.parse(readFileSync(p, 'utf8')) as NodeConfig
  } catch (e) {
    throw new Error(`cannot read ${p}: ${(e as Error).message}`)
  }
}

export function writeNodeConfig(cfg: NodeConfig): void {
  const p = nodeConfigPath(cfg.name)
  mkdirSync(dirname(p), {recursive: true, mode: 0o700})
  writeFileDurably(p, JSON.stringify(cfg, null, 2) + '\n')
}

/** The keyring gossip seals with: the cluster key under the id the whole cluster uses for it. */
export function clusterKeyring(cfg: Pick<NodeConfig, 'key' | 'keyId' | 'keys'>): Keyring {
  const ring = new Keyring(Buffer.from(cfg.key, 'base64'), cfg.keyId)
  for (const k of cfg.keys ?? []) if (k.id !== cfg.keyId) ring.install(k.id, Buffer.from(k.key, 'base64'))
  return ring
}

/** Writes the keyring into the config (primary as key/keyId, all of them in keys). */
export function setKeyring(cfg: NodeConfig, ring: Keyring): void {
  cfg.key = ring.primaryKey().toString('base64')
  cfg.keyId = ring.primary
  cfg.keys = ring.entries().map((k) => ({id: k.id, key: k.key.toString('base64')}))
}
