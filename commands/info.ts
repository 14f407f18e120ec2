import {SwarmnetCommand, hostFlag, jsonFlag} from '../src/cli/base.js'
import {printJson} from '../src/cli/output.js'
import {AgentClient} from '../src/agent/client.js'
import type {InfoView} from '../src/agent/views.js'

export default class Info extends SwarmnetCommand {
  static override description = `Show this node, its cluster and its agent's gossip counters

The counters (messages received and sent, malformed, failed to decrypt, push-pulls, joins) count
since the agent started.`
  static override examples = ['<%= config.bin %> info', '<%= config.bin %> info --json']
  static override flags = {host: hostFlag, json: jsonFlag}

  async run(): Promise<void> {
    const {flags} = await this.parse(Info)
    const info = await new AgentClient(flags.host).get<InfoView>('/info')
    if (flags.json) return printJson(info)
    this.log(`Node:            ${info.node} (${info.nodeId.slice(0, 12)}), ${info.role}`)
    this.log(`Cluster:         ${info.clusterId.slice(0, 12)}`)
    this.log(`Advertise addr:  ${info.advertiseAddr} on ${info.underlay}`)
    this.log(`Data path port:  ${info.dataPathPort}`)
    if (info.desiredState) {
      this.log(`Desired state:   etcd ${info.desiredState.endpoints.join(',')} under ${info.desiredState.prefix}`)
      this.log(`Leader:          ${info.leader ? info.leader.slice(0, 12) : 'none (etcd unreachable or election under way)'}`)
    }
    this.log('Gossip:')
    for (const [k, v] of Object.entries(info.gossip)) this.log(`  ${k.padEnd(16)} ${v}`)
  }
}
