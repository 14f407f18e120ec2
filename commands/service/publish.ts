import {Args, Flags} from '@oclif/core'
import {SwarmnetCommand, hostFlag, jsonFlag} from '../../src/cli/base.js'
import {printJson} from '../../src/cli/output.js'
import {AgentClient} from '../../src/agent/client.js'
import type {ServiceView} from '../../src/agent/views.js'
import {formatPort, parsePublish} from '../../src/model/ports.js'

export default class ServicePublish extends SwarmnetCommand {
  static override description = `Publish a port of a live service (service update --publish-add, shorter)

Prints the port as published: with T alone, P is allocated from 30000-32767.`
  static override examples = [
    '<%= config.bin %> service publish web 8080:80',
    '<%= config.bin %> service publish dns 53:53/udp',
    '<%= config.bin %> service publish web 80',
    '<%= config.bin %> service publish web 8080:80 --mode host',
  ]
  static override args = {
    service: Args.string({description: 'service name or id', required: true}),
    port: Args.string({description: 'P:T[/udp] or T[/udp]', required: true}),
  }
  static override flags = {
    host: hostFlag,
    json: jsonFlag,
    mode: Flags.string({
      description: 'ingress: every node answers on P; host: only the nodes running a task',
      options: ['ingress', 'host'],
      default: 'ingress',
    }),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(ServicePublish)
    if (args.port.includes('='))
      throw new Error(`invalid port '${args.port}': give P:T[/udp] or T[/udp] (the long form is for --publish-add)`)
    const port = {...parsePublish(args.port, 'port'), mode: flags.mode as 'ingress' | 'host'}
    const svc = await new AgentClient(flags.host).post<ServiceView>(`/services/${encodeURIComponent(args.service)}/ports`, {
      add: [port],
      rm: [],
    })
    if (flags.json) return printJson(svc)
    // The manager appends what it publishes: the last port is this one, with its published number.
    const shown = svc.ports.at(-1)
    this.log(shown ? formatPort(shown) : svc.name)
  }
}
