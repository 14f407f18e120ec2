import {Args, Flags} from '@oclif/core'
import {SwarmnetCommand, hostFlag, jsonFlag} from '../../src/cli/base.js'
import {printJson} from '../../src/cli/output.js'
import {AgentClient} from '../../src/agent/client.js'
import type {ServiceView} from '../../src/agent/views.js'
import {parsePortRef, parsePublishes} from '../../src/model/ports.js'

export default class ServiceUpdate extends SwarmnetCommand {
  static override description = `Change the published ports of a live service

Removals are applied first, so one command can publish a port again with another target.

Only the service record changes: its tasks keep running, and every flow on its other ports with them. The exception is a service's first ingress port: its tasks are then replaced by tasks on the ingress network.`
  static override examples = [
    '<%= config.bin %> service update web --publish-add 8080:80',
    '<%= config.bin %> service update web --publish-add published=53,target=53,protocol=udp --publish-rm 8080',
    '<%= config.bin %> service update web --publish-rm 8080 --publish-add 8080:81',
    '<%= config.bin %> service update web --network-add name=backend,alias=api --network-rm old',
  ]
  static override args = {service: Args.string({description: 'service name or id', required: true})}
  static override flags = {
    host: hostFlag,
    json: jsonFlag,
    'publish-add': Flags.string({
      description:
        'publish a port (repeatable): P:T[/udp], T[/udp], or published=P,target=T[,protocol=tcp|udp][,mode=ingress|host]; P and T may be ranges; a port already published to the same target is left as it is',
      multiple: true,
      multipleNonGreedy: true,
    }),
    'publish-rm': Flags.string({
      description: 'stop publishing a port (repeatable): its published port, P or P/udp',
      multiple: true,
      multipleNonGreedy: true,
    }),
    'network-add': Flags.string({
      description:
        'attach the service to a network (repeatable): NET or name=NET,alias=A; a VIP there, and each running task an interface on it, plugged in live',
      multiple: true,
      multipleNonGreedy: true,
    }),
    'network-rm': Flags.string({
      description: 'detach the service from a network (repeatable): its tasks are replaced by tasks without it',
      multiple: true,
      multipleNonGreedy: true,
    }),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(ServiceUpdate)
    const add = (flags['publish-add'] ?? []).flatMap((p) => parsePublishes(p, '--publish-add'))
    const rm = (flags['publish-rm'] ?? []).map((p) => parsePortRef(p, '--publish-rm'))
    const nets = {add: flags['network-add'] ?? [], rm: flags['network-rm'] ?? []}
    if (nets.add.length > 0 || nets.rm.length > 0) {
      if (add.length > 0 || rm.length > 0) throw new Error('give network changes and port changes in two updates')
      const svc = await new AgentClient(flags.host).post<ServiceView>(
        `/services/${encodeURIComponent(args.service)}/networks`,
        nets,
      )
      if (flags.json) return printJson(svc)
      return this.log(svc.name)
    }
    if (add.length === 0 && rm.length === 0)
      throw new Error('nothing to change: give --publish-add SPEC, --publish-rm PORT, --network-add NET or --network-rm NET')
    const svc = await new AgentClient(flags.host).post<ServiceView>(`/services/${encodeURIComponent(args.service)}/ports`, {
      add,
      rm,
    })
    if (flags.json) return printJson(svc)
    this.log(svc.name)
  }
}
