import {SwarmnetCommand, jsonFlag} from '../../src/cli/base.js'
import {printJson} from '../../src/cli/output.js'
import {progressMode, runSteps} from '../../src/cli/progress.js'
import {labDown} from '../../src/lab/lab.js'

export default class LabDown extends SwarmnetCommand {
  static override description = 'Remove the lab: every namespace, link, pin, process and state file it made'
  static override examples = ['<%= config.bin %> lab down']
  static override flags = {json: jsonFlag}

  async run(): Promise<void> {
    const {flags} = await this.parse(LabDown)
    let removed: string[] = []
    await runSteps(
      [{title: 'Removing the lab', run: async (detail) => void (removed = await labDown(detail))}],
      progressMode(flags.json),
    )
    if (flags.json) return printJson({removed})
    this.log(removed.length > 0 ? `Removed: ${removed.join(', ')}` : 'No lab to remove.')
  }
}
