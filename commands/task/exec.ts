import {Args} from '@oclif/core'
import {existsSync} from 'node:fs'
import {SwarmnetCommand, hostFlag} from '../../src/cli/base.js'
import {AgentClient} from '../../src/agent/client.js'
import type {TaskView} from '../../src/agent/views.js'
import {execInTask} from '../../src/tasks/exec.js'

export default class TaskExec extends SwarmnetCommand {
  static override description = 'Run a command inside a task: its namespaces, cgroup, capabilities and user'
  static override strict = false
  static override usage = 'task exec TASK -- CMD [ARGS...]'
  static override examples = [
    '<%= config.bin %> task exec web.1 -- ping -c1 10.0.1.4',
    '<%= config.bin %> task exec 3f2a9c -- ip addr',
  ]
  static override args = {task: Args.string({description: 'task id (or a unique prefix) or name (SERVICE.SLOT)', required: true})}
  static override flags = {host: hostFlag}

  async run(): Promise<void> {
    const {args, argv, flags} = await this.parse(TaskExec)
    const cmd = (argv as string[]).slice(1)
    if (cmd.length === 0) throw new Error('no command given: swarmnet task exec TASK -- CMD [ARGS...]')
    const task = await new AgentClient(flags.host).get<TaskView>(`/tasks/${encodeURIComponent(args.task)}`)
    if (!task.netns || task.state !== 'running') throw new Error(`task ${task.name} is not running (state: ${task.state})`)
    const nsPath = `/run/netns/${task.netns}`
    if (!existsSync(nsPath))
      throw new Error(`task ${task.name} runs on node ${task.node}, not on this host: run the command there`)
    process.exit(execInTask(task, cmd))
  }
}
