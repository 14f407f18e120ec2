import {SwarmnetCommand, jsonFlag} from '../../src/cli/base.js'
import {paint, printJson, printTable} from '../../src/cli/output.js'
import {labStatus} from '../../src/lab/lab.js'

export default class LabStatus extends SwarmnetCommand {
  static override description = 'Show the lab: its nodes, their addresses and whether their agents run'
  static override examples = ['<%= config.bin %> lab status', '<%= config.bin %> lab status --json']
  static override flags = {json: jsonFlag}

  async run(): Promise<void> {
    const {flags} = await this.parse(LabStatus)
    const s = await labStatus()
    if (flags.json) return printJson(s)
    if (!s.up) return this.log('No lab is up: start one with `swarmnet lab up`.')
    const c = paint()
    printTable(
      ['node', 'netns', 'address', 'agent'],
      [
        ...s.nodes.map((n) => [
          n.name,
          n.netnsExists ? n.netns : c.red('missing'),
          n.underlay.join(',') || n.address,
          n.agentAlive ? c.green(`running (pid ${n.agentPid})`) : c.red('not running'),
        ]),
        ['client', s.client.exists ? s.client.netns : c.red('missing'), s.client.address, '-'],
      ],
    )
  }
}
