// A small-UDP sender that is not the bottleneck: netsniff-ng's trafgen, which writes crafted
// frames into a PACKET_TX_RING and hands them to the device with PACKET_QDISC_BYPASS (no socket,
// no UDP or IP stack, no qdisc per packet), one process per CPU. iperf3 -u pays a sendmsg, the
// UDP and IP output path and a qdisc for every 64-byte datagram, and sat at ~100% of its CPU in
// every mesh run: its figure says more about the sender than about the path.
//
// The frames are whole Ethernet frames: the bench gives the MACs (the client's and the next
// hop's) and trafgen fills the IPv4 and UDP lengths and checksums itself, per frame (the source
// port changes from frame to frame: many flows, as many clients would be).
import {spawn} from 'node:child_process'
import {netnsPath} from '../src/sys/netns.js'

export interface UdpFrames {
  srcMac: string
  dstMac: string
  src: string
  dst: string
  dport: number
  /** Source ports, first..last inclusive, one after the other frame by frame (then again). */
  sports: [number, number]
  /** UDP payload bytes (iperf3 -l 64 sends 64). */
  payload: number
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i
const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/
const port = (p: number) => Number.isInteger(p) && p > 0 && p < 65536

/** trafgen's configuration for one stream of such frames. */
export function trafgenConfig(f: UdpFrames): string {
  if (![f.srcMac, f.dstMac].every((m) => MAC.test(m))) throw new Error(`trafgen: bad MAC ${f.srcMac} / ${f.dstMac}`)
  if (![f.src, f.dst].every((a) => IPV4.test(a))) throw new Error(`trafgen: bad address ${f.src} / ${f.dst}`)
  if (!port(f.dport) || !port(f.sports[0]) || !port(f.sports[1]) || f.sports[0] > f.sports[1])
    throw new Error(`trafgen: bad ports ${f.sports.join('-')} -> ${f.dport}`)
  if (!Number.isInteger(f.payload) || f.payload < 1 || f.payload > 1400) throw new Error(`trafgen: bad payload ${f.payload}`)
  return `{
  eth(da=${f.dstMac}, sa=${f.srcMac}),
  ipv4(saddr=${f.src}, daddr=${f.dst}, ttl=64),
  udp(sp=dinc(${f.sports[0]}, ${f.sports[1]}), dp=${f.dport}),
  fill(0x42, ${f.payload})
}
`
}

export interface TrafgenSummary {
  /** Frames trafgen handed to the device (its "packets outgoing"). */
  packets: number
  bytes: number
  /** The longest of its processes' sending time, seconds. */
  seconds: number
  /** Frames and seconds per sending process (one per CPU). */
  perCpu: {cpu: number; packets: number; seconds: number}[]
}

/**
 * trafgen's closing report, e.g.
 *       438528 packets outgoing
 *     46483968 bytes outgoing
 *            2 sec, 874005 usec on CPU0 (438528 packets)
 * Throws when it is not there (trafgen failed before sending).
 */
export function parseTrafgenSummary(text: string): TrafgenSummary {
  const num = (re: RegExp) => {
    const m = re.exec(text)
    return m ? Number(m[1]) : undefined
  }
  const packets = num(/^\s*(\d+) packets outgoing$/m)
  const bytes = num(/^\s*(\d+) bytes outgoing$/m)
  if (packets === undefined || bytes === undefined)
    throw new Error(`trafgen: no report in its output: ${text.trim().slice(-300)}`)
  const perCpu = [...text.matchAll(/^\s*(\d+) sec, (\d+) usec on CPU(\d+) \((\d+) packets\)$/gm)].map((m) => ({
    cpu: Number(m[3]),
    packets: Number(m[4]),
    seconds: Number(m[1]) + Number(m[2]) / 1e6,
  }))
  if (perCpu.length === 0) throw new Error(`trafgen: no per-CPU time in its output: ${text.trim().slice(-300)}`)
  return {packets, bytes, seconds: Math.max(...perCpu.map((c) => c.seconds)), perCpu}
}

/**
 * How a trafgen run ended, from its output: with its report (stopped by SIGINT), or given up on a
 * full socket send buffer (`Flushing TX_RING failed: Resource temporarily unavailable`). The
 * latter is what a sender faster than the path meets: the frames it handed over are still held
 * downstream, its socket's send buffer (net.core.wmem_default, read-only in a namespace) is
 * full, and trafgen treats the EAGAIN as fatal. Anything else is an error.
 */
export function trafgenEnd(text: string): {report: TrafgenSummary} | {bufferFull: true} {
  if (/Flushing TX_RING failed: Resource temporarily unavailable/.test(text)) return {bufferFull: true}
  return {report: parseTrafgenSummary(text)}
}

/** One trafgen run of at most `ms`, its output; its whole process group is gone when this returns. */
function trafgenOnce(ns: string, dev: string, config: string, ms: number, cpus: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(
      'nsenter',
      [`--net=${netnsPath(ns)}`, '--', 'trafgen', '-o', dev, '-i', config, '--no-sock-mem', '-P', String(cpus)],
      // Its own process group: trafgen -P forks one sender per CPU, and only a signal to the
      // group reaches them all (to the parent alone, the senders go on).
      {stdio: ['ignore', 'pipe', 'pipe'], detached: true},
    )
    const signal = (s: NodeJS.Signals) => {
      try {
        if (p.pid) process.kill(-p.pid, s)
      } catch {
        // already gone
      }
    }
    let out = ''
    p.stdout.on('data', (d: Buffer) => (out += d.toString()))
    p.stderr.on('data', (d: Buffer) => (out += d.toString()))
    // Nor left running when the bench itself ends meanwhile.
    const atExit = () => signal('SIGKILL')
    process.once('exit', atExit)
    const stop = setTimeout(() => signal('SIGINT'), ms)
    // Never left running: a trafgen that ignores SIGINT is killed.
    const kill = setTimeout(() => signal('SIGKILL'), ms + 10_000)
    const done = () => {
      clearTimeout(stop)
      clearTimeout(kill)
      process.off('exit', atExit)
      // A sender whose sibling gave up may still run.
      signal('SIGKILL')
    }
    p.on('error', (e) => {
      done()
      reject(e)
    })
    p.on('close', () => {
      done()
      resolve(out)
    })
  })
}

export interface FramesSent {
  /** Wall time from the first start to the last end, seconds. */
  seconds: number
  /** Times trafgen gave up on a full send buffer and was started again. */
  restarts: number
}

/**
 * Sends with trafgen in namespace `ns` on device `dev` (configuration file `config`) for
 * `seconds`, one process on each of the first `cpus` CPUs, started again whenever it gives up on
 * a full send buffer (see trafgenEnd). Count the frames at the device and where they arrive: a
 * run that gave up prints no report. --no-sock-mem: trafgen would try to raise net.core's socket
 * memory limits.
 */
export async function sendFrames(ns: string, dev: string, config: string, seconds: number, cpus: number): Promise<FramesSent> {
  const t0 = Date.now()
  const end = t0 + seconds * 1000
  let restarts = 0
  while (Date.now() < end - 50) {
    const r = trafgenEnd(await trafgenOnce(ns, dev, config, end - Date.now(), cpus))
    if ('report' in r) break
    restarts++
    if (restarts > 10_000) throw new Error('trafgen: gave up on a full send buffer 10,000 times')
  }
  return {seconds: (Date.now() - t0) / 1000, restarts}
}
