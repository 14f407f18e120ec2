import {Args} from '@oclif/core'
import {SwarmnetCommand, jsonFlag, pinsHostFlag} from '../../src/cli/base.js'
import {printJson, printTable} from '../../src/cli/output.js'
import {pinnedNode} from '../../src/dataplane/inspect.js'
import {readLb, readLbPaths} from '../../src/lb/read.js'
import {formatPort} from '../../src/model/ports.js'

export default class InspectLb extends SwarmnetCommand {
  static override description = `Show the load balancing of a node: per service, its VIP on each network, its backends, and the live flows to each;
then its published ports with the tasks behind them

Reads the node's pinned maps and its copy of the store, so it works with the agent stopped.
Flows are counted where they are tracked: on the node of the client that opened them. A backend
whose task is being stopped is marked (draining): its flows go on, no new one goes to it. Sockets of
tasks balanced at connect() are not tracked (their packets go to the backend from the first one):
the closing line counts both ways, for all services.`
  static override examples = [
    '<%= config.bin %> inspect lb',
    '<%= config.bin %> inspect lb web --json',
    'SWARMNET_HOST=n2 <%= config.bin %> inspect lb',
  ]
  static override args = {service: Args.string({description: 'only this service (name)'})}
  static override flags = {
    json: jsonFlag,
    host: pinsHostFlag,
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(InspectLb)
    const node = pinnedNode(flags.host)
    let services = readLb(node)
    if (args.service !== undefined) {
      services = services.filter((s) => s.service === args.service)
      if (services.length === 0) throw new Error(`service ${args.service} has no VIP on node ${node}`)
    }
    const paths = readLbPaths(node)
    if (flags.json) return printJson({node, services, paths})
    const rows: (string | number)[][] = []
    for (const s of services) {
      if (s.frontends.length === 0) rows.push([s.service, '-', '(no VIP)', '', '', '', ''])
      for (const [i, f] of s.frontends.entries()) {
        const front = f.programmed ? f.vip : `${f.vip} (not programmed)`
        const head = [i === 0 ? s.service : '', f.network, front]
        if (f.backends.length === 0) rows.push([...head, '(none)', '', '', ''])
        for (const [j, b] of f.backends.entries())
          rows.push([
            ...(j === 0 ? head : ['', '', '']),
            b.ip,
            `${b.task ?? '?'}${b.draining ? ' (draining)' : ''}`,
            b.node,
            b.flows,
          ])
      }
    }
    printTable(['service', 'network', 'frontend', 'backend', 'task', 'node', 'flows'], rows)
    const {socket, tc} = paths
    this.log(
      `\nbalanced at connect(): ${socket.connects} connects, ${socket.sends} datagrams, ${socket.ended} sockets ended (backend left); by tc: ${tc.newFlows} flows tracked, ${tc.revNat} replies given their VIP back`,
    )
    const published: (string | number)[][] = []
    for (const s of services)
      for (const p of s.ports) {
        const head = [s.service, formatPort(p), p.mode === 'ingress' ? 'every node' : p.nodes.join(',') || '-']
        if (p.backends.length === 0) published.push([...head, '(none)', '', ''])
        for (const [j, b] of p.backends.entries())
          published.push([...(j === 0 ? head : ['', '', '']), b.task, b.node, b.ip ? `${b.ip}:${p.target}` : `local:${p.target}`])
      }
    if (published.length === 0) return
    this.log('')
    printTable(['service', 'published', 'answers on', 'task', 'node', 'backend'], published)
  }
}
