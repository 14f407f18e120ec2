import {Args, Flags} from '@oclif/core'
import {SwarmnetCommand, hostFlag, jsonFlag} from '../../src/cli/base.js'
import {printJson} from '../../src/cli/output.js'
import {AgentClient} from '../../src/agent/client.js'
import type {NetworkView} from '../../src/agent/views.js'
import {DEFAULT_NETWORK_MTU, NETWORK_MTU_MAX, NETWORK_MTU_MIN} from '../../src/model/defaults.js'

export default class NetworkCreate extends SwarmnetCommand {
  static override description = 'Create an overlay network: its own VNI and subnet, isolated from every other network'
  static override examples = [
    '<%= config.bin %> network create backend',
    '<%= config.bin %> network create --subnet 10.20.0.0/24 --attachable frontend',
    '<%= config.bin %> network create --mtu 8950 jumbo',
    '<%= config.bin %> network create --internal backend',
  ]
  static override args = {name: Args.string({description: 'network name', required: true})}
  static override flags = {
    host: hostFlag,
    json: jsonFlag,
    driver: Flags.string({char: 'd', description: 'network driver', options: ['overlay'], default: 'overlay'}),
    subnet: Flags.string({description: 'subnet in CIDR form; default: the next free /24 of the default address pool'}),
    attachable: Flags.boolean({description: 'let standalone tasks attach, not only services'}),
    internal: Flags.boolean({
      description:
        'no way out: tasks only on internal networks get no default route and nothing they send leaves the node (names and the other tasks still answer)',
    }),
    mtu: Flags.integer({
      description: `MTU of the tasks' interfaces on this network, the same on every node; the underlay must carry it plus 50 [default: ${DEFAULT_NETWORK_MTU}]`,
      min: NETWORK_MTU_MIN,
      max: NETWORK_MTU_MAX,
    }),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(NetworkCreate)
    const net = await new AgentClient(flags.host).post<NetworkView>('/networks', {
      name: args.name,
      driver: flags.driver,
      subnet: flags.subnet,
      attachable: flags.attachable,
      internal: flags.internal,
      mtu: flags.mtu,
    })
    if (flags.json) return printJson(net)
    this.log(net.id)
  }
}
