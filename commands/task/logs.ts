import {Args, Flags} from '@oclif/core'
import {SwarmnetCommand, hostFlag} from '../../src/cli/base.js'
import {taskLogs} from '../../src/agent/logs.js'

export default class TaskLogs extends SwarmnetCommand {
  static override description = "Show a task's output (stdout and stderr)"
  static override examples = ['<%= config.bin %> task logs web.1', '<%= config.bin %> task logs web.1 --follow']
  static override args = {task: Args.string({description: 'task id (or a unique prefix) or name (SERVICE.SLOT)', required: true})}
  static override flags = {
    host: hostFlag,
    follow: Flags.boolean({char: 'f', description: 'keep printing what the task writes', default: false}),
    tail: Flags.integer({char: 'n', description: 'only the last N lines', min: 0}),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(TaskLogs)
    await taskLogs(flags.host, args.task, {follow: flags.follow, ...(flags.tail !== undefined ? {tail: flags.tail} : {})}, (b) =>
      process.stdout.write(b),
    )
  }
}
