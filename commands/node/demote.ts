import {Args} from '@oclif/core'

import {SwarmnetCommand, hostFlag, jsonFlag} from '../../src/cli/base.js'
import {printJson} from '../../src/cli/output.js'
import {AgentClient} from '../../src/agent/client.js'

export default class NodeDemote extends SwarmnetCommand {
  static override description = `Make a manager a worker (clusters on etcd): it stops serving writes and, if it led, resigns

Refused for the last manager that is up. Run on the manager the cluster was created on.`
  static override examples = ['<%= config.bin %> node demote n4']
  static override args = {node: Args.string({description: 'node name or id', required: true})}
  static override flags = {
    host: hostFlag,
    json: jsonFlag,
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(NodeDemote)
    const r = await new AgentClient(flags.host).post<{node: string; role: string}>(
      `/nodes/${encodeURIComponent(args.node)}/demote`,
      {},
    )
    if (flags.json) return printJson(r)
    this.log(`Node ${r.node} is now a ${r.role}.`)
  }
}
