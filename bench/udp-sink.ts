// Where the bench counts small UDP arriving at a task: a socket bound to the target port in the
// task's namespace that never reads, with the smallest receive buffer. Every datagram the data
// path hands to the socket is counted by the namespace's UDP statistics either way: queued (a
// few, InDatagrams once read) or refused for a full buffer (RcvbufErrors). So the count is what
// the path delivered, whatever the sink's speed, and the sink takes no CPU from the path. The
// same sink and counting on both paths.
import {spawn, type ChildProcess} from 'node:child_process'
import {readFileSync} from 'node:fs'
import {netnsPath} from '../src/sys/netns.js'

/** The Udp: lines of /proc/net/snmp as name -> value. */
export function parseUdpSnmp(text: string): Record<string, number> {
  const lines = text.split('\n').filter((l) => l.startsWith('Udp: '))
  if (lines.length < 2) throw new Error('/proc/net/snmp: no Udp: lines')
  const names = lines[0]!.split(/\s+/).slice(1)
  const values = lines[1]!.split(/\s+/).slice(1).map(Number)
  if (names.length !== values.length || values.some((v) => !Number.isFinite(v)))
    throw new Error(`/proc/net/snmp: Udp: ${names.length} names, ${values.length} values`)
  return Object.fromEntries(names.map((n, i) => [n, values[i]!]))
}

/** Datagrams handed to a socket: read, or refused with the buffer full. */
export const delivered = (u: Record<string, number>) => (u.InDatagrams ?? 0) + (u.RcvbufErrors ?? 0)

const SINK = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
print("bound", flush=True)
sys.stdin.read()
`

export interface UdpSink {
  /** The namespace's UDP statistics now (read through the sink's /proc entry: no process started). */
  counters(): Record<string, number>
  close(): void
}

/** Binds the sink on `port` in namespace `ns`; it ends when close() is called or the bench ends. */
export async function startUdpSink(ns: string, port: number): Promise<UdpSink> {
  const p: ChildProcess = spawn('nsenter', [`--net=${netnsPath(ns)}`, '--', 'python3', '-c', SINK, String(port)], {
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  let err = ''
  p.stderr!.on('data', (d: Buffer) => (err += d.toString()))
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`udp sink in ${ns}: not bound after 10 s ${err}`)), 10_000)
    p.stdout!.once('data', () => {
      clearTimeout(t)
      resolve()
    })
    p.once('exit', (code) => {
      clearTimeout(t)
      reject(new Error(`udp sink in ${ns} on ${port}: exited ${code}: ${err.trim()}`))
    })
  })
  const pid = p.pid!
  return {
    counters: () => parseUdpSnmp(readFileSync(`/proc/${pid}/net/snmp`, 'utf8')),
    close: () => {
      if (p.exitCode === null) p.kill('SIGKILL')
    },
  }
}
