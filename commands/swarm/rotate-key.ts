import {Flags} from '@oclif/core'
import {SwarmnetCommand, hostFlag, jsonFlag} from '../../src/cli/base.js'
import {printJson} from '../../src/cli/output.js'
import {AgentClient} from '../../src/agent/client.js'
import {parseDuration, type RotationStatus} from '../../src/gossip/rotation.js'

export default class SwarmRotateKey extends SwarmnetCommand {
  static override description = `Replace the cluster's gossip key on every node

The new key is sent to every live node sealed under the current one; once they all hold it,
every node seals with it, the old key is still accepted for the grace period and then removed.
A node that was down all along joins again with the join token to get the current key.`
  static override examples = ['<%= config.bin %> swarm rotate-key', '<%= config.bin %> swarm rotate-key --grace 30s']
  static override flags = {
    host: hostFlag,
    json: jsonFlag,
    grace: Flags.string({description: 'how long the old key is still accepted after the switch (e.g. 30s, 5m)', default: '5m'}),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(SwarmRotateKey)
    const graceMs = parseDuration(flags.grace, '--grace')
    const r = await new AgentClient(flags.host).call<RotationStatus & {newId: number; oldId: number; timedOut: boolean}>(
      'POST',
      '/swarm/rotate-key',
      {graceMs},
      60_000,
    )
    if (flags.json) return printJson(r)
    if (r.timedOut) {
      this.log(
        `Key ${r.newId} is installed but not yet in use: waiting for ${r.waitingFor.length} node(s) (${r.waitingFor.join(', ')}); the rotation goes on.`,
      )
      return
    }
    this.log(
      `Rotated the cluster key: key ${r.newId} is in use; key ${r.oldId} is accepted for ${flags.grace} more, then removed.`,
    )
  }
}
