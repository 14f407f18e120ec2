import {Flags} from '@oclif/core'
import {membershipFlags, membershipOverrides} from '../src/cli/membership-flags.js'
import {etcdFlags, etcdFromFlags} from '../src/cli/etcd-flags.js'
import {UserError} from '../src/model/errors.js'
import {SwarmnetCommand, jsonFlag} from '../src/cli/base.js'
import {printJson} from '../src/cli/output.js'
import {progressMode, runSteps} from '../src/cli/progress.js'
import {bootstrapInit, defaultNodeName} from '../src/agent/bootstrap.js'
import {spawnAgent, waitForAgent} from '../src/agent/spawn.js'
import type {NodeConfig} from '../src/agent/config.js'
import {parseDuration} from '../src/gossip/rotation.js'

export default class Init extends SwarmnetCommand {
  static override description = `Create a cluster with this node as its first manager

Makes the cluster's identity, gossip key and join token, the ingress overlay network and the
local swarmnet_gwbridge, loads the BPF programs onto the underlay device and starts the agent.`
  static override examples = [
    '<%= config.bin %> init --advertise-addr eth0',
    '<%= config.bin %> init --advertise-addr 192.168.1.10 --data-path-port 7789',
    '<%= config.bin %> init --default-addr-pool 10.20.0.0/16',
    '<%= config.bin %> init --store etcd --etcd-endpoints https://10.0.0.1:2379,https://10.0.0.2:2379 --etcd-ca ca.pem --etcd-cert m1.pem --etcd-key m1-key.pem',
    '<%= config.bin %> init --dns 192.168.1.1 --dns-ttl 10',
  ]
  static override flags = {
    ...membershipFlags,
    ...etcdFlags,
    store: Flags.string({
      description: 'where desired state lives: embedded (this manager, the default) or etcd (several managers)',
      options: ['embedded', 'etcd'],
      default: 'embedded',
    }),
    json: jsonFlag,
    node: Flags.string({description: "this node's name (default: the host name)", env: 'SWARMNET_NODE'}),
    'advertise-addr': Flags.string({
      description: 'address (or interface) other nodes reach this one at; also the VXLAN endpoint',
    }),
    'data-path-port': Flags.integer({description: 'UDP port of VXLAN, cluster-wide (1024-49151)', default: 4789}),
    'default-addr-pool': Flags.string({
      description: 'where subnets of networks without --subnet come from (/24s)',
      default: '10.0.0.0/8',
    }),
    'listen-port': Flags.integer({description: 'gossip port (TCP and UDP)', default: 7946, hidden: true}),
    'key-rotation-interval': Flags.string({
      description: 'how often the manager replaces the gossip key on its own (e.g. 12h, 30m; 0 = never)',
      default: '12h',
    }),
    dns: Flags.string({
      description: "upstream resolver for names outside the cluster (repeatable; default: each node's /etc/resolv.conf)",
      multiple: true,
    }),
    'dns-ttl': Flags.integer({description: 'TTL in seconds of the answers about service and task names', min: 0, max: 3600}),
    'xdp-generic': Flags.boolean({description: 'attach XDP in generic (skb) mode: for devices whose driver has no native XDP'}),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(Init)
    const node = flags.node ?? defaultNodeName()
    const etcd = etcdFromFlags(flags)
    if (flags.store === 'etcd' && !etcd) throw new UserError('--store etcd needs --etcd-endpoints')
    if (flags.store !== 'etcd' && etcd) throw new UserError('--etcd-* flags go with --store etcd')
    const keyRotationMs = parseDuration(flags['key-rotation-interval'], '--key-rotation-interval')
    let cfg!: NodeConfig
    await runSteps(
      [
        {
          title: 'Creating the cluster',
          run: async () => {
            cfg = await bootstrapInit({
              node,
              advertiseAddr: flags['advertise-addr'],
              dataPathPort: flags['data-path-port'],
              defaultAddrPool: flags['default-addr-pool'],
              gossipPort: flags['listen-port'],
              xdpMode: flags['xdp-generic'] ? 'generic' : 'native',
              membership: membershipOverrides(flags),
              ...(etcd ? {etcd} : {}),
              keyRotationMs,
              dns: {servers: flags.dns, ttl: flags['dns-ttl']},
            })
          },
        },
        {title: 'Starting the agent and the data plane', run: async () => waitForAgent(node, spawnAgent(node))},
      ],
      progressMode(flags.json),
    )
    const join = `swarmnet join --token ${cfg.token} ${cfg.advertiseAddr}:${cfg.gossipPort}`
    if (flags.json)
      return printJson({
        node,
        nodeId: cfg.nodeId,
        advertiseAddr: cfg.advertiseAddr,
        underlay: cfg.underlay,
        token: cfg.token,
        join,
        ...(cfg.managerToken ? {managerToken: cfg.managerToken, store: 'etcd'} : {}),
      })
    this.log(`Swarm initialized: current node (${cfg.nodeId.slice(0, 12)}) is now a manager.\n`)
    this.log('To add a node to this cluster, run the following command:\n')
    this.log(`    ${join}\n`)
    if (cfg.managerToken) {
      this.log('To add a manager (desired state in etcd), run:\n')
      this.log(
        `    swarmnet join --manager --token ${cfg.managerToken} --etcd-endpoints ${cfg.etcd!.endpoints.join(',')} ${cfg.advertiseAddr}:${cfg.gossipPort}\n`,
      )
    }
  }
}
