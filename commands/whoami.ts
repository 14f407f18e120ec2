import {Flags} from '@oclif/core'
import {SwarmnetCommand} from '../src/cli/base.js'
import {startWhoami} from '../src/whoami/server.js'

export default class Whoami extends SwarmnetCommand {
  static override needsRoot = false
  static override description =
    "A tiny HTTP server that answers with the task's name, its addresses and the caller's address: the default demo workload"
  static override examples = ['<%= config.bin %> whoami', '<%= config.bin %> whoami --port 8080']
  static override flags = {
    port: Flags.integer({char: 'p', description: 'TCP port to listen on', default: 80, min: 1, max: 65535}),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(Whoami)
    const server = await startWhoami({port: flags.port})
    // As PID 1 of a task, a signal without a handler is ignored. On SIGTERM it stops as a server
    // should: no new connection, the requests under way answered, then out.
    process.on('SIGTERM', () => {
      server.close(() => process.exit(0))
      server.closeIdleConnections()
    })
    this.log(`whoami listening on :${flags.port}`)
    await new Promise(() => {}) // serve until killed
  }
}
