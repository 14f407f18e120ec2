import {Args, Flags} from '@oclif/core'
import {SwarmnetCommand, hostFlag, jsonFlag} from '../../src/cli/base.js'
import {printJson} from '../../src/cli/output.js'
import {AgentClient} from '../../src/agent/client.js'

export default class SwarmJoinToken extends SwarmnetCommand {
  static override description = 'Print the token that lets a node join, or rotate it (the old one stops working for new joins)'
  static override examples = [
    '<%= config.bin %> swarm join-token',
    '<%= config.bin %> swarm join-token -q',
    '<%= config.bin %> swarm join-token --rotate',
    '<%= config.bin %> swarm join-token manager',
  ]
  static override args = {
    role: Args.string({
      description: 'whose token: worker (default) or manager (clusters on etcd)',
      options: ['worker', 'manager'],
    }),
  }
  static override flags = {
    host: hostFlag,
    json: jsonFlag,
    rotate: Flags.boolean({description: 'replace the token'}),
    quiet: Flags.boolean({char: 'q', description: 'print the token only'}),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(SwarmJoinToken)
    const client = new AgentClient(flags.host)
    const role = args.role === 'manager' ? '?role=manager' : ''
    const r = flags.rotate
      ? await client.post<{token: string; addr: string}>(`/join-token/rotate${role}`)
      : await client.get<{token: string; addr: string}>(`/join-token${role}`)
    if (flags.json) return printJson(r)
    if (flags.quiet) return this.log(r.token)
    if (flags.rotate) this.log('Successfully rotated the join token.\n')
    this.log('To add a node to this cluster, run the following command:\n')
    const extra = args.role === 'manager' ? ' --manager --etcd-endpoints URLS' : ''
    this.log(`    swarmnet join${extra} --token ${r.token} ${r.addr}\n`)
  }
}
