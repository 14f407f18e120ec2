import {Args} from '@oclif/core'
import {SwarmnetCommand, hostFlag, jsonFlag} from '../../src/cli/base.js'
import {printJson, printTable} from '../../src/cli/output.js'
import {AgentClient} from '../../src/agent/client.js'
import type {DnsInspectView} from '../../src/dns/inspect.js'

export default class InspectDns extends SwarmnetCommand {
  static override description = `Show the names a node's resolver answers for its tasks, per network, and its counters

A task resolves the names of the networks it is attached to; other names are forwarded upstream.`
  static override examples = ['<%= config.bin %> inspect dns', '<%= config.bin %> inspect dns backend --json']
  static override args = {network: Args.string({description: 'only this network (name)'})}
  static override flags = {host: hostFlag, json: jsonFlag}

  async run(): Promise<void> {
    const {args, flags} = await this.parse(InspectDns)
    const v = await new AgentClient(flags.host).get<DnsInspectView>('/dns')
    if (args.network !== undefined) {
      v.networks = v.networks.filter((n) => n.network === args.network)
      if (v.networks.length === 0) throw new Error(`network ${args.network} not found (or not an overlay network)`)
    }
    if (flags.json) return printJson(v)
    const rows: string[][] = []
    for (const n of v.networks) {
      if (n.names.length === 0) rows.push([n.network, '(no names)', '', ''])
      for (const [i, x] of n.names.entries())
        rows.push([i === 0 ? n.network : '', x.name, x.kind, x.ips.join(',') || '(none running)'])
    }
    printTable(['network', 'name', 'kind', 'addresses'], rows)
    this.log(`\nresolver ${v.listen} (ttl ${v.ttl}s), upstreams: ${v.upstreams.join(', ') || 'none'}`)
    this.log(
      Object.entries(v.counters)
        .map(([k, n]) => `${k}=${n}`)
        .join(' '),
    )
  }
}
