import {Flags} from '@oclif/core'
import {SwarmnetCommand} from '../src/cli/base.js'
import {runAgent} from '../src/agent/agent.js'
import {defaultNodeName} from '../src/agent/bootstrap.js'
import {agentLogPath} from '../src/agent/paths.js'
import {replaceAgent, restartAgent} from '../src/agent/spawn.js'
import {HANDOVER_LOCK_WAIT_MS, askHandover} from '../src/agent/handover.js'
import {DEFAULT_METRICS_ADDR, parseMetricsAddr} from '../src/metrics/server.js'
import {DEFAULT_UNIT_DIR, installUnit, removeUnit, unitText} from '../src/agent/unit.js'

export default class Agent extends SwarmnetCommand {
  static override description = `Run a node's agent in the foreground

init and join start it in the background; --detach starts it there again (after a reboot or a
stop), or run it yourself under a supervisor (systemd). It keeps the store, gossips on 7946,
reconciles maps, links and tasks, and serves the local API on /run/swarmnet/<node>.sock (root only).`
  static override examples = ['<%= config.bin %> agent --node n1', '<%= config.bin %> agent --node n1 --detach']
  static override flags = {
    node: Flags.string({description: 'the node to run (default: the host name)', env: 'SWARMNET_NODE'}),
    detach: Flags.boolean({
      char: 'd',
      description: 'start it in the background, as init and join do, and return once it answers',
    }),
    'metrics-addr': Flags.string({
      description: `where to serve Prometheus metrics (GET /metrics), IP:PORT; '' for none [default: ${DEFAULT_METRICS_ADDR}]`,
      env: 'SWARMNET_METRICS_ADDR',
    }),
    replace: Flags.boolean({
      description:
        'take the node over from its running agent (an upgrade): the API answers throughout (writes are refused for the moment the new agent starts), the data plane forwards throughout',
      exclusive: ['install-unit', 'remove-unit'],
    }),
    'install-unit': Flags.boolean({
      description: 'write the systemd unit that runs this agent (then: systemctl daemon-reload; systemctl enable --now swarmnet)',
      exclusive: ['remove-unit', 'detach'],
    }),
    'remove-unit': Flags.boolean({description: 'remove the unit --install-unit wrote', exclusive: ['install-unit', 'detach']}),
    'unit-dir': Flags.string({description: 'where the unit goes', default: DEFAULT_UNIT_DIR}),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(Agent)
    const node = flags.node ?? defaultNodeName()
    const metricsAddr = flags['metrics-addr']
    if (metricsAddr !== undefined) {
      parseMetricsAddr(metricsAddr) // refused here, in one line, before anything starts
      process.env.SWARMNET_METRICS_ADDR = metricsAddr // the detached agent inherits it
    }
    if (flags['install-unit']) {
      const file = installUnit(
        flags['unit-dir'],
        unitText({...(flags.node ? {node: flags.node} : {}), ...(metricsAddr !== undefined ? {metricsAddr} : {})}),
      )
      return this.log(`${file} written: systemctl daemon-reload && systemctl enable --now swarmnet`)
    }
    if (flags['remove-unit']) {
      const file = `${flags['unit-dir']}/swarmnet.service`
      return this.log(removeUnit(flags['unit-dir']) ? `${file} removed (systemctl daemon-reload)` : `no unit at ${file}`)
    }
    if (flags.detach && flags.replace) {
      const pid = await replaceAgent(node)
      return this.log(`agent of node ${node} took over (pid ${pid}, log ${agentLogPath(node)})`)
    }
    if (flags.detach) {
      const pid = await restartAgent(node)
      return this.log(`agent of node ${node} running (pid ${pid}, log ${agentLogPath(node)})`)
    }
    const log = (m: string) => process.stdout.write(`${new Date().toISOString()} ${m}\n`)
    const old = flags.replace ? await askHandover(node) : undefined
    if (old !== undefined) log(`taking node ${node} over from the agent with pid ${old}`)
    const agent = await runAgent(node, log, {
      ...(metricsAddr === undefined ? {} : {metricsAddr}),
      ...(old !== undefined ? {lockWaitMs: HANDOVER_LOCK_WAIT_MS} : {}),
    })
    const shutdown = (sig: string) => {
      log(`${sig}: stopping (tasks and the data plane keep running)`)
      void agent.stop().then(() => process.exit(0))
    }
    process.on('SIGTERM', () => shutdown('SIGTERM'))
    process.on('SIGINT', () => shutdown('SIGINT'))
    await agent.done
    process.exit(0) // a handover's end: nothing of this agent is left to wait for
  }
}
