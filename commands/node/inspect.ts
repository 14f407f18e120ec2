import {Args} from '@oclif/core'
import {SwarmnetCommand, hostFlag, jsonFlag} from '../../src/cli/base.js'
import {ago} from '../../src/cli/ago.js'
import {printJson} from '../../src/cli/output.js'
import {AgentClient} from '../../src/agent/client.js'
import type {NodeView} from '../../src/agent/views.js'

export default class NodeInspect extends SwarmnetCommand {
  static override description = 'Show one node: its record and its liveness as this node sees it'
  static override examples = ['<%= config.bin %> node inspect n2', '<%= config.bin %> node inspect n2 --json']
  static override args = {node: Args.string({description: 'node name or id', required: true})}
  static override flags = {host: hostFlag, json: jsonFlag}

  async run(): Promise<void> {
    const {args, flags} = await this.parse(NodeInspect)
    const n = await new AgentClient(flags.host).get<NodeView>(`/nodes/${encodeURIComponent(args.node)}`)
    if (flags.json) return printJson(n)
    this.log(`Name:         ${n.name}${n.self ? ' (this node)' : ''}`)
    this.log(`ID:           ${n.id}`)
    this.log(`Role:         ${n.role}`)
    this.log(`Status:       ${n.state}`)
    this.log(`Availability: ${n.availability}`)
    const labels = Object.entries(n.labels ?? {})
    this.log(`Labels:       ${labels.length > 0 ? labels.map(([k, v]) => `${k}=${v}`).join(', ') : '-'}`)
    this.log(`Address:      ${n.addr}${n.gossipPort ? `:${n.gossipPort}` : ''}`)
    this.log(`Last heard:   ${ago(n.lastHeardMs)}`)
    if (n.incarnation !== undefined) this.log(`Incarnation:  ${n.incarnation}`)
    if (n.joinedAt) this.log(`Joined:       ${new Date(n.joinedAt).toISOString()}`)
  }
}
