import {Args, Flags} from '@oclif/core'
import {resolve} from 'node:path'
import {SwarmnetCommand, hostFlag} from '../../src/cli/base.js'
import {resolveHost} from '../../src/agent/paths.js'
import {loadImage} from '../../src/images/store.js'

export default class ImageLoad extends SwarmnetCommand {
  static override description = `Load an image from a docker-archive (docker save) or oci-archive file into this node's image store

Services run it with --image NAME[:TAG]; each node that runs one of its tasks needs it loaded.`
  static override examples = [
    '<%= config.bin %> image load busybox.tar',
    '<%= config.bin %> image load site.oci.tar --name site:1.0',
  ]
  static override args = {file: Args.string({description: 'the archive', required: true})}
  static override flags = {
    host: hostFlag,
    name: Flags.string({description: 'store it as NAME[:TAG] (default: the name the archive carries)'}),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(ImageLoad)
    const {node} = resolveHost(flags.host)
    this.log(await loadImage(node, resolve(args.file), flags.name))
  }
}
