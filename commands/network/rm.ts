import {Args} from '@oclif/core'
import {SwarmnetCommand, hostFlag} from '../../src/cli/base.js'
import {AgentClient} from '../../src/agent/client.js'

export default class NetworkRm extends SwarmnetCommand {
  static override description = 'Remove one or more networks (refused while tasks use them)'
  static override aliases = ['network remove']
  static override strict = false
  static override examples = ['<%= config.bin %> network rm backend']
  static override args = {name: Args.string({description: 'network name or id', required: true})}
  static override flags = {host: hostFlag}

  async run(): Promise<void> {
    const {argv, flags} = await this.parse(NetworkRm)
    const client = new AgentClient(flags.host)
    for (const name of argv as string[]) {
      await client.delete(`/networks/${encodeURIComponent(name)}`)
      this.log(name)
    }
  }
}
