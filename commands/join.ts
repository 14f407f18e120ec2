import {Args, Flags} from '@oclif/core'
import {membershipFlags, membershipOverrides} from '../src/cli/membership-flags.js'
import {etcdFlags, etcdFromFlags} from '../src/cli/etcd-flags.js'
import {SwarmnetCommand, jsonFlag} from '../src/cli/base.js'
import {printJson} from '../src/cli/output.js'
import {progressMode, runSteps} from '../src/cli/progress.js'
import {bootstrapJoin, checkJoinInput, defaultNodeName, type JoinOptions} from '../src/agent/bootstrap.js'
import {spawnAgent, waitForAgent} from '../src/agent/spawn.js'
import type {NodeConfig} from '../src/agent/config.js'

export default class Join extends SwarmnetCommand {
  static override description = 'Join a cluster as a node, with a token from `swarmnet swarm join-token`'
  static override examples = ['<%= config.bin %> join --token SWMTKN-1-... 192.168.1.10:7946']
  static override args = {manager: Args.string({description: 'a manager: ADDR[:7946]', required: true})}
  static override flags = {
    ...membershipFlags,
    ...etcdFlags,
    manager: Flags.boolean({
      description: 'join as a manager (clusters on etcd; needs the manager token and --etcd-endpoints)',
    }),
    json: jsonFlag,
    token: Flags.string({description: 'the join token', required: true}),
    node: Flags.string({description: "this node's name (default: the host name)", env: 'SWARMNET_NODE'}),
    'advertise-addr': Flags.string({
      description: 'address (or interface) other nodes reach this one at; also the VXLAN endpoint',
    }),
    'listen-port': Flags.integer({description: 'gossip port (TCP and UDP)', default: 7946, hidden: true}),
    'xdp-generic': Flags.boolean({description: 'attach XDP in generic (skb) mode: for devices whose driver has no native XDP'}),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(Join)
    const node = flags.node ?? defaultNodeName()
    const etcd = etcdFromFlags(flags)
    const options: JoinOptions = {
      node,
      token: flags.token,
      manager: args.manager,
      advertiseAddr: flags['advertise-addr'],
      gossipPort: flags['listen-port'],
      xdpMode: flags['xdp-generic'] ? 'generic' : 'native',
      membership: membershipOverrides(flags),
      asManager: flags.manager,
      ...(etcd ? {etcd} : {}),
    }
    checkJoinInput(options)
    let cfg!: NodeConfig & {rejoined?: boolean}
    await runSteps(
      [
        {
          title: `Joining the cluster through ${args.manager}`,
          run: async () => {
            cfg = await bootstrapJoin(options)
          },
        },
        {title: 'Starting the agent and the data plane', run: async () => waitForAgent(node, spawnAgent(node))},
      ],
      progressMode(flags.json),
    )
    if (flags.json)
      return printJson({
        node,
        nodeId: cfg.nodeId,
        role: cfg.role,
        advertiseAddr: cfg.advertiseAddr,
        rejoined: cfg.rejoined === true,
      })
    if (cfg.rejoined) this.log(`This node joined its swarm again as a ${cfg.role}, with the current cluster key.`)
    else this.log(`This node joined a swarm as a ${cfg.role}.`)
  }
}
