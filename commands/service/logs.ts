import {Args, Flags} from '@oclif/core'
import {SwarmnetCommand, hostFlag} from '../../src/cli/base.js'
import {serviceLogs} from '../../src/agent/logs.js'

export default class ServiceLogs extends SwarmnetCommand {
  static override description = `Show the output of a service's tasks, each line prefixed with the task's name

A task's log is kept on the node that runs it and removed with the task.`
  static override examples = ['<%= config.bin %> service logs web', '<%= config.bin %> service logs web --follow --tail 20']
  static override args = {service: Args.string({description: 'service name or id', required: true})}
  static override flags = {
    host: hostFlag,
    follow: Flags.boolean({char: 'f', description: 'keep printing what the tasks write', default: false}),
    tail: Flags.integer({char: 'n', description: 'only the last N lines of each task', min: 0}),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(ServiceLogs)
    await serviceLogs(
      flags.host,
      args.service,
      {follow: flags.follow, ...(flags.tail !== undefined ? {tail: flags.tail} : {})},
      (s) => process.stdout.write(s),
      (s) => process.stderr.write(`swarmnet: ${s}\n`),
    )
  }
}
