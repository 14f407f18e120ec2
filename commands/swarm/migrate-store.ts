import {Flags} from '@oclif/core'
import {SwarmnetCommand, hostFlag, jsonFlag} from '../../src/cli/base.js'
import {etcdFlags, etcdFromFlags} from '../../src/cli/etcd-flags.js'
import {printJson} from '../../src/cli/output.js'
import {AgentClient} from '../../src/agent/client.js'
import {UserError} from '../../src/model/errors.js'

export default class SwarmMigrateStore extends SwarmnetCommand {
  static override description = `Move an embedded cluster's desired state into etcd, without stopping a task

Copies the cluster record, networks, services, tasks and attachments with every allocation they
hold into etcd in one transaction (into an empty prefix, /swarmnet/<cluster id>/), then the manager
serves and places through etcd. Tasks keep their ids, nodes and addresses, so nothing restarts.
Afterwards more managers can join: \`swarmnet swarm join-token manager\`.`
  static override examples = [
    '<%= config.bin %> swarm migrate-store --to etcd --etcd-endpoints https://10.0.0.1:2379 --etcd-ca ca.pem --etcd-cert m.pem --etcd-key m-key.pem',
  ]
  static override flags = {
    host: hostFlag,
    json: jsonFlag,
    to: Flags.string({description: 'where to move it', options: ['etcd'], required: true}),
    ...etcdFlags,
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(SwarmMigrateStore)
    const etcd = etcdFromFlags(flags)
    if (!etcd) throw new UserError('--to etcd needs --etcd-endpoints')
    const r = await new AgentClient(flags.host).post<{records: number; prefix: string; endpoints: string[]}>(
      '/migrate-store',
      etcd,
    )
    if (flags.json) return printJson(r)
    this.log(`Moved ${r.records} records to etcd at ${r.endpoints.join(',')} under ${r.prefix}.`)
    this.log('To add a manager, run `swarmnet swarm join-token manager` on this node.')
  }
}
