import {readFileSync} from 'node:fs'
import {Flags} from '@oclif/core'
import {SwarmnetCommand, hostFlag, jsonFlag} from '../../src/cli/base.js'
import {printJson} from '../../src/cli/output.js'
import {AgentClient} from '../../src/agent/client.js'
import {parseServicesFile} from '../../src/deploy/services-file.js'
import {deploy, waitRunning} from '../../src/deploy/deploy.js'

export default class ServiceDeploy extends SwarmnetCommand {
  static override description = `Create the networks and services a YAML file describes

The file is checked in full (and against the cluster) before anything is created; every problem
is one line naming the file, the service and the key. Networks under \`networks:\` are created
when missing and used when they exist with the same settings; a service's network that is not
declared must exist. Nothing is updated: a service whose name exists is refused.

  networks:
    web: {attachable: true}
  services:
    - name: whoami
      replicas: 3
      networks: [web]
    - name: probe
      mode: global
      networks: [web]
      command: [sleep, infinity]

Service keys: name, mode (replicated|global), replicas, networks, command (a list),
endpoint_mode (vip|dnsrr), publish (["8080:80", "53:53/udp", {published, target, protocol, mode}]),
user, limit_memory, limit_cpu.`
  static override examples = ['<%= config.bin %> service deploy -f services.yml']
  static override flags = {
    host: hostFlag,
    json: jsonFlag,
    file: Flags.string({char: 'f', description: 'the services file (YAML); - reads standard input', required: true}),
    check: Flags.boolean({description: 'only check the file itself (no agent needed), create nothing'}),
    wait: Flags.integer({
      description: 'then wait up to this many seconds until every task of its services runs',
      min: 1,
      max: 3600,
    }),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(ServiceDeploy)
    const name = flags.file === '-' ? '<stdin>' : flags.file
    let text: string
    try {
      text = readFileSync(flags.file === '-' ? 0 : flags.file, 'utf8')
    } catch (e) {
      throw new Error(`${name}: cannot read it: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
    }
    const spec = parseServicesFile(name, text)
    if (flags.check) {
      if (flags.json) return printJson(spec)
      return this.log(`${name}: ${spec.services.length} service(s), ${spec.networks.length} network(s): ok`)
    }
    const api = new AgentClient(flags.host)
    const result = await deploy(api, name, spec, flags.json ? undefined : (l) => this.log(l))
    if (flags.wait !== undefined) {
      await waitRunning(
        api,
        name,
        spec.services.map((s) => s.name),
        flags.wait * 1000,
      )
      if (!flags.json) this.log('all tasks running')
    }
    if (flags.json) printJson(result)
  }
}
