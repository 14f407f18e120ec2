import {Flags} from '@oclif/core'
import {SwarmnetCommand, hostFlag, jsonFlag} from '../../src/cli/base.js'
import {splitAtDoubleDash} from '../../src/cli/passthrough.js'
import {printJson} from '../../src/cli/output.js'
import {AgentClient} from '../../src/agent/client.js'
import type {ServiceView} from '../../src/agent/views.js'
import {parsePublishes} from '../../src/model/ports.js'
import {parseEnvFile} from '../../src/model/container.js'
import {readFileSync} from 'node:fs'
import {healthBody, healthFlags} from '../../src/cli/health-flags.js'
import {updateBody, updateFlags} from '../../src/cli/update-flags.js'

export default class ServiceCreate extends SwarmnetCommand {
  static override description = `Create a service: K tasks spread across the live nodes, each a container run by runc (from --image, or a command of the node in an allow-list view of it)

Without a command, the tasks run the built-in whoami HTTP server on port 80.`
  static override runsCommand = true
  static override usage =
    'service create --name NAME [--replicas K | --mode global] [--network NET ...] [--endpoint-mode vip|dnsrr] [-p P:T[/udp] ...] [-- CMD ARGS...]'
  static override examples = [
    '<%= config.bin %> service create --name web --replicas 3 --network backend',
    '<%= config.bin %> service create --name api --network name=backend,alias=api-v2',
    '<%= config.bin %> service create --name probe --mode global --network backend -- sleep infinity',
    '<%= config.bin %> service create --name web --replicas 2 -p 8080:80 -p 53:53/udp',
    '<%= config.bin %> service create --name db --constraint node.labels.disk==ssd --placement-pref spread=node.labels.zone',
    '<%= config.bin %> service create --name web --publish published=8080,target=80,protocol=tcp,mode=host',
    '<%= config.bin %> service create --name site --image oci:/srv/images/busybox:latest --env GREETING=hi -p 8080:80 -- httpd -f -p 80 -h /www',
  ]
  static override flags = {
    host: hostFlag,
    json: jsonFlag,
    name: Flags.string({description: 'service name', required: true}),
    replicas: Flags.integer({description: 'number of tasks (replicated mode)', min: 0, max: 1000}),
    mode: Flags.string({
      description: 'replicated: K tasks; global: one task on every node',
      options: ['replicated', 'global'],
      default: 'replicated',
    }),
    network: Flags.string({
      description: 'attach to this network (repeatable); name=NET,alias=A,alias=B also gives the service those DNS names on it',
      multiple: true,
      default: [],
    }),
    user: Flags.string({
      char: 'u',
      description: 'run the tasks as UID[:GID] or NAME[:GROUP] (default: root, with reduced capabilities)',
    }),
    'limit-memory': Flags.string({description: 'memory limit of each task, e.g. 64M'}),
    'limit-cpu': Flags.string({description: 'CPU limit of each task in CPUs, e.g. 0.5'}),
    'endpoint-mode': Flags.string({
      description: 'vip: one virtual IP per network, load-balanced over the running tasks; dnsrr: no VIP',
      options: ['vip', 'dnsrr'],
      default: 'vip',
    }),
    publish: Flags.string({
      char: 'p',
      description:
        'publish a port (repeatable): P:T[/udp], T[/udp] (P allocated from 30000-32767), or published=P,target=T[,protocol=tcp|udp][,mode=ingress|host]; P and T may be ranges (8000-8010:80-90, or 8000-8010:80)',
      multiple: true,
      // One value per -p: a stray word after it is an error, not a second port.
      multipleNonGreedy: true,
    }),
    image: Flags.string({
      description:
        "run the tasks as containers of this image (runc): oci:/DIR[:TAG], oci-archive:/FILE, docker-archive:/FILE, containers-storage:NAME, a registry's HOST[:PORT]/NAME[:TAG] (or docker://...; the manager pins the tag to its digest, each node pulls that once), or NAME[:TAG] from the node's image store (swarmnet image load)",
    }),
    'tls-verify': Flags.string({
      description: "verify the registry's TLS certificate (default true); false also allows a plain-HTTP registry",
      options: ['true', 'false'],
    }),
    env: Flags.string({
      char: 'e',
      description: 'set an environment variable KEY=VALUE (repeatable)',
      multiple: true,
      multipleNonGreedy: true,
    }),
    'env-file': Flags.string({
      description: 'read KEY=VALUE lines from a file (repeatable)',
      multiple: true,
      multipleNonGreedy: true,
    }),
    workdir: Flags.string({char: 'w', description: 'working directory inside the container'}),
    hostname: Flags.string({
      description: "the task's hostname (default: an image's task its id's first 12 digits, a command's its name)",
    }),
    'cap-add': Flags.string({
      description: "add a capability to Docker's default set (repeatable)",
      multiple: true,
      multipleNonGreedy: true,
    }),
    'cap-drop': Flags.string({
      description: 'drop a capability, or ALL (repeatable)',
      multiple: true,
      multipleNonGreedy: true,
    }),
    'read-only': Flags.boolean({description: "the container's root file system is read-only"}),
    init: Flags.boolean({
      description: 'run an init (tini) as PID 1 that forwards signals to the command and reaps orphaned processes',
    }),
    userns: Flags.string({
      description:
        "host (default): the node's own ids; remap: a user namespace of the task's own, its root host uid 100000 (/etc/subuid's swarmnet range if it has one); needs --image",
    }),
    mount: Flags.string({
      description: 'type=bind|volume|tmpfs,source=...,target=...[,readonly][,tmpfs-size=...] (repeatable)',
      multiple: true,
      multipleNonGreedy: true,
    }),
    'stop-signal': Flags.string({
      description: 'signal that stops a task (default SIGTERM); it leaves the load balancer and DNS first',
    }),
    'stop-grace-period': Flags.string({
      description: 'time a task has to stop after the stop signal before SIGKILL (default 10s)',
    }),
    constraint: Flags.string({
      description:
        'where tasks may run: node.hostname==X, node.role!=manager, node.labels.KEY==V, node.id==ID (repeatable: all must hold)',
      multiple: true,
      multipleNonGreedy: true,
    }),
    'placement-pref': Flags.string({
      description: "spread=node.labels.KEY: tasks spread evenly over the label's values (repeatable)",
      multiple: true,
      multipleNonGreedy: true,
    }),
    ...healthFlags,
    ...updateFlags,
  }

  async run(): Promise<void> {
    const {own, passthrough: command = []} = splitAtDoubleDash(this.argv)
    const {flags} = await this.parse(ServiceCreate, own)
    if (flags.mode === 'global' && flags.replicas !== undefined) throw new Error('--replicas cannot be used with --mode global')
    const ports = (flags.publish ?? []).flatMap((p) => parsePublishes(p))
    const svc = await new AgentClient(flags.host).post<ServiceView>('/services', {
      name: flags.name,
      mode: flags.mode,
      replicas: flags.replicas ?? 1,
      networks: flags.network,
      command,
      user: flags.user,
      limitMemory: flags['limit-memory'],
      limitCpu: flags['limit-cpu'],
      endpointMode: flags['endpoint-mode'],
      ports,
      image: flags.image,
      ...(flags['tls-verify'] === 'false' ? {tlsVerify: false} : {}),
      env: [...(flags['env-file'] ?? []).flatMap((f) => parseEnvFile(readEnvFile(f), f, process.env)), ...(flags.env ?? [])],
      workdir: flags.workdir,
      hostname: flags.hostname,
      capAdd: flags['cap-add'] ?? [],
      capDrop: flags['cap-drop'] ?? [],
      readOnly: flags['read-only'],
      init: flags.init,
      userns: flags.userns,
      mounts: flags.mount ?? [],
      stopSignal: flags['stop-signal'],
      stopGracePeriod: flags['stop-grace-period'],
      constraints: flags.constraint ?? [],
      placementPrefs: flags['placement-pref'] ?? [],
      ...healthBody(flags),
      ...updateBody(flags),
    })
    if (flags.json) return printJson(svc)
    this.log(svc.id)
  }
}

function readEnvFile(file: string): string {
  try {
    return readFileSync(file, 'utf8')
  } catch (e) {
    throw new Error(`cannot read --env-file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
  }
}
