import {Flags} from '@oclif/core'
import {SwarmnetCommand, jsonFlag} from '../../src/cli/base.js'
import {paint, printJson, printTable} from '../../src/cli/output.js'
import {readNodeMaps, pinnedNodes} from '../../src/dataplane/inspect.js'

export default class InspectMaps extends SwarmnetCommand {
  static override description = `Print the live BPF maps of a node, every entry decoded

Reads the pins under /sys/fs/bpf/swarmnet/<node>/, so it works with the agent stopped.
Per-CPU counters are summed.`
  static override examples = [
    '<%= config.bin %> inspect maps',
    '<%= config.bin %> inspect maps --map sn_endpoints --json',
    'SWARMNET_HOST=n2 <%= config.bin %> inspect maps --map sn_stats',
  ]
  static override flags = {
    json: jsonFlag,
    host: Flags.string({
      description: 'the node whose maps to read (default: SWARMNET_HOST, else the only node with pinned maps)',
      env: 'SWARMNET_HOST',
    }),
    map: Flags.string({description: 'only this map (e.g. sn_endpoints)'}),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(InspectMaps)
    let node = flags.host
    if (!node) {
      const nodes = pinnedNodes()
      if (nodes.length === 0)
        throw new Error(
          'no node has pinned maps on this host (/sys/fs/bpf/swarmnet/ is empty): start one with `swarmnet init` or `swarmnet lab up`',
        )
      if (nodes.length > 1)
        throw new Error(`several nodes have pinned maps here (${nodes.join(', ')}): choose one with --host or SWARMNET_HOST`)
      node = nodes[0]!
    }
    const maps = readNodeMaps(node, flags.map)
    if (flags.json) return printJson({node, maps})
    const c = paint()
    for (const m of maps) {
      this.log(c.bold(`${m.name}`) + ` (${m.type}, ${m.entries.length}/${m.maxEntries} entries)`)
      if (m.entries.length === 0) {
        this.log('  (empty)\n')
        continue
      }
      const cols = [
        ...new Set(
          m.entries.flatMap((e) => [...Object.keys(asRecord(e.key, 'key')), ...Object.keys(asRecord(e.value, 'value'))]),
        ),
      ]
      printTable(
        cols,
        m.entries.map((e) => {
          const r = {...asRecord(e.key, 'key'), ...asRecord(e.value, 'value')}
          return cols.map((k) => r[k])
        }),
      )
      this.log('')
    }
  }
}

function asRecord(v: unknown, name: string): Record<string, string | number> {
  return typeof v === 'object' && v !== null ? (v as Record<string, string | number>) : {[name]: v as string | number}
}
