// A manager's requests about roles and joins, as the API serves them: node
// promote / demote (through the desired-state authority, src/manager/roles.ts),
// the join tokens (shown, rotated and sealed to the other managers), and the
// tokens another manager rotated (adopted from the copy sealed to this node).
// A worker's agent refuses them in one line, naming where to ask.
import type {KeyPair} from '../gossip/identity.js'
import {adoptedTokens, secretsFor, secretsKey} from '../gossip/manager-secrets.js'
import {rotateToken} from '../gossip/token.js'
import type {MembershipView} from '../membership/view.js'
import {UserError} from '../model/errors.js'
import {checkEtcdSettings} from '../manager/etcd-client.js'
import {changeRoleThrough} from '../manager/roles.js'
import type {ClusterReader} from '../store/cluster-reader.js'
import type {Store} from '../store/store.js'
import {writeNodeConfig, type NodeConfig} from './config.js'
import type {NodeRole} from './node-role.js'

export type ManagerRequestsOptions = {
  cfg: NodeConfig
  nodeKey: KeyPair
  store: Store
  controller: ClusterReader
  role: NodeRole
  /** Down now: a promotion of a down node is refused (roles.ts). */
  liveness: MembershipView
  log: (m: string) => void
}

type Tls = {ca?: string; cert?: string; key?: string}

export class ManagerRequests {
  constructor(private readonly o: ManagerRequestsOptions) {}

  /** node promote / demote; tls: the new manager's files, default this manager's. */
  async changeRole(ref: string, role: 'manager' | 'worker', tls: Tls): Promise<{node: string; role: string}> {
    const {cfg, controller} = this.o
    const backend = this.o.role.backend
    if (cfg.role !== 'manager' || !backend) throw new UserError('this node is a worker: run node promote/demote on a manager')
    // By default the paths this manager was given (the same on every host by convention), not its own copies.
    const etcd = role === 'manager' && cfg.etcd ? {...cfg.etcd, ...(cfg.etcdGiven ?? {}), ...tls} : undefined
    if (etcd) checkEtcdSettings(etcd)
    const ch = await changeRoleThrough(backend, this.o.store, {
      nodes: () => controller.nodes(),
      cluster: controller.cluster(),
      ref,
      role,
      secrets: this.o.role.secrets(),
      etcd,
      isDown: (id) => this.o.liveness.isDown(id),
      selfId: cfg.nodeId,
    })
    return {node: ch.record.name, role}
  }

  /** swarm join-token [--rotate] worker|manager. */
  joinToken(rotate: boolean, role: 'worker' | 'manager' = 'worker'): {token: string; addr: string} {
    const {cfg} = this.o
    if (cfg.role !== 'manager' || !cfg.token) throw new Error('this node is a worker: ask a manager for the join token')
    if (role === 'manager' && !cfg.managerToken)
      throw new UserError(
        cfg.etcd
          ? 'this manager holds no cluster identity: it cannot admit managers (ask another manager)'
          : 'this cluster keeps its state embedded: it has one manager (init --store etcd for several)',
      )
    const which = role === 'manager' ? 'managerToken' : 'token'
    if (rotate) {
      cfg[which] = rotateToken(cfg[which]!).text
      writeNodeConfig(cfg)
      // The other managers admit with the new token only, once they read their sealed copy.
      const secrets = this.o.role.secrets()
      const managers = this.o.controller.nodes().filter((n) => n.role === 'manager' && n.state !== 'left')
      if (secrets) for (const r of secretsFor(managers, cfg.nodeId, secrets)) this.o.store.put(r.key, r.value)
    }
    return {token: cfg[which]!, addr: `${cfg.advertiseAddr}:${cfg.gossipPort}`}
  }

  /** A store change: the tokens another manager rotated, sealed to this node, are taken. */
  onChange(key: string, value: unknown): void {
    const {cfg} = this.o
    if (key !== secretsKey(cfg.nodeId) || cfg.role !== 'manager') return
    const t = adoptedTokens(this.o.nodeKey, cfg.identity?.publicKey, value)
    if (t && (t.token !== cfg.token || t.managerToken !== cfg.managerToken)) {
      Object.assign(cfg, t)
      writeNodeConfig(cfg)
      this.o.log('join tokens: rotated by another manager')
    }
  }
}
