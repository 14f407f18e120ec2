import {Flags} from '@oclif/core'
import {SwarmnetCommand, jsonFlag, pinsHostFlag} from '../../src/cli/base.js'
import {paint, printJson, printTable} from '../../src/cli/output.js'
import {readNodeMaps, pinnedNode} from '../../src/dataplane/inspect.js'

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
    host: pinsHostFlag,
    map: Flags.string({description: 'only this map (e.g. sn_endpoints)'}),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(InspectMaps)
    const node = pinnedNode(flags.host)
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
