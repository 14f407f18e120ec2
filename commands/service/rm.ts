import {Args} from '@oclif/core'
import {SwarmnetCommand, hostFlag} from '../../src/cli/base.js'
import {AgentClient} from '../../src/agent/client.js'

export default class ServiceRm extends SwarmnetCommand {
  static override description = 'Remove one or more services: their tasks stop, their namespaces and links go'
  static override aliases = ['service remove']
  static override strict = false
  static override examples = ['<%= config.bin %> service rm web']
  static override args = {service: Args.string({description: 'service name or id', required: true})}
  static override flags = {host: hostFlag}

  async run(): Promise<void> {
    const {argv, flags} = await this.parse(ServiceRm)
    const client = new AgentClient(flags.host)
    for (const name of argv as string[]) {
      await client.delete(`/services/${encodeURIComponent(name)}`)
      this.log(name)
    }
  }
}
