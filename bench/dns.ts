// DNS: queries/s and latency of an A question for a service name, asked by dnsperf (a real
// client) from inside a task of a 1-node lab, side by side in one run:
//   - the eBPF fast path (bpf/tc_dns.c): a plain A question to 172.18.0.1:53;
//   - the TypeScript responder alone: the same question carrying an EDNS option (which the fast
//     path passes on by rule), to 172.18.0.1:53; one thread answers it (recvmmsg/sendmmsg), and
//     dnsperf's one socket asking one name lets it send each run of equal answers as one UDP GSO
//     message (src/dns/udp-batch-worker.ts): askers on many sockets do not get that;
//   - dnsmasq (from the distribution) serving the same name from a hosts file, on
//     172.18.0.1:5353 in the node's namespace (a port the fast path does not look at).
// Each with one dnsperf thread (-T 1 -c 1), then with two (-T 2 -c 2, one per CPU of the test
// machine): the fast path runs in the asking task's own send path, so it grows with the askers,
// while dnsmasq and the responder are one process each. p50/p99 come from dnsperf's per-query
// latencies (-v). Beside each figure, what the CPU did: the share of one CPU dnsperf used (near
// 100%: the client is the bottleneck, as it always is for the fast path, whose work runs in the
// asking task's own send) and the serving process's CPU time per answered question (the agent, all
// its threads, for the responder; dnsmasq for dnsmasq), a figure the machine's load moves less
// than q/s. Each row runs `runs` times (default 5), the three servers alternating within a
// run so that drift on a shared machine hits all alike; the figure is the median with min-max.
// Numbers, not assertions.
import {spawn, spawnSync} from 'node:child_process'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {pidPath} from '../src/agent/paths.js'
import {DEFAULT_RUNS, fmtSpread, spread} from './summary.js'

const REPO = join(fileURLToPath(import.meta.url), '..', '..')
const BIN = join(REPO, 'bin', 'run.js')
const SECONDS = 4

function cli(args: string[]): string {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8',
    env: {...process.env, NO_COLOR: '1', SWARMNET_HOST: 'n1'},
  })
  if (r.status !== 0) throw new Error(`swarmnet ${args.join(' ')}: ${r.stderr.trim()}`)
  return r.stdout
}

export interface DnsBenchRow {
  label: string
  qps: number
  p50us: number
  p99us: number
  lost: number
  /** dnsperf's CPU time over the run's wall time (1: one CPU busy all along). */
  clientCpu: number
  /** dnsperf's CPU time per answered question, us (for the fast path: the whole cost of a question, its answer made in dnsperf's sends). */
  clientUsPerQuery: number
  /** The serving process's CPU time per answered question, us (NaN: the fast path, served in the client's own sends). */
  serverUsPerQuery: number
}

/** A process's CPU time so far (user + system, all threads), ms. */
function cpuMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100 // USER_HZ
}

function dnsperf(
  label: string,
  netns: string,
  file: string,
  port: number,
  extra: string[],
  threads: number,
  server?: number,
): DnsBenchRow {
  const c0 = server ? cpuMs(server) : NaN
  const t0 = process.hrtime.bigint()
  // bash's `times` after dnsperf: the CPU time its child (dnsperf) used, on stderr.
  const r = spawnSync(
    'nsenter',
    [
      `--net=/run/netns/${netns}`,
      '--',
      'bash',
      '-c',
      'dnsperf "$@"; s=$?; times >&2; exit $s',
      'bash',
      '-s',
      '172.18.0.1',
      '-p',
      String(port),
      '-d',
      file,
      '-l',
      String(SECONDS),
      '-c',
      String(threads),
      '-T',
      String(threads),
      '-q',
      '64',
      '-v',
      ...extra,
    ],
    {encoding: 'utf8', maxBuffer: 512 * 1024 * 1024},
  )
  const wallMs = Number(process.hrtime.bigint() - t0) / 1e6
  const c1 = server ? cpuMs(server) : NaN
  if (r.status !== 0) throw new Error(`dnsperf (${label}): ${r.stderr}`)
  const t = [...r.stderr.matchAll(/(\d+)m([\d.]+)s/g)].map((m) => Number(m[1]) * 60e3 + Number(m[2]) * 1e3)
  // The second line of `times`: the children's user and system time.
  const clientMs = t.length >= 4 ? t[t.length - 2]! + t[t.length - 1]! : NaN
  const lat = [...r.stdout.matchAll(/^> NOERROR \S+ A (\d+\.\d+)$/gm)].map((m) => Number(m[1]) * 1e6).sort((a, b) => a - b)
  const qps = Number(/Queries per second:\s+([\d.]+)/.exec(r.stdout)?.[1] ?? NaN)
  const lost = Number(/Queries lost:\s+(\d+)/.exec(r.stdout)?.[1] ?? NaN)
  const done = Number(/Queries completed:\s+(\d+)/.exec(r.stdout)?.[1] ?? NaN)
  const pct = (p: number) => lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))] ?? NaN
  return {
    label,
    qps,
    p50us: pct(50),
    p99us: pct(99),
    lost,
    clientCpu: clientMs / wallMs,
    clientUsPerQuery: (clientMs * 1000) / done,
    serverUsPerQuery: ((c1 - c0) * 1000) / done,
  }
}

export type DnsServer = 'fast' | 'responder' | 'dnsmasq'
export const DNS_SERVERS: DnsServer[] = ['fast', 'responder', 'dnsmasq']

/** Per dnsperf thread count, each server's runs. */
export interface DnsBench {
  runs: number
  byThreads: {threads: number; rows: Record<DnsServer, DnsBenchRow[]>}[]
}

export async function benchDns(opts: {runs?: number} = {}): Promise<DnsBench> {
  const runs = opts.runs ?? DEFAULT_RUNS
  const tmp = mkdtempSync(join(tmpdir(), 'sn-dnsbench-'))
  let dnsmasq: ReturnType<typeof spawn> | undefined
  cli(['lab', 'up', '--nodes', '1'])
  try {
    cli(['network', 'create', 'front'])
    cli(['service', 'create', '--name', 'web', '--replicas', '1', '--network', 'front'])
    cli(['service', 'create', '--name', 'cl', '--replicas', '1', '--network', 'front', '--', 'sleep', 'infinity'])
    let netns = ''
    for (let i = 0; i < 150 && !netns; i++) {
      const t = JSON.parse(cli(['service', 'ps', 'cl', '--json'])) as {state: string; netns?: string}[]
      if (t[0]?.state === 'running' && t[0].netns) netns = t[0].netns
      else await new Promise((r) => setTimeout(r, 200))
    }
    if (!netns) throw new Error('the client task did not start')
    const vip = (JSON.parse(cli(['service', 'inspect', 'web', '--json'])) as {vips: {ip: string}[]}).vips[0]!.ip
    const queries = join(tmp, 'queries')
    writeFileSync(queries, 'web A\n')
    const hosts = join(tmp, 'hosts')
    writeFileSync(hosts, `${vip} web\n`)
    dnsmasq = spawn(
      'nsenter',
      [
        '--net=/run/netns/sn-lab-n1',
        '--',
        'dnsmasq',
        '--keep-in-foreground',
        '--no-resolv',
        '--no-hosts',
        `--addn-hosts=${hosts}`,
        '--bind-interfaces',
        '--listen-address=172.18.0.1',
        '--except-interface=lo',
        '--port=5353',
        '--user=root',
        '--pid-file=',
        '--local-ttl=5',
        '--cache-size=1000',
      ],
      {stdio: 'ignore'},
    )
    await new Promise((r) => setTimeout(r, 1000))
    // Let the reconciler write the fast path's maps (it runs at least every 3 s).
    await new Promise((r) => setTimeout(r, 3500))
    // The responder's process: n1's agent (all its threads); dnsmasq's own (nsenter execs it).
    const agent = Number(readFileSync(pidPath('n1'), 'utf8').trim())
    const dnsmasqPid = dnsmasq.pid!
    const out: DnsBench = {runs, byThreads: []}
    for (const t of [1, 2]) {
      const c = `${t} dnsperf thread${t > 1 ? 's' : ''}`
      const ask: Record<DnsServer, () => DnsBenchRow> = {
        fast: () =>
          dnsperf(`eBPF fast path (tc on the task gateway veth), plain A question, :53, ${c}`, netns, queries, 53, [], t),
        responder: () =>
          dnsperf(
            `TypeScript responder (one thread, UDP GSO), A with an EDNS option the fast path passes (65001), :53, ${c}`,
            netns,
            queries,
            53,
            ['-E', '65001:00'],
            t,
            agent,
          ),
        dnsmasq: () =>
          dnsperf(
            `dnsmasq 2.90 from a hosts file, plain A question, :5353 in the node namespace, ${c}`,
            netns,
            queries,
            5353,
            [],
            t,
            dnsmasqPid,
          ),
      }
      const rows: Record<DnsServer, DnsBenchRow[]> = {fast: [], responder: [], dnsmasq: []}
      for (let i = 0; i < runs; i++) for (const k of DNS_SERVERS) rows[k].push(ask[k]())
      out.byThreads.push({threads: t, rows})
    }
    return out
  } finally {
    dnsmasq?.kill('SIGKILL')
    spawnSync(process.execPath, [BIN, 'lab', 'down'], {encoding: 'utf8'})
    rmSync(tmp, {recursive: true, force: true})
  }
}

export function formatDns(b: DnsBench): string {
  const lines = [`${b.runs} runs of ${SECONDS} s per server, servers alternating; median (min-max)`]
  for (const {rows} of b.byThreads)
    for (const k of DNS_SERVERS) {
      const r = rows[k]
      const f0 = (x: number) => x.toFixed(0)
      const f2 = (x: number) => x.toFixed(2)
      lines.push(
        `${(r[0]?.label ?? k).padEnd(100)} ${fmtSpread(spread(r.map((x) => x.qps)), f0)} q/s   p50 ${f0(spread(r.map((x) => x.p50us)).median)} us   p99 ${fmtSpread(spread(r.map((x) => x.p99us)), f0)} us   lost ${r.reduce((a, x) => a + x.lost, 0)}   dnsperf CPU ${(100 * spread(r.map((x) => x.clientCpu)).median).toFixed(0)}%, ${f2(spread(r.map((x) => x.clientUsPerQuery)).median)} us/query` +
          (k === 'fast'
            ? ''
            : `   server CPU ${fmtSpread(spread(r.map((x) => x.serverUsPerQuery)), (x) => x.toFixed(2))} us/query`),
      )
    }
  return lines.join('\n')
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf('--runs')
  console.log(formatDns(await benchDns(i >= 0 ? {runs: Number(process.argv[i + 1])} : {})))
}
