import {Args} from '@oclif/core'
import {SwarmnetCommand, hostFlag} from '../../src/cli/base.js'
import {resolveHost} from '../../src/agent/paths.js'
import {removeImage} from '../../src/images/store.js'

export default class ImageRm extends SwarmnetCommand {
  static override description = "Remove an image from this node's image store"
  static override examples = ['<%= config.bin %> image rm busybox:1.0']
  static override args = {name: Args.string({description: 'NAME[:TAG]', required: true})}
  static override flags = {host: hostFlag}

  async run(): Promise<void> {
    const {args, flags} = await this.parse(ImageRm)
    await removeImage(resolveHost(flags.host).node, args.name)
    this.log(args.name)
  }
}
