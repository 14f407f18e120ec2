import {Args, Flags} from '@oclif/core'
import {SwarmnetCommand, hostFlag, jsonFlag} from '../../src/cli/base.js'
import {printJson} from '../../src/cli/output.js'
import {AgentClient} from '../../src/agent/client.js'
import type {AttachmentView} from '../../src/agent/views.js'
import {attachTimeoutFlag, callTimeoutMs} from '../../src/cli/attach-timeout.js'

export default class NetworkConnect extends SwarmnetCommand {
  static override description = `Attach a network namespace swarmnet did not make to an attachable overlay network

A container started with --network none, a podman or systemd-nspawn machine, an \`ip netns add\`
namespace: it gets an address of the network and reaches every task on it, on every node, and is
reached by them. The command returns once the namespace has its address and its route on the
network (the node that holds it, --node, has wired it), or fails having attached nothing.
When the namespace ends, the attachment is removed by itself.`
  static override examples = [
    '<%= config.bin %> network connect --netns /run/netns/blue backend',
    '<%= config.bin %> network connect --pid 4242 --ip 10.0.1.50 --name db backend',
  ]
  static override args = {network: Args.string({description: 'network name or id (created with --attachable)', required: true})}
  static override flags = {
    host: hostFlag,
    json: jsonFlag,
    netns: Flags.string({
      description: 'the namespace file, e.g. /run/netns/NAME or /proc/PID/ns/net',
      exactlyOne: ['netns', 'pid'],
    }),
    pid: Flags.integer({description: 'a process whose network namespace to attach', min: 1, exactlyOne: ['netns', 'pid']}),
    ip: Flags.string({description: 'the address on the network; default: the lowest free one'}),
    name: Flags.string({description: 'the endpoint name; default: the namespace name, or pid-PID'}),
    node: Flags.string({description: 'the node the namespace is on; default: the node whose agent is asked'}),
    timeout: attachTimeoutFlag,
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(NetworkConnect)
    const a = await new AgentClient(flags.host).call<AttachmentView>(
      'POST',
      `/networks/${encodeURIComponent(args.network)}/connect`,
      {
        netns: flags.netns,
        pid: flags.pid,
        ip: flags.ip,
        name: flags.name,
        node: flags.node,
        timeoutMs: flags.timeout * 1000,
      },
      callTimeoutMs(flags.timeout),
    )
    if (flags.json) return printJson(a)
    this.log(`${a.name} ${a.ip}`)
  }
}
