import {Args, Flags} from '@oclif/core'
import {SwarmnetCommand, hostFlag} from '../../src/cli/base.js'
import {AgentClient} from '../../src/agent/client.js'

export default class NetworkRm extends SwarmnetCommand {
  static override description = `Remove one or more networks (refused while tasks use them)

The cluster's ingress network is removed only with --force: it cannot be created again.`
  static override aliases = ['network remove']
  static override strict = false
  static override examples = ['<%= config.bin %> network rm backend', '<%= config.bin %> network rm --force ingress']
  static override args = {name: Args.string({description: 'network name or id', required: true})}
  static override flags = {
    host: hostFlag,
    force: Flags.boolean({char: 'f', description: 'remove the ingress network too'}),
  }

  async run(): Promise<void> {
    const {argv, flags} = await this.parse(NetworkRm)
    const client = new AgentClient(flags.host)
    for (const name of argv as string[]) {
      await client.delete(`/networks/${encodeURIComponent(name)}${flags.force ? '?force=1' : ''}`)
      this.log(name)
    }
  }
}
