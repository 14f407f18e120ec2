import {Args} from '@oclif/core'
import {SwarmnetCommand} from '../../src/cli/base.js'
import {splitAtDoubleDash} from '../../src/cli/passthrough.js'
import {labExec} from '../../src/lab/lab.js'

export default class LabExec extends SwarmnetCommand {
  static override description = "Run a command on a lab node or the client, with SWARMNET_HOST set to that node's agent"
  static override runsCommand = true
  static override usage = 'lab exec NODE|client -- CMD [ARGS...]'
  static override examples = [
    '<%= config.bin %> lab exec n1 -- swarmnet service ps web',
    '<%= config.bin %> lab exec client -- ping -c1 172.30.0.12',
  ]
  static override args = {target: Args.string({description: 'n1, n2, ... or client', required: true})}

  async run(): Promise<void> {
    const {own, passthrough: cmd = []} = splitAtDoubleDash(this.argv)
    const {args} = await this.parse(LabExec, own)
    if (cmd.length === 0) throw new Error('no command given: swarmnet lab exec NODE -- CMD [ARGS...]')
    process.exit(await labExec(args.target, cmd))
  }
}
