import {SwarmnetCommand} from '../../src/cli/base.js'
import {paint} from '../../src/cli/output.js'
import {labUp} from '../../src/lab/lab.js'
import {runDemo} from '../../src/lab/demo.js'
import {startLabNode} from '../../src/lab/nodes.js'

export default class LabDemo extends SwarmnetCommand {
  static override description = `Bring up a 3-node lab, create an overlay network, run a 3-replica whoami service on it, and show a task on one node reaching the tasks on the other two

The lab stays up afterwards for you to explore; \`swarmnet lab down\` removes it.`
  static override examples = ['<%= config.bin %> lab demo']

  async run(): Promise<void> {
    await this.parse(LabDemo)
    const c = paint()
    this.log(c.bold('swarmnet lab up --nodes 3'))
    const state = await labUp({nodes: 3, startNode: (node) => startLabNode(node)})
    for (const n of state.nodes) this.log(`  ${n.name} ${n.address}`)
    await runDemo((s) => {
      this.log(c.bold(s.title))
      for (const line of s.output.split('\n')) this.log(`  ${line}`)
    })
    this.log('')
    this.log('The lab is up. Explore it:')
    this.log('  swarmnet lab exec n1 -- swarmnet service ps whoami')
    this.log('  swarmnet lab exec n2 -- swarmnet network inspect demo')
    this.log('  SWARMNET_HOST=n3 swarmnet inspect maps')
    this.log('and remove it with: swarmnet lab down')
  }
}
