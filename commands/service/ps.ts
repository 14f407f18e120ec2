import {Args} from '@oclif/core'
import {SwarmnetCommand, hostFlag, jsonFlag} from '../../src/cli/base.js'
import {printJson, printTable} from '../../src/cli/output.js'
import {AgentClient} from '../../src/agent/client.js'
import type {TaskView} from '../../src/agent/views.js'

export default class ServicePs extends SwarmnetCommand {
  static override description = "List a service's tasks: node, state, addresses, network namespace"
  static override examples = ['<%= config.bin %> service ps web', '<%= config.bin %> service ps web --json']
  static override args = {service: Args.string({description: 'service name or id', required: true})}
  static override flags = {host: hostFlag, json: jsonFlag}

  async run(): Promise<void> {
    const {args, flags} = await this.parse(ServicePs)
    const tasks = await new AgentClient(flags.host).get<TaskView[]>(`/services/${encodeURIComponent(args.service)}/tasks`)
    if (flags.json) return printJson(tasks)
    printTable(
      ['id', 'name', 'node', 'desired state', 'current state', 'addresses', 'netns'],
      tasks.map((t) => [
        t.id.slice(0, 12),
        t.name,
        t.node,
        t.desiredState,
        t.state + (t.health ? ` (${t.health})` : '') + (t.restarts > 0 ? ` (restarted ${t.restarts}x)` : ''),
        t.addresses.map((a) => `${a.network}=${a.ip}`).join(','),
        t.netns ?? '-',
      ]),
    )
  }
}
