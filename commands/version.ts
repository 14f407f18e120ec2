import {SwarmnetCommand, jsonFlag} from '../src/cli/base.js'
import {paint, printJson} from '../src/cli/output.js'
import {probeFeatures, type Probe} from '../src/bpf/features.js'

export default class Version extends SwarmnetCommand {
  static override needsRoot = false
  static override description =
    'Show the versions of swarmnet, the kernel and libbpf, and which BPF features the kernel offers (probed, not guessed)'
  static override examples = ['<%= config.bin %> version', '<%= config.bin %> version --json']
  static override flags = {json: jsonFlag}

  async run(): Promise<void> {
    const {flags} = await this.parse(Version)
    const f = probeFeatures()
    const out = {swarmnet: this.config.version, node: process.version, ...f}
    if (flags.json) return printJson(out)
    const c = paint()
    const mark = (p: Probe) => (p === true ? c.green('yes') : p === false ? c.red('no') : c.yellow(`unknown (errno ${p.error})`))
    this.log(`swarmnet ${out.swarmnet} (node ${out.node})`)
    this.log(`kernel   ${f.kernel}`)
    this.log(`libbpf   ${f.libbpf}`)
    this.log(
      `kernel BTF: ${f.kernelBtf ? c.green('yes') : c.red('no')}   bpffs mounted: ${f.bpffsMounted ? c.green('yes') : c.yellow('no')}`,
    )
    this.log('program types:')
    for (const [k, v] of Object.entries(f.progTypes)) this.log(`  ${k.padEnd(28)} ${mark(v)}`)
    this.log('map types:')
    for (const [k, v] of Object.entries(f.mapTypes)) this.log(`  ${k.padEnd(28)} ${mark(v)}`)
    this.log('helpers:')
    for (const [k, v] of Object.entries(f.helpers)) this.log(`  ${k.padEnd(28)} ${mark(v)}`)
  }
}
