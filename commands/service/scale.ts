import {Args} from '@oclif/core'
import {SwarmnetCommand, hostFlag} from '../../src/cli/base.js'
import {AgentClient} from '../../src/agent/client.js'

export default class ServiceScale extends SwarmnetCommand {
  static override description = 'Scale one or more replicated services'
  static override strict = false
  static override examples = ['<%= config.bin %> service scale web=5', '<%= config.bin %> service scale web=2 api=4']
  static override args = {scale: Args.string({description: 'SERVICE=REPLICAS', required: true})}
  static override flags = {host: hostFlag}

  async run(): Promise<void> {
    const {argv, flags} = await this.parse(ServiceScale)
    const client = new AgentClient(flags.host)
    for (const spec of argv as string[]) {
      const m = /^([^=]+)=(\d+)$/.exec(spec)
      if (!m) throw new Error(`invalid scale '${spec}': expected SERVICE=REPLICAS, e.g. web=3`)
      await client.post(`/services/${encodeURIComponent(m[1]!)}/scale`, {replicas: Number(m[2])})
      this.log(`${m[1]} scaled to ${m[2]}`)
    }
  }
}
