import {SwarmnetCommand, hostFlag, jsonFlag} from '../../src/cli/base.js'
import {printJson, printTable} from '../../src/cli/output.js'
import {AgentClient} from '../../src/agent/client.js'
import type {NetworkView} from '../../src/agent/views.js'

export default class NetworkLs extends SwarmnetCommand {
  static override description = 'List networks'
  static override aliases = ['network list']
  static override examples = ['<%= config.bin %> network ls', '<%= config.bin %> network ls --json']
  static override flags = {host: hostFlag, json: jsonFlag}

  async run(): Promise<void> {
    const {flags} = await this.parse(NetworkLs)
    const nets = await new AgentClient(flags.host).get<NetworkView[]>('/networks')
    if (flags.json) return printJson(nets)
    printTable(
      ['network id', 'name', 'driver', 'scope', 'subnet', 'vni'],
      nets.map((n) => [n.id.slice(0, 12), n.name, n.driver, n.scope, n.subnet, n.vni ?? '-']),
    )
  }
}
