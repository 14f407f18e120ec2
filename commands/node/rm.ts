import {Args} from '@oclif/core'
import {SwarmnetCommand, hostFlag} from '../../src/cli/base.js'
import {AgentClient} from '../../src/agent/client.js'

export default class NodeRm extends SwarmnetCommand {
  static override description = `Remove a node that is down from the cluster (refused while it is up)

Its tasks, global ones included, are placed on other nodes or removed; it cannot come back
under the same id (join it again).`
  static override aliases = ['node remove']
  static override examples = ['<%= config.bin %> node rm n3']
  static override args = {node: Args.string({description: 'node name or id', required: true})}
  static override flags = {host: hostFlag}

  async run(): Promise<void> {
    const {args, flags} = await this.parse(NodeRm)
    const r = await new AgentClient(flags.host).delete<{removed: string}>(`/nodes/${encodeURIComponent(args.node)}`)
    this.log(r.removed)
  }
}
