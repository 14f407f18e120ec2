import {Args} from '@oclif/core'
import {etcdFlags} from '../../src/cli/etcd-flags.js'
import {resolve} from 'node:path'
import {SwarmnetCommand, hostFlag, jsonFlag} from '../../src/cli/base.js'
import {printJson} from '../../src/cli/output.js'
import {AgentClient} from '../../src/agent/client.js'

export default class NodePromote extends SwarmnetCommand {
  static override description = `Make a worker a manager (clusters on etcd): it serves writes and may lead

Run on the manager the cluster was created on (it certifies the node's key for the new role).
The new manager reaches etcd at this manager's endpoints, with the TLS files given here (paths on
its host), by default the same paths as this manager's.`
  static override examples = ['<%= config.bin %> node promote n4']
  static override args = {node: Args.string({description: 'node name or id', required: true})}
  static override flags = {
    host: hostFlag,
    json: jsonFlag,
    'etcd-ca': etcdFlags['etcd-ca'],
    'etcd-cert': etcdFlags['etcd-cert'],
    'etcd-key': etcdFlags['etcd-key'],
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(NodePromote)
    const r = await new AgentClient(flags.host).post<{node: string; role: string}>(
      `/nodes/${encodeURIComponent(args.node)}/promote`,
      {
        ...(flags['etcd-ca'] ? {ca: resolve(flags['etcd-ca'])} : {}),
        ...(flags['etcd-cert'] ? {cert: resolve(flags['etcd-cert'])} : {}),
        ...(flags['etcd-key'] ? {key: resolve(flags['etcd-key'])} : {}),
      },
    )
    if (flags.json) return printJson(r)
    this.log(`Node ${r.node} is now a ${r.role}.`)
  }
}
