import {SwarmnetCommand, hostFlag, jsonFlag} from '../../src/cli/base.js'
import {printJson, printTable} from '../../src/cli/output.js'
import {resolveHost} from '../../src/agent/paths.js'
import {listImages} from '../../src/images/store.js'

export default class ImageLs extends SwarmnetCommand {
  static override description = "List the images in this node's image store"
  static override aliases = ['image list']
  static override examples = ['<%= config.bin %> image ls']
  static override flags = {host: hostFlag, json: jsonFlag}

  async run(): Promise<void> {
    const {flags} = await this.parse(ImageLs)
    const images = listImages(resolveHost(flags.host).node)
    if (flags.json) return printJson(images)
    printTable(
      ['name', 'digest'],
      images.map((i) => [i.name, i.digest.slice(0, 19)]),
    )
  }
}
