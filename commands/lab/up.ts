import {Flags} from '@oclif/core'
import {SwarmnetCommand, jsonFlag} from '../../src/cli/base.js'
import {printJson} from '../../src/cli/output.js'
import {progressMode, runSteps} from '../../src/cli/progress.js'
import {labUp} from '../../src/lab/lab.js'
import {startLabNode} from '../../src/lab/nodes.js'

export default class LabUp extends SwarmnetCommand {
  static override description = `Build a whole cluster on this host: N nodes, each in its own network namespace on a virtual switch, plus a 'client' host standing for the outside world

Node n1 runs \`swarmnet init\`, the others \`swarmnet join\`. Nothing outside the namespaces it
makes is touched; \`swarmnet lab down\` removes all of it.`
  static override examples = ['<%= config.bin %> lab up', '<%= config.bin %> lab up --nodes 5']
  static override flags = {
    json: jsonFlag,
    nodes: Flags.integer({char: 'n', description: 'how many nodes', default: 3, min: 1, max: 89}),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(LabUp)
    let state!: Awaited<ReturnType<typeof labUp>>
    await runSteps(
      [
        {
          title: `Building a ${flags.nodes}-node lab`,
          run: async (detail) => {
            state = await labUp({
              nodes: flags.nodes,
              onStep: detail,
              startNode: async (node) => {
                detail(node.index === 1 ? `${node.name}: swarmnet init` : `${node.name}: swarmnet join`)
                await startLabNode(node)
              },
            })
          },
        },
      ],
      progressMode(flags.json),
    )
    if (flags.json) return printJson(state)
    for (const n of state.nodes) this.log(`${n.name}  ${n.address}  (netns ${n.netns})`)
    this.log(`client  ${state.client.address}  (netns ${state.client.netns})`)
    this.log('\nTry: swarmnet lab exec n1 -- swarmnet node ls')
  }
}
