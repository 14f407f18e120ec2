import {Flags} from '@oclif/core'
import {SwarmnetCommand, jsonFlag} from '../../src/cli/base.js'
import {printJson} from '../../src/cli/output.js'
import {progressMode, runSteps} from '../../src/cli/progress.js'
import {labUp} from '../../src/lab/lab.js'
import {startLabNode, waitNodesReady} from '../../src/lab/nodes.js'
import {checkDnsSpec} from '../../src/dns/config.js'
import {DNS_TTL_MAX} from '../../src/model/defaults.js'

export default class LabUp extends SwarmnetCommand {
  static override description = `Build a whole cluster on this host: N nodes, each in its own network namespace on a virtual switch, plus a 'client' host standing for the outside world

Node n1 runs \`swarmnet init\`, the others \`swarmnet join\`. Nothing outside the namespaces it
makes is touched; \`swarmnet lab down\` removes all of it. It returns once n1 sees every node
ready with its agent up, so a service created next is placed on all of them.`
  static override examples = [
    '<%= config.bin %> lab up',
    '<%= config.bin %> lab up --nodes 5',
    '<%= config.bin %> lab up --nodes 5 --managers 3 --store etcd',
  ]
  static override flags = {
    json: jsonFlag,
    nodes: Flags.integer({char: 'n', description: 'how many nodes', default: 3, min: 1, max: 89}),
    dns: Flags.string({description: "passed to n1's `swarmnet init --dns` (repeatable)", multiple: true}),
    'dns-ttl': Flags.integer({description: "passed to n1's `swarmnet init --dns-ttl`", min: 0, max: DNS_TTL_MAX}),
    managers: Flags.integer({description: 'how many of the first nodes are managers (more than 1 needs --store etcd)', min: 1}),
    store: Flags.string({
      description: 'desired state: embedded (one manager) or etcd (a 3-member etcd with TLS in n1..n3, managers on it)',
      options: ['embedded', 'etcd'],
      default: 'embedded',
    }),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(LabUp)
    // What n1's init would refuse is refused here, before a namespace is made.
    checkDnsSpec({servers: flags.dns ?? [], ttl: flags['dns-ttl']})
    let state!: Awaited<ReturnType<typeof labUp>>
    await runSteps(
      [
        {
          title: `Building a ${flags.nodes}-node lab`,
          run: async (detail) => {
            state = await labUp({
              nodes: flags.nodes,
              managers: flags.managers ?? 1,
              ...(flags.store === 'etcd' ? {etcdMembers: Math.min(3, flags.nodes)} : {}),
              onStep: detail,
              startNode: async (node, _i, lab) => {
                detail(node.index === 1 ? `${node.name}: swarmnet init` : `${node.name}: swarmnet join`)
                await startLabNode(node, lab, [
                  ...(flags.dns ?? []).flatMap((d) => ['--dns', d]),
                  ...(flags['dns-ttl'] !== undefined ? ['--dns-ttl', String(flags['dns-ttl'])] : []),
                ])
              },
            })
            detail(`every node ready on ${state.nodes[0]?.name ?? 'n1'}`)
            await waitNodesReady(state.nodes).catch((e: Error) => {
              throw new Error(`lab up: ${e.message} (the lab is left up; \`swarmnet lab down\` removes it)`)
            })
          },
        },
      ],
      progressMode(flags.json),
    )
    if (flags.json) return printJson(state)
    for (const n of state.nodes) this.log(`${n.name}  ${n.address}  (netns ${n.netns})`)
    this.log(`client  ${state.client.address}  (netns ${state.client.netns})`)
    if (state.etcd) this.log(`etcd    ${state.etcd.endpoints.join(',')}  (TLS; data and certificates in ${state.etcd.dir})`)
    this.log('\nTry: swarmnet lab exec n1 -- swarmnet node ls')
  }
}
