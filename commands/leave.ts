import {SwarmnetCommand, hostFlag} from '../src/cli/base.js'
import {AgentClient} from '../src/agent/client.js'

export default class Leave extends SwarmnetCommand {
  static override description = 'Leave the cluster: stop this node\'s tasks, detach its programs, remove its state'
  static override examples = ['<%= config.bin %> leave']
  static override flags = {host: hostFlag}

  async run(): Promise<void> {
    const {flags} = await this.parse(Leave)
    const client = new AgentClient(flags.host)
    await client.post('/leave')
    this.log(`Node ${client.node} left the swarm.`)
  }
}
