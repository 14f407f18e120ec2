// `swarmnet top`: one screen of what the metrics endpoint says, with per-second rates from the
// previous screen's numbers. Pure: text in, text out.
import type {Exposition, Sample} from './parse.js'

const key = (s: Sample) => `${s.name}${JSON.stringify(s.labels)}`

function rate(now: Sample, prev: Exposition | undefined, seconds: number): string {
  const before = prev?.samples.find((p) => key(p) === key(now))
  if (!before || seconds <= 0) return '-'
  return ((now.value - before.value) / seconds).toFixed(1)
}

const pad = (rows: string[][]) => {
  const w = rows[0]!.map((_c, i) => Math.max(...rows.map((r) => r[i]!.length)))
  return rows.map((r) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(w[i]!)))
      .join('  ')
      .trimEnd(),
  )
}

export function renderTop(node: string, now: Exposition, prev: Exposition | undefined, seconds: number): string {
  const lines: string[] = [`swarmnet top: node ${node}`, '']
  const of = (name: string) => now.samples.filter((s) => s.name === name)

  const dp = of('swarmnet_datapath_packets_total').filter((s) => s.value > 0)
  lines.push(
    ...pad([
      ['PROGRAM', 'RESULT', 'PACKETS', 'PER SECOND'],
      ...dp.map((s) => [s.labels.program ?? '', s.labels.result ?? '', String(s.value), rate(s, prev, seconds)]),
    ]),
    '',
  )
  const max = new Map(of('swarmnet_bpf_map_max_entries').map((s) => [s.labels.map, s.value]))
  lines.push(
    ...pad([
      ['MAP', 'ENTRIES', 'MAX', 'FILL'],
      ...of('swarmnet_bpf_map_entries').map((s) => {
        const m = max.get(s.labels.map) ?? 0
        return [s.labels.map ?? '', String(s.value), String(m), m ? `${((100 * s.value) / m).toFixed(1)}%` : '-']
      }),
    ]),
    '',
  )
  const g = (name: string, label: string) =>
    of(name).map((s) => [label + (s.labels.reason ? ` (${s.labels.reason})` : ''), String(s.value), rate(s, prev, seconds)])
  lines.push(
    ...pad([
      ['GOSSIP', 'TOTAL', 'PER SECOND'],
      ...g('swarmnet_gossip_messages_received_total', 'messages received'),
      ...g('swarmnet_gossip_messages_sent_total', 'messages sent'),
      ...g('swarmnet_gossip_received_bytes_total', 'bytes received'),
      ...g('swarmnet_gossip_sent_bytes_total', 'bytes sent'),
      ...g('swarmnet_gossip_messages_dropped_total', 'dropped').filter((r) => r[1] !== '0'),
      ...g('swarmnet_gossip_entries_refused_total', 'entries refused').filter((r) => r[1] !== '0'),
    ]),
    '',
  )
  const nodes = of('swarmnet_cluster_nodes').map((s) => `${s.value} ${s.labels.state}`)
  const tasks = of('swarmnet_tasks').map((s) => `${s.value} ${s.labels.state}`)
  const restarts = of('swarmnet_task_restarts_total').reduce((a, s) => a + s.value, 0)
  const errors = of('swarmnet_reconcile_errors_total').reduce((a, s) => a + s.value, 0)
  const passes = of('swarmnet_reconcile_duration_seconds_count').reduce((a, s) => a + s.value, 0)
  lines.push(
    `nodes: ${nodes.join(', ') || '-'}   tasks here: ${tasks.join(', ') || '-'}   task restarts: ${restarts}`,
    `reconcile steps: ${passes}, failed: ${errors}`,
  )
  return lines.join('\n')
}
