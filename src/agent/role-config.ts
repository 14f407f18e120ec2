// What a node's config becomes when its role changes (node promote / demote):
// a new manager takes the etcd settings and the manager secrets sealed to its
// key in its promotion record; a demoted one forgets both.
import {openSecrets} from '../gossip/manager-secrets.js'
import type {KeyPair} from '../gossip/identity.js'
import type {Promotion} from '../manager/roles.js'
import type {NodeConfig} from './config.js'

export function configAsManager(
  cfg: NodeConfig,
  cert: string,
  p: Promotion,
  nodeKey: KeyPair,
): {cfg: NodeConfig; warning?: string} {
  const secrets = openSecrets(nodeKey, p.sealed)
  const next: NodeConfig = {...cfg, role: 'manager', cert, etcd: p.etcd}
  if (secrets && secrets.identity.publicKey === cfg.clusterIdentity) return {cfg: {...next, ...secrets}}
  return {cfg: next, warning: 'promotion: no manager secrets for this node key: it cannot admit joins nor change roles'}
}

/** A worker holds no secret of the managers': the identity, the tokens and the etcd settings go with the role. */
export function configAsWorker(cfg: NodeConfig, cert: string): NodeConfig {
  const {etcd: _e, etcdGiven: _g, identity: _i, token: _t, managerToken: _m, ...rest} = cfg
  return {...rest, role: 'worker', cert}
}
