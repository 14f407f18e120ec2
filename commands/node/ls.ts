import {SwarmnetCommand, hostFlag, jsonFlag} from '../../src/cli/base.js'
import {ago} from '../../src/cli/ago.js'
import {printJson, printTable} from '../../src/cli/output.js'
import {AgentClient} from '../../src/agent/client.js'
import type {NodeView} from '../../src/agent/views.js'

export default class NodeLs extends SwarmnetCommand {
  static override description = `List the nodes of the cluster

STATUS is ready, suspect, down or left, as this node's failure detector sees it; AGENT is down
when the node's agent does not answer but its data path does (a restart or upgrade: its tasks
keep running and serving for the agent grace period, --agent-grace at init), up otherwise;
AVAILABILITY is active, pause (keeps its tasks, gets no new one) or drain (its tasks
move to other nodes), set by node update; LAST HEARD is how long ago a message from that node itself arrived here. MANAGER STATUS (clusters
on etcd, with several managers): leader (places and allocates), reachable, or unreachable.`
  static override aliases = ['node list']
  static override examples = ['<%= config.bin %> node ls']
  static override flags = {host: hostFlag, json: jsonFlag}

  async run(): Promise<void> {
    const {flags} = await this.parse(NodeLs)
    const nodes = await new AgentClient(flags.host).get<NodeView[]>('/nodes')
    if (flags.json) return printJson(nodes)
    // The column is there when the cluster has several managers (on etcd), as in `docker node ls`.
    const ha = nodes.some((n) => n.managerStatus !== undefined)
    printTable(
      ['id', 'hostname', 'address', 'status', 'availability', 'agent', 'last heard', 'role', ...(ha ? ['manager status'] : [])],
      nodes.map((n) => [
        n.id.slice(0, 12) + (n.self ? ' *' : ''),
        n.name,
        n.addr,
        n.state,
        n.availability,
        n.agent,
        ago(n.lastHeardMs),
        n.role,
        ...(ha ? [n.managerStatus ?? ''] : []),
      ]),
    )
  }
}
