import {SwarmnetCommand, hostFlag, jsonFlag} from '../../src/cli/base.js'
import {printJson, printTable} from '../../src/cli/output.js'
import {AgentClient} from '../../src/agent/client.js'
import type {ServiceView} from '../../src/agent/views.js'

export default class ServiceLs extends SwarmnetCommand {
  static override description = 'List services'
  static override aliases = ['service list']
  static override examples = ['<%= config.bin %> service ls']
  static override flags = {host: hostFlag, json: jsonFlag}

  async run(): Promise<void> {
    const {flags} = await this.parse(ServiceLs)
    const svcs = await new AgentClient(flags.host).get<ServiceView[]>('/services')
    if (flags.json) return printJson(svcs)
    printTable(
      ['id', 'name', 'mode', 'replicas', 'networks', 'vips', 'command'],
      svcs.map((s) => [
        s.id.slice(0, 12),
        s.name,
        s.mode,
        `${s.running}/${s.desired}`,
        s.networks.join(','),
        s.endpointMode === 'dnsrr' ? 'dnsrr' : s.vips.map((v) => `${v.network}=${v.ip}`).join(',') || '-',
        s.command.join(' '),
      ]),
    )
  }
}
