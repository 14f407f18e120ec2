import {Args} from '@oclif/core'
import {SwarmnetCommand, hostFlag, jsonFlag} from '../../src/cli/base.js'
import {printJson, printTable} from '../../src/cli/output.js'
import {AgentClient} from '../../src/agent/client.js'
import type {ServiceInspectView} from '../../src/agent/views.js'
import {formatPort, sortPorts} from '../../src/model/ports.js'
import {formatDuration} from '../../src/model/duration.js'

export default class ServiceInspect extends SwarmnetCommand {
  static override description =
    'Show a service: its mode, endpoint mode, VIP on each network, published ports, and its backends with their state'
  static override examples = ['<%= config.bin %> service inspect web', '<%= config.bin %> service inspect web --json']
  static override args = {service: Args.string({description: 'service name or id', required: true})}
  static override flags = {host: hostFlag, json: jsonFlag}

  async run(): Promise<void> {
    const {args, flags} = await this.parse(ServiceInspect)
    const s = await new AgentClient(flags.host).get<ServiceInspectView>(`/services/${encodeURIComponent(args.service)}`)
    if (flags.json) return printJson(s)
    this.log(`Name:           ${s.name}`)
    this.log(`ID:             ${s.id}`)
    this.log(`Mode:           ${s.mode} (${s.running}/${s.desired} running)`)
    this.log(`Endpoint mode:  ${s.endpointMode}`)
    if (s.endpointMode === 'dnsrr') this.log('VIPs:           dnsrr: no VIP')
    else if (s.vips.length === 0) this.log('VIPs:           - (no network)')
    else s.vips.forEach((v, i) => this.log(`${i === 0 ? 'VIPs:' : ''.padEnd(5)}           ${v.network}=${v.ip}`))
    const ports = sortPorts(s.ports)
    if (ports.length === 0) this.log('Ports:          -')
    else ports.forEach((p, i) => this.log(`${i === 0 ? 'Ports:' : ''.padEnd(6)}          ${formatPort(p)}`))
    this.log(`Command:        ${s.command.join(' ') || '(whoami)'}`)
    if (s.placement?.constraints) this.log(`Constraints:    ${s.placement.constraints.join(', ')}`)
    if (s.placement?.preferences) this.log(`Preferences:    ${s.placement.preferences.join(', ')}`)
    if (s.update) {
      const u = s.update
      this.log(
        `Update:         ${u.state ?? '-'} (spec ${u.specVersion}, ${u.order}, parallelism ${u.parallelism}, delay ${formatDuration(u.delayMs)}, monitor ${formatDuration(u.monitorMs)}, on failure ${u.failureAction}, max failure ratio ${u.maxFailureRatio})`,
      )
      if (u.message) this.log(`Update status:  ${u.message}`)
    }
    this.log('')
    printTable(
      ['network', 'task', 'address', 'node', 'state'],
      s.backends.map((b) => [b.network, b.task, b.ip, b.node, b.state]),
    )
  }
}
