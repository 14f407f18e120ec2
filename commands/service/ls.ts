import {SwarmnetCommand, hostFlag, jsonFlag} from '../../src/cli/base.js'
import {printJson, printTable} from '../../src/cli/output.js'
import {AgentClient} from '../../src/agent/client.js'
import type {ServiceView} from '../../src/agent/views.js'
import {formatIngressPort, sortPorts} from '../../src/model/ports.js'

export default class ServiceLs extends SwarmnetCommand {
  static override description = `List services

PORTS shows the ingress ports as Docker does, *:P->T/tcp; host-mode ports are in service inspect.`
  static override aliases = ['service list']
  static override examples = ['<%= config.bin %> service ls']
  static override flags = {host: hostFlag, json: jsonFlag}

  async run(): Promise<void> {
    const {flags} = await this.parse(ServiceLs)
    const svcs = await new AgentClient(flags.host).get<ServiceView[]>('/services')
    if (flags.json) return printJson(svcs)
    printTable(
      ['id', 'name', 'mode', 'replicas', 'networks', 'vips', 'ports', 'command'],
      svcs.map((s) => [
        s.id.slice(0, 12),
        s.name,
        s.mode,
        `${s.running}/${s.desired}`,
        s.networks.join(','),
        s.endpointMode === 'dnsrr' ? 'dnsrr' : s.vips.map((v) => `${v.network}=${v.ip}`).join(',') || '-',
        // As docker service ls: ingress ports only, comma-separated.
        sortPorts(s.ports.filter((p) => p.mode === 'ingress'))
          .map(formatIngressPort)
          .join(','),
        s.command.join(' '),
      ]),
    )
  }
}
