import {Args} from '@oclif/core'
import {SwarmnetCommand, hostFlag, jsonFlag} from '../../src/cli/base.js'
import {printJson} from '../../src/cli/output.js'
import {AgentClient} from '../../src/agent/client.js'
import type {ServiceView} from '../../src/agent/views.js'
import {parsePortRef, portKey} from '../../src/model/ports.js'

export default class ServiceUnpublish extends SwarmnetCommand {
  static override description = `Stop publishing a port of a live service (service update --publish-rm, shorter)

Its tasks keep running; the ingress attachment stays until the service is removed.`
  static override examples = ['<%= config.bin %> service unpublish web 8080', '<%= config.bin %> service unpublish dns 53/udp']
  static override args = {
    service: Args.string({description: 'service name or id', required: true}),
    port: Args.string({description: 'the published port: P or P/udp', required: true}),
  }
  static override flags = {host: hostFlag, json: jsonFlag}

  async run(): Promise<void> {
    const {args, flags} = await this.parse(ServiceUnpublish)
    const ref = parsePortRef(args.port, 'port')
    const svc = await new AgentClient(flags.host).post<ServiceView>(`/services/${encodeURIComponent(args.service)}/ports`, {
      add: [],
      rm: [ref],
    })
    if (flags.json) return printJson(svc)
    this.log(portKey(ref))
  }
}
