import {Args} from '@oclif/core'
import {SwarmnetCommand, hostFlag, jsonFlag} from '../../src/cli/base.js'
import {printJson, printTable} from '../../src/cli/output.js'
import {AgentClient} from '../../src/agent/client.js'
import type {NetworkView} from '../../src/agent/views.js'

export default class NetworkInspect extends SwarmnetCommand {
  static override description = 'Show a network: subnet, VNI, the nodes that have tasks on it, and every endpoint'
  static override examples = ['<%= config.bin %> network inspect backend', '<%= config.bin %> network inspect backend --json']
  static override args = {name: Args.string({description: 'network name or id', required: true})}
  static override flags = {host: hostFlag, json: jsonFlag}

  async run(): Promise<void> {
    const {args, flags} = await this.parse(NetworkInspect)
    const n = await new AgentClient(flags.host).get<NetworkView>(`/networks/${encodeURIComponent(args.name)}`)
    if (flags.json) return printJson(n)
    this.log(`Name:        ${n.name}`)
    this.log(`ID:          ${n.id}`)
    this.log(`Driver:      ${n.driver} (${n.scope})`)
    this.log(`Subnet:      ${n.subnet}   Gateway: ${n.gateway}`)
    if (n.vni !== undefined) this.log(`VNI:         ${n.vni}`)
    this.log(`MTU:         ${n.mtu}`)
    this.log(`Attachable:  ${n.attachable}   Ingress: ${n.ingress}   Internal: ${n.internal === true}`)
    this.log(`Peers:       ${n.peers.map((p) => `${p.node} (${p.addr})`).join(', ') || '-'}`)
    this.log('')
    printTable(
      ['task', 'service', 'ip', 'mac', 'node'],
      n.endpoints.map((e) => [e.task, e.service, e.ip, e.mac, e.node]),
    )
    if (n.attachments.length === 0) return
    this.log('')
    printTable(
      ['attachment', 'netns', 'ip', 'mac', 'node', 'state'],
      n.attachments.map((a) => [a.name, a.netns, a.ip, a.mac, a.node, a.state]),
    )
  }
}
