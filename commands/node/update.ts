import {Args, Flags} from '@oclif/core'
import {SwarmnetCommand, hostFlag, jsonFlag} from '../../src/cli/base.js'
import {printJson} from '../../src/cli/output.js'
import {AgentClient} from '../../src/agent/client.js'
import type {NodeView} from '../../src/agent/views.js'

export default class NodeUpdate extends SwarmnetCommand {
  static override description = `Set a node's availability and labels (on a manager)

--availability pause: the node keeps its tasks and gets no new one; drain: its replicated tasks
move to other nodes, each leaving the load balancer and DNS before it stops; active: back to normal.
Labels are what --constraint node.labels.KEY==V and --placement-pref spread=node.labels.KEY read.`
  static override examples = [
    '<%= config.bin %> node update --availability drain n2',
    '<%= config.bin %> node update --label-add zone=a --label-add disk=ssd n3',
    '<%= config.bin %> node update --label-rm zone n3',
  ]
  static override args = {node: Args.string({description: 'node name or id', required: true})}
  static override flags = {
    host: hostFlag,
    json: jsonFlag,
    availability: Flags.string({description: 'active, pause or drain', options: ['active', 'pause', 'drain']}),
    'label-add': Flags.string({description: 'KEY=VALUE (repeatable)', multiple: true, multipleNonGreedy: true}),
    'label-rm': Flags.string({description: 'KEY (repeatable)', multiple: true, multipleNonGreedy: true}),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(NodeUpdate)
    const n = await new AgentClient(flags.host).post<NodeView>(`/nodes/${encodeURIComponent(args.node)}/update`, {
      ...(flags.availability ? {availability: flags.availability} : {}),
      labelAdd: flags['label-add'] ?? [],
      labelRm: flags['label-rm'] ?? [],
    })
    if (flags.json) return printJson(n)
    this.log(n.name)
  }
}
