// Which backend a new flow to a service VIP gets, read from a node's maps: the flow's hash picks a
// slot of the service's Maglev table and the slot holds the backend's address, as tc_task.c does.
// The demo uses it to pick source ports that reach each task in turn, and says so.
import {SN_MAGLEV_CHUNK} from '../bpf/codecs.js'
import {lbSlot} from './hash.js'
import {readLbMap} from './read.js'

const TCP = 6

/** A VIP's Maglev table as a node's maps hold it (slot -> backend address); undefined while they hold none. */
export function vipTable(node: string, vni: number, vip: string): string[] | undefined {
  const svc = readLbMap(node, 'sn_services').find((e) => e.key.vni === vni && e.key.vip === vip)
  if (!svc) return undefined
  const {table, size} = svc.value
  const chunks = new Map<number, string[]>()
  for (const e of readLbMap(node, 'sn_maglev')) if (e.key.table === table) chunks.set(e.key.chunk, e.value)
  const slots: string[] = []
  for (let s = 0; s < size; s++) {
    const chunk = chunks.get(Math.floor(s / SN_MAGLEV_CHUNK))
    if (!chunk) return undefined // written chunk by chunk: not all there yet
    slots.push(chunk[s % SN_MAGLEV_CHUNK]!)
  }
  return slots
}

/** The backend a new TCP flow from src:sport to vip:dport gets from table. */
export function backendOf(table: readonly string[], src: string, sport: number, vip: string, dport: number): string {
  return table[lbSlot(src, vip, sport, dport, TCP, table.length)]!
}

/**
 * Source ports from `from` up for TCP flows from src to vip:dport that the table sends to each
 * backend in turn (b1, b2, b3, b1, ...), `rounds` times: n = rounds * backends.length ports.
 */
export function portsInTurn(
  table: readonly string[],
  src: string,
  vip: string,
  dport: number,
  backends: readonly string[],
  rounds: number,
  from = 40_000,
): number[] {
  const out: number[] = []
  let port = from
  for (let i = 0; i < rounds * backends.length; i++) {
    const want = backends[i % backends.length]!
    // A backend holds about 1/n of the slots: one is found within a few ports, unless it holds none.
    for (; port <= 65_535 && backendOf(table, src, port, vip, dport) !== want; port++);
    if (port > 65_535) throw new Error(`no source port from ${from} sends a flow to ${want} through ${vip}`)
    out.push(port++)
  }
  return out
}
