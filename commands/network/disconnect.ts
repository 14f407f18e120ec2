import {Args} from '@oclif/core'
import {SwarmnetCommand, hostFlag} from '../../src/cli/base.js'
import {AgentClient} from '../../src/agent/client.js'
import {attachTimeoutFlag, callTimeoutMs} from '../../src/cli/attach-timeout.js'

export default class NetworkDisconnect extends SwarmnetCommand {
  static override description = `Detach a namespace attached with \`network connect\` (the namespace itself stays)

Returns once the interface is gone from the namespace.`
  static override examples = ['<%= config.bin %> network disconnect backend blue']
  static override args = {
    network: Args.string({description: 'network name or id', required: true}),
    name: Args.string({description: 'the attachment name (or id)', required: true}),
  }
  static override flags = {host: hostFlag, timeout: attachTimeoutFlag}

  async run(): Promise<void> {
    const {args, flags} = await this.parse(NetworkDisconnect)
    await new AgentClient(flags.host).call(
      'POST',
      `/networks/${encodeURIComponent(args.network)}/disconnect`,
      {name: args.name, timeoutMs: flags.timeout * 1000},
      callTimeoutMs(flags.timeout),
    )
    this.log(args.name)
  }
}
