import {SwarmnetCommand} from '../../src/cli/base.js'
import {paint} from '../../src/cli/output.js'
import {runDemo} from '../../src/lab/demo.js'

export default class LabDemo extends SwarmnetCommand {
  static override description = `Tell swarmnet's story in under a minute, with real clients, in a 3-node lab

A 3-node lab; an overlay network; a 3-replica whoami service, web; the task of a second service,
front, finds web by name (its VIP) and sends 6 requests through the VIP to its three tasks; front
is published on every node and fetched from the lab's outside client through a node that runs no
task of it (the task sees the client's own address); a worker killed and cut off (how long until
the others stop sending to it and its task runs elsewhere), then brought back.

The lab stays up afterwards for you to explore; \`swarmnet lab down\` removes it.`
  static override examples = ['<%= config.bin %> lab demo']

  async run(): Promise<void> {
    await this.parse(LabDemo)
    const c = paint()
    let n = 0
    await runDemo((s) => {
      this.log(`${c.bold(`${++n}.`)} ${s.title}`)
      if (s.detail) this.log(`   ${s.detail}`)
    })
  }
}
