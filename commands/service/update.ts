import {Args, Flags} from '@oclif/core'
import {SwarmnetCommand, hostFlag, jsonFlag} from '../../src/cli/base.js'
import {splitAtDoubleDash} from '../../src/cli/passthrough.js'
import {printJson} from '../../src/cli/output.js'
import {AgentClient} from '../../src/agent/client.js'
import type {ServiceView} from '../../src/agent/views.js'
import {parsePortRef, parsePublishes} from '../../src/model/ports.js'
import {healthBody, healthFlags} from '../../src/cli/health-flags.js'
import {updateBody, updateFlags} from '../../src/cli/update-flags.js'

export default class ServiceUpdate extends SwarmnetCommand {
  static override description = `Change a live service: its command or image and container settings, user, limits, stop and health settings, placement, replicas, published ports, networks

A change to what its tasks run (the command after --, --image, --env-*, --mount-*, --hostname, --workdir, --cap-*, --read-only, --userns, --user, --limit-*, --stop-*, --health-*), or --force, replaces its tasks by a rolling update: --update-parallelism slots at a time, --update-order start-first (the new task serves before the old one stops) or stop-first (the default). Old tasks stop gracefully (out of the load balancer and DNS first); the next group starts --update-delay after the last one serves. A new task that fails within --update-monitor of serving counts as a failure: beyond --update-max-failure-ratio of the replicas, --update-failure-action pauses the update (the next service update resumes it), continues, or rolls back. The VIPs and published ports stay; service rollback goes back to the previous spec; service inspect shows where the update stands.

--constraint-add/-rm and --placement-pref-add/-rm change where tasks may run: tasks on nodes that no longer fit are moved (each stopped gracefully), the others stay.

Port removals are applied first, so one command can publish a port again with another target. Ports and replicas change only the record, except a service's first ingress port: its tasks are then replaced by tasks on the ingress network.`
  static override runsCommand = true
  static override examples = [
    '<%= config.bin %> service update web --publish-add 8080:80',
    '<%= config.bin %> service update web --publish-rm 8080 --publish-add 8080:81',
    '<%= config.bin %> service update web --network-add name=backend,alias=api --network-rm old',
    '<%= config.bin %> service update web --update-order start-first --update-parallelism 1 -- sleep infinity',
    '<%= config.bin %> service update web --force',
    '<%= config.bin %> service update site --image site:2.0 --env-add GREETING=hello --mount-rm /cache',
    '<%= config.bin %> service update db --constraint-add node.labels.disk==ssd --update-failure-action rollback',
  ]
  static override args = {service: Args.string({description: 'service name or id', required: true})}
  static override flags = {
    host: hostFlag,
    json: jsonFlag,
    'publish-add': Flags.string({
      description:
        'publish a port (repeatable): P:T[/udp], T[/udp], or published=P,target=T[,protocol=tcp|udp][,mode=ingress|host]; P and T may be ranges; a port already published to the same target is left as it is',
      multiple: true,
      multipleNonGreedy: true,
    }),
    'publish-rm': Flags.string({
      description: 'stop publishing a port (repeatable): its published port, P or P/udp',
      multiple: true,
      multipleNonGreedy: true,
    }),
    'network-add': Flags.string({
      description:
        'attach the service to a network (repeatable): NET or name=NET,alias=A; a VIP there, and each running task an interface on it, plugged in live',
      multiple: true,
      multipleNonGreedy: true,
    }),
    'network-rm': Flags.string({
      description: 'detach the service from a network (repeatable): its tasks are replaced by tasks without it',
      multiple: true,
      multipleNonGreedy: true,
    }),
    replicas: Flags.integer({description: 'number of tasks (replicated mode)', min: 0, max: 1000}),
    user: Flags.string({char: 'u', description: 'run the tasks as UID[:GID] or NAME[:GROUP]'}),
    'limit-memory': Flags.string({description: 'memory limit of each task, e.g. 64M'}),
    'limit-cpu': Flags.string({description: 'CPU limit of each task in CPUs, e.g. 0.5'}),
    'stop-signal': Flags.string({description: 'signal that stops a task (default SIGTERM)'}),
    'stop-grace-period': Flags.string({description: 'time a task has to stop before SIGKILL (default 10s)'}),
    ...healthFlags,
    image: Flags.string({
      description: 'run the tasks as containers of this image (as service create --image); a command service becomes one',
    }),
    'env-add': Flags.string({
      description: 'set an environment variable KEY=VALUE, replacing the KEY it had (repeatable; containers)',
      multiple: true,
      multipleNonGreedy: true,
    }),
    'env-rm': Flags.string({
      description: 'remove an environment variable by KEY (repeatable)',
      multiple: true,
      multipleNonGreedy: true,
    }),
    'mount-add': Flags.string({
      description: 'add a mount, as service create --mount (repeatable; containers)',
      multiple: true,
      multipleNonGreedy: true,
    }),
    'mount-rm': Flags.string({
      description: 'remove the mount at this target (repeatable)',
      multiple: true,
      multipleNonGreedy: true,
    }),
    hostname: Flags.string({description: "the container's hostname"}),
    workdir: Flags.string({char: 'w', description: 'working directory inside the container'}),
    'cap-add': Flags.string({
      description: 'add a capability (repeatable; taken off the dropped ones)',
      multiple: true,
      multipleNonGreedy: true,
    }),
    'cap-drop': Flags.string({
      description: 'drop a capability, or ALL (repeatable; taken off the added ones)',
      multiple: true,
      multipleNonGreedy: true,
    }),
    'read-only': Flags.boolean({
      description: "the container's root file system is read-only (--no-read-only: writable again)",
      allowNo: true,
    }),
    init: Flags.boolean({
      description: 'an init (tini) as PID 1 forwards signals and reaps orphans (--no-init: the command is PID 1 again)',
      allowNo: true,
    }),
    userns: Flags.string({
      description:
        "remap: the tasks' root becomes an unprivileged user of the node (its own user namespace); host: the node's ids again",
    }),
    'constraint-add': Flags.string({
      description:
        'add a placement constraint, as service create --constraint (repeatable); tasks on nodes that no longer fit move',
      multiple: true,
      multipleNonGreedy: true,
    }),
    'constraint-rm': Flags.string({
      description: 'remove a placement constraint, as written (repeatable)',
      multiple: true,
      multipleNonGreedy: true,
    }),
    'placement-pref-add': Flags.string({
      description: 'add a placement preference spread=node.labels.KEY (repeatable)',
      multiple: true,
      multipleNonGreedy: true,
    }),
    'placement-pref-rm': Flags.string({
      description: 'remove a placement preference, as written (repeatable)',
      multiple: true,
      multipleNonGreedy: true,
    }),
    force: Flags.boolean({description: 'replace every task even if nothing changed'}),
    ...updateFlags,
  }

  async run(): Promise<void> {
    const {own, passthrough} = splitAtDoubleDash(this.argv)
    const {args, flags} = await this.parse(ServiceUpdate, own)
    const add = (flags['publish-add'] ?? []).flatMap((p) => parsePublishes(p, '--publish-add'))
    const rm = (flags['publish-rm'] ?? []).map((p) => parsePortRef(p, '--publish-rm'))
    const nets = {add: flags['network-add'] ?? [], rm: flags['network-rm'] ?? []}
    const health = healthBody(flags)
    const body = {
      replicas: flags.replicas,
      command: passthrough,
      user: flags.user,
      limitMemory: flags['limit-memory'],
      limitCpu: flags['limit-cpu'],
      stopSignal: flags['stop-signal'],
      stopGracePeriod: flags['stop-grace-period'],
      ...health,
      force: flags.force,
      ...updateBody(flags),
      image: flags.image,
      envAdd: flags['env-add'],
      envRm: flags['env-rm'],
      mountAdd: flags['mount-add'],
      mountRm: flags['mount-rm'],
      hostname: flags.hostname,
      workdir: flags.workdir,
      capAdd: flags['cap-add'],
      capDrop: flags['cap-drop'],
      readOnly: flags['read-only'],
      init: flags.init,
      userns: flags.userns,
      constraintAdd: flags['constraint-add'],
      constraintRm: flags['constraint-rm'],
      placementPrefAdd: flags['placement-pref-add'],
      placementPrefRm: flags['placement-pref-rm'],
    }
    // --force and --no-healthcheck absent come as false; --no-read-only (false) is a change.
    const other = Object.entries(body).some(
      ([k, v]) => v !== undefined && !(v === false && (k === 'force' || k === 'noHealthcheck')),
    )
    const client = new AgentClient(flags.host)
    let svc: ServiceView
    if (nets.add.length > 0 || nets.rm.length > 0) {
      if (add.length > 0 || rm.length > 0 || other) throw new Error('give network changes and other changes in two updates')
      svc = await client.post<ServiceView>(`/services/${encodeURIComponent(args.service)}/networks`, nets)
    } else if (!other) {
      if (add.length === 0 && rm.length === 0)
        throw new Error(
          'nothing to change: give --publish-add SPEC, --publish-rm PORT, --network-add NET, --network-rm NET, or another flag (see --help)',
        )
      svc = await client.post<ServiceView>(`/services/${encodeURIComponent(args.service)}/ports`, {add, rm})
    } else {
      svc = await client.post<ServiceView>(`/services/${encodeURIComponent(args.service)}/update`, {...body, ports: {add, rm}})
    }
    if (flags.json) return printJson(svc)
    this.log(svc.name)
  }
}
