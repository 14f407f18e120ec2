import {Flags} from '@oclif/core'
import {SwarmnetCommand, hostFlag} from '../src/cli/base.js'
import {AgentClient} from '../src/agent/client.js'
import {parseExposition, type Exposition} from '../src/metrics/parse.js'
import {renderTop} from '../src/metrics/top.js'

export default class Top extends SwarmnetCommand {
  static override description = `Watch a node live: data-plane counters with rates, map fill, gossip, tasks

The same numbers the agent serves to Prometheus on --metrics-addr, read over its socket and
shown again every second (every --interval); Ctrl-C to stop.`
  static override examples = ['<%= config.bin %> top --host n1', '<%= config.bin %> top --count 1']
  static override flags = {
    host: hostFlag,
    interval: Flags.integer({description: 'milliseconds between screens', default: 1000, min: 100}),
    count: Flags.integer({description: 'stop after this many screens (default: until Ctrl-C)', min: 1}),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(Top)
    const client = new AgentClient(flags.host)
    const tty = process.stdout.isTTY === true
    let prev: Exposition | undefined
    let at = 0
    for (let i = 0; flags.count === undefined || i < flags.count; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, flags.interval))
      const now = parseExposition((await client.get<{text: string}>('/metrics')).text)
      const t = Date.now()
      const screen = renderTop(client.node, now, prev, prev ? (t - at) / 1000 : 0)
      // On a terminal the screen is redrawn in place; otherwise screens follow each other.
      process.stdout.write(tty ? `\x1b[H\x1b[2J${screen}\n` : `${i > 0 ? '\n' : ''}${screen}\n`)
      prev = now
      at = t
    }
  }
}
