import {Flags} from '@oclif/core'
import {SwarmnetCommand, hostFlag} from '../src/cli/base.js'
import {AgentClient} from '../src/agent/client.js'

export default class Leave extends SwarmnetCommand {
  static override description = "Leave the cluster: stop this node's tasks, detach its programs, remove its state"
  static override examples = [
    '<%= config.bin %> leave',
    '<%= config.bin %> leave --force   # the manager, leaving its workers behind',
  ]
  static override flags = {
    host: hostFlag,
    force: Flags.boolean({char: 'f', description: 'leave even if this is the manager and other nodes remain'}),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(Leave)
    const client = new AgentClient(flags.host)
    await client.post('/leave', {force: flags.force})
    this.log(`Node ${client.node} left the swarm.`)
  }
}
