import {Args} from '@oclif/core'
import {SwarmnetCommand, hostFlag, jsonFlag} from '../../src/cli/base.js'
import {printJson} from '../../src/cli/output.js'
import {AgentClient} from '../../src/agent/client.js'
import type {ServiceView} from '../../src/agent/views.js'

export default class ServiceRollback extends SwarmnetCommand {
  static override description = `Go back to a service's spec before its last update that replaced its tasks

Rolled out as an update is (its --update-parallelism and --update-order); the VIPs and ports stay.`
  static override examples = ['<%= config.bin %> service rollback web']
  static override args = {service: Args.string({description: 'service name or id', required: true})}
  static override flags = {host: hostFlag, json: jsonFlag}

  async run(): Promise<void> {
    const {args, flags} = await this.parse(ServiceRollback)
    const svc = await new AgentClient(flags.host).post<ServiceView>(`/services/${encodeURIComponent(args.service)}/rollback`, {})
    if (flags.json) return printJson(svc)
    this.log(svc.name)
  }
}
