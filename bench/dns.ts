// DNS: queries/s and latency of an A question for a service name, asked by dnsperf (a real
// client) from inside a task of a 1-node lab, side by side in one run:
//   - the eBPF fast path (bpf/tc_dns.c): a plain A question to 172.18.0.1:53;
//   - the TypeScript responder alone: the same question carrying an EDNS option (which the fast
//     path passes on by rule), to 172.18.0.1:53; one thread answers it (recvmmsg/sendmmsg), and
//     dnsperf's one socket asking one name lets it send each run of equal answers as one UDP GSO
//     message (src/dns/udp-batch-worker.ts): askers on many sockets do not get that;
//   - dnsmasq (from the distribution) serving the same name from a hosts file, on
//     172.18.0.1:5353 in the node's namespace (a port the fast path does not look at).
// Each with three dnsperf settings, at most 64 questions outstanding: one thread on one socket
// (-T 1 -c 1: the figure the goals were set on), two threads on two sockets (-T 2 -c 2, one per
// CPU of the test machine) and two threads on eight sockets (-c 8: askers on many sockets, as
// getaddrinfo's, which get no GSO run from the responder). The fast path runs in the asking
// task's own send path, so it grows with the askers, while dnsmasq and the responder are one
// process each. p50/p99 come from dnsperf's per-query latencies (-v). Beside each figure, what
// the CPU did: dnsperf's CPU, and its busiest thread sampled mid-run (/proc schedstat): the
// share of the time it was on a CPU or waiting for one, i.e. never asleep on the server (~100%:
// the client is the bottleneck, its own work or the CPU it cannot get, as it always is for the
// fast path, whose work runs in the asking task's own send; the bench says for which servers), and the serving process's CPU time
// per answered question (the agent, all its threads, for the responder; dnsmasq for dnsmasq), a
// figure the machine's load moves less than q/s. Each setting runs `runs` times (default 5), the
// three servers alternating within a run so that drift on a shared machine hits all alike; the
// figure is the median with min-max; the ratios per setting and each server at its fastest
// setting close the section.
// Then kxdpgun (knot-dnsutils, bench/kxdpgun.ts) from the same task: an AF_XDP client whose own
// cost per question is far below dnsperf's (whose sending thread limits the fast path), for each
// server's answered q/s, searched for by rising rates; the --json ratios come from it when it is
// installed (bench/run.ts), the p99s from dnsperf.
// Numbers, not assertions.
import {spawn, spawnSync} from 'node:child_process'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {pidPath} from '../src/agent/paths.js'
import {buildSkbModeShim, capacity, kxdpgun, wrongAnswers, type Capacity, type KxdpgunReport} from './kxdpgun.js'
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
  /**
   * dnsperf's busiest thread, sampled mid-run: the share of the time it was on a CPU or runnable
   * and waiting for one (never asleep on the server); ~1: the client is what limits.
   */
  clientBusiestThread: number
  /** That thread's share of the time on a CPU. */
  clientBusiestOnCpu: number
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

/** How dnsperf asks: its threads (-T), its sockets (-c, spread over the threads) and the questions outstanding at most (-q). */
export interface DnsClient {
  threads: number
  sockets: number
}
export const DNS_CLIENTS: DnsClient[] = [
  {threads: 1, sockets: 1},
  {threads: 2, sockets: 2},
  {threads: 2, sockets: 8},
]
const OUTSTANDING = 64
/** dnsperf's threads' CPU is sampled over [SAMPLE_FROM, SAMPLE_TO] s of its run (after its start, before its drain). */
const SAMPLE_FROM = 0.5
const SAMPLE_TO = SECONDS - 0.5

/** Each thread's time on a CPU and waiting on a run queue, ns, from `TID run wait slices` lines (schedstat). */
function threadSched(s: string): Map<string, {run: number; wait: number}> {
  const m = new Map<string, {run: number; wait: number}>()
  for (const line of s.split('\n')) {
    const f = line.trim().split(' ')
    if (f.length >= 3) m.set(f[0]!, {run: Number(f[1]), wait: Number(f[2])})
  }
  return m
}

function dnsperf(
  label: string,
  netns: string,
  file: string,
  port: number,
  extra: string[],
  client: DnsClient,
  out: string,
  server?: number,
): DnsBenchRow {
  const c0 = server ? cpuMs(server) : NaN
  const t0 = process.hrtime.bigint()
  // dnsperf's output (a line per answer, -v) goes to a file, not a pipe this process drains: on a
  // loaded machine a pipe left full blocks dnsperf's receiving thread in write(), and a server
  // that answers in bursts (the responder's GSO runs) would pay for it more than one answering
  // one by one.
  // bash's `times` after dnsperf: the CPU time its child (dnsperf) used, on stderr; between
  // markers, its threads' `TID schedstat` lines at SAMPLE_FROM and SAMPLE_TO s into the run: the
  // busiest thread's time on a CPU or waiting for one says whether the client is what limits (a
  // thread that never sleeps: the answers come as fast as it can ask).
  const r = spawnSync(
    'nsenter',
    [
      `--net=/run/netns/${netns}`,
      '--',
      'bash',
      '-c',
      `st() { for t in /proc/$p/task/*; do echo "\${t##*/} $(cat $t/schedstat)" >&2; done; }; dnsperf "$@" > ${JSON.stringify(out)} & p=$!; sleep ${SAMPLE_FROM}; echo '#t0' >&2; st; sleep ${SAMPLE_TO - SAMPLE_FROM}; echo '#t1' >&2; st; echo '#end' >&2; wait $p; s=$?; times >&2; exit $s`,
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
      String(client.sockets),
      '-T',
      String(client.threads),
      '-q',
      String(OUTSTANDING),
      '-v',
      ...extra,
    ],
    {encoding: 'utf8'},
  )
  const wallMs = Number(process.hrtime.bigint() - t0) / 1e6
  const c1 = server ? cpuMs(server) : NaN
  if (r.status !== 0) throw new Error(`dnsperf (${label}): ${r.stderr}`)
  const t0s = /#t0\n([^]*?)#t1\n([^]*?)#end/.exec(r.stderr)
  let busiest = NaN
  let busiestOnCpu = NaN
  if (t0s) {
    const a = threadSched(t0s[1]!)
    const b = threadSched(t0s[2]!)
    const window = (SAMPLE_TO - SAMPLE_FROM) * 1e9
    busiest = 0
    for (const [tid, x] of b) {
      const y = a.get(tid) ?? {run: 0, wait: 0}
      const busy = (x.run - y.run + x.wait - y.wait) / window
      if (busy > busiest) [busiest, busiestOnCpu] = [busy, (x.run - y.run) / window]
    }
  }
  const t = [...r.stderr.slice(r.stderr.indexOf('#end')).matchAll(/(\d+)m([\d.]+)s/g)].map(
    (m) => Number(m[1]) * 60e3 + Number(m[2]) * 1e3,
  )
  // The second line of `times`: the children's user and system time.
  const clientMs = t.length >= 4 ? t[t.length - 2]! + t[t.length - 1]! : NaN
  const stdout = readFileSync(out, 'utf8')
  rmSync(out, {force: true})
  const lat = [...stdout.matchAll(/^> NOERROR \S+ A (\d+\.\d+)$/gm)].map((m) => Number(m[1]) * 1e6).sort((a, b) => a - b)
  const qps = Number(/Queries per second:\s+([\d.]+)/.exec(stdout)?.[1] ?? NaN)
  const lost = Number(/Queries lost:\s+(\d+)/.exec(stdout)?.[1] ?? NaN)
  const done = Number(/Queries completed:\s+(\d+)/.exec(stdout)?.[1] ?? NaN)
  const pct = (p: number) => lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))] ?? NaN
  return {
    label,
    qps,
    p50us: pct(50),
    p99us: pct(99),
    lost,
    clientCpu: clientMs / wallMs,
    clientBusiestThread: busiest,
    clientBusiestOnCpu: busiestOnCpu,
    clientUsPerQuery: (clientMs * 1000) / done,
    serverUsPerQuery: ((c1 - c0) * 1000) / done,
  }
}

export type DnsServer = 'fast' | 'responder' | 'dnsmasq'
export const DNS_SERVERS: DnsServer[] = ['fast', 'responder', 'dnsmasq']

/** Per dnsperf setting, each server's runs. */
export interface DnsBench {
  runs: number
  byClient: {client: DnsClient; rows: Record<DnsServer, DnsBenchRow[]>}[]
  /** Each target's capacity searches with kxdpgun, one a run (absent: kxdpgun is not installed). */
  kxdpgun?: Record<KxTarget, KxRow[]>
  /** Why there are no kxdpgun figures though it is installed (the shim did not build, the device refused...). */
  kxdpgunError?: string
}

/**
 * What kxdpgun asks, and whom. It cannot add an EDNS option (its questions are plain or carry a
 * bare OPT, which the fast path answers both), so the responder alone is asked for a service
 * whose name is 63 letters long: 65 bytes on the wire, more than the fast path holds
 * (SN_DNS_NAME_MAX 64), so it passes the question on by rule, and the responder answers it from
 * the same table as `web`. dnsmasq is asked both names, each ratio taken on the same name.
 */
export type KxTarget = 'fast' | 'responder' | 'dnsmasq' | 'dnsmasqLong'
export const KX_TARGETS: KxTarget[] = ['fast', 'responder', 'dnsmasq', 'dnsmasqLong']
/** The long name: a valid service name (63 characters), longer on the wire than the fast path's keys. */
export const LONG_NAME = 'a-name-longer-than-the-fast-path-holds-' + 'x'.repeat(24)
/** The answers' DNS sizes: header, question, one A record by a pointer to the question's name. */
const ANSWER_SIZE = (name: string) => 12 + (name.length + 2 + 4) + 16
const KX_SECONDS = 2

export interface KxRow {
  label: string
  /** The most answers per second in a step of the search (NaN: the run failed or answered wrong). */
  qps: number
  /** The rate offered in that step. */
  offered: number
  end: Capacity['end'] | 'error'
  steps: number
  /** Per step: offered / answered per second, for the printout. */
  trail: string
  /** The serving process's CPU time per answer in the best step, us (NaN: the fast path). */
  serverUsPerQuery: number
  error?: string
}

export async function benchDns(opts: {runs?: number} = {}): Promise<DnsBench> {
  const runs = opts.runs ?? DEFAULT_RUNS
  const tmp = mkdtempSync(join(tmpdir(), 'sn-dnsbench-'))
  let dnsmasq: ReturnType<typeof spawn> | undefined
  cli(['lab', 'up', '--nodes', '1'])
  try {
    cli(['network', 'create', 'front'])
    cli(['service', 'create', '--name', 'web', '--replicas', '1', '--network', 'front'])
    cli(['service', 'create', '--name', LONG_NAME, '--replicas', '1', '--network', 'front'])
    cli(['service', 'create', '--name', 'cl', '--replicas', '1', '--network', 'front', '--', 'sleep', 'infinity'])
    let netns = ''
    for (let i = 0; i < 150 && !netns; i++) {
      const t = JSON.parse(cli(['service', 'ps', 'cl', '--json'])) as {state: string; netns?: string}[]
      if (t[0]?.state === 'running' && t[0].netns) netns = t[0].netns
      else await new Promise((r) => setTimeout(r, 200))
    }
    if (!netns) throw new Error('the client task did not start')
    const vip = (JSON.parse(cli(['service', 'inspect', 'web', '--json'])) as {vips: {ip: string}[]}).vips[0]!.ip
    const longVip = (JSON.parse(cli(['service', 'inspect', LONG_NAME, '--json'])) as {vips: {ip: string}[]}).vips[0]!.ip
    const queries = join(tmp, 'queries')
    writeFileSync(queries, 'web A\n')
    const longQueries = join(tmp, 'queries-long')
    writeFileSync(longQueries, `${LONG_NAME} A\n`)
    const hosts = join(tmp, 'hosts')
    writeFileSync(hosts, `${vip} web\n${longVip} ${LONG_NAME}\n`)
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
    const perfOut = join(tmp, 'dnsperf.out')
    const out: DnsBench = {runs, byClient: []}
    for (const client of DNS_CLIENTS) {
      const c = clientLabel(client)
      const ask: Record<DnsServer, () => DnsBenchRow> = {
        fast: () =>
          dnsperf(
            `eBPF fast path (tc on the task gateway veth), plain A question, :53, ${c}`,
            netns,
            queries,
            53,
            [],
            client,
            perfOut,
          ),
        responder: () =>
          dnsperf(
            `TypeScript responder (one thread, UDP GSO), A with an EDNS option the fast path passes (65001), :53, ${c}`,
            netns,
            queries,
            53,
            ['-E', '65001:00'],
            client,
            perfOut,
            agent,
          ),
        dnsmasq: () =>
          dnsperf(
            `dnsmasq 2.90 from a hosts file, plain A question, :5353 in the node namespace, ${c}`,
            netns,
            queries,
            5353,
            [],
            client,
            perfOut,
            dnsmasqPid,
          ),
      }
      const rows: Record<DnsServer, DnsBenchRow[]> = {fast: [], responder: [], dnsmasq: []}
      for (let i = 0; i < runs; i++) for (const k of DNS_SERVERS) rows[k].push(ask[k]())
      out.byClient.push({client, rows})
    }
    if (spawnSync('kxdpgun', ['-V']).status === 0) {
      // Half what dnsperf got from each at its fastest setting: the search climbs from below capacity.
      const start = (k: DnsServer) => 0.5 * Math.max(...out.byClient.map((c) => spread(c.rows[k].map((x) => x.qps)).median))
      // A kxdpgun that cannot run leaves dnsperf's figures standing (and its ratios in --json).
      try {
        out.kxdpgun = benchKxdpgun({
          netns,
          tmp,
          queries,
          longQueries,
          pids: {agent, dnsmasq: dnsmasqPid},
          runs,
          start: {fast: start('fast'), responder: start('responder'), dnsmasq: start('dnsmasq'), dnsmasqLong: start('dnsmasq')},
        })
      } catch (e) {
        out.kxdpgunError = e instanceof Error ? e.message : String(e)
      }
    }
    return out
  } finally {
    dnsmasq?.kill('SIGKILL')
    spawnSync(process.execPath, [BIN, 'lab', 'down'], {encoding: 'utf8'})
    rmSync(tmp, {recursive: true, force: true})
  }
}

/**
 * kxdpgun from the client task: each target's capacity (capacity()), the targets in a rotated
 * order each run so that drift hits all alike. It goes after every dnsperf row: its XDP program
 * replaces the task device's own (sn_xdp_task_peer, a pass that only turns the veth's NAPI on,
 * for frames the underlay redirects into it, which no DNS answer is), and the generic program
 * stays on the device until the lab goes.
 */
function benchKxdpgun(o: {
  netns: string
  tmp: string
  queries: string
  longQueries: string
  pids: {agent: number; dnsmasq: number}
  runs: number
  start: Record<KxTarget, number>
}): Record<KxTarget, KxRow[]> {
  const shim = buildSkbModeShim(o.tmp)
  const inNs = (args: string[]) => {
    const r = spawnSync('nsenter', [`--net=/run/netns/${o.netns}`, '--', ...args], {encoding: 'utf8'})
    if (r.status !== 0) throw new Error(`${args.join(' ')}: ${r.stderr.trim()}`)
    return r.stdout
  }
  // The task's device toward its gateway (kxdpgun finds it from the route too), its native XDP
  // program off (generic and native cannot be on one device at once), and the gateway's MAC in the
  // neighbour table, where kxdpgun reads it.
  const dev = /\bdev (\S+)/.exec(inNs(['ip', 'route', 'get', '172.18.0.1']))?.[1]
  if (!dev) throw new Error('no route from the client task to 172.18.0.1')
  inNs(['ip', 'link', 'set', 'dev', dev, 'xdp', 'off'])
  inNs(['ping', '-c', '1', '-W', '1', '172.18.0.1'])
  const targets: Record<KxTarget, {label: string; queries: string; name: string; port: number; pid?: number}> = {
    fast: {label: 'eBPF fast path, `web A`, :53', queries: o.queries, name: 'web', port: 53},
    responder: {
      label: `TypeScript responder, \`<63-letter name> A\` (longer than the fast path holds: passed on), :53`,
      queries: o.longQueries,
      name: LONG_NAME,
      port: 53,
      pid: o.pids.agent,
    },
    dnsmasq: {label: 'dnsmasq, `web A`, :5353', queries: o.queries, name: 'web', port: 5353, pid: o.pids.dnsmasq},
    dnsmasqLong: {
      label: 'dnsmasq, `<63-letter name> A`, :5353',
      queries: o.longQueries,
      name: LONG_NAME,
      port: 5353,
      pid: o.pids.dnsmasq,
    },
  }
  const rows: Record<KxTarget, KxRow[]> = {fast: [], responder: [], dnsmasq: [], dnsmasqLong: []}
  for (let i = 0; i < o.runs; i++) {
    const order = [...KX_TARGETS.slice(i % KX_TARGETS.length), ...KX_TARGETS.slice(0, i % KX_TARGETS.length)]
    for (const k of order) {
      const t = targets[k]
      const cpu = new Map<KxdpgunReport, number>()
      const offered = new Map<KxdpgunReport, number>()
      try {
        const c = capacity((qps) => {
          const c0 = t.pid ? cpuMs(t.pid) : NaN
          const r = kxdpgun({
            netns: o.netns,
            queries: t.queries,
            target: '172.18.0.1',
            port: t.port,
            qps,
            seconds: KX_SECONDS,
            shim,
          })
          const c1 = t.pid ? cpuMs(t.pid) : NaN
          const wrong = wrongAnswers(r, ANSWER_SIZE(t.name))
          if (wrong) throw new Error(wrong)
          cpu.set(r, ((c1 - c0) * 1000) / r.replies)
          offered.set(r, qps)
          return r
        }, o.start[k])
        rows[k].push({
          label: t.label,
          qps: c.best.repliesPps,
          offered: offered.get(c.best)!,
          end: c.end,
          steps: c.steps.length,
          trail: c.steps.map((s) => `${(offered.get(s)! / 1000).toFixed(0)}k:${(s.repliesPps / 1000).toFixed(0)}k`).join(' '),
          serverUsPerQuery: cpu.get(c.best)!,
        })
      } catch (e) {
        const error = e instanceof Error ? e.message : String(e)
        rows[k].push({label: t.label, qps: NaN, offered: NaN, end: 'error', steps: 0, trail: '', serverUsPerQuery: NaN, error})
      }
    }
  }
  return rows
}

export function clientLabel(c: DnsClient): string {
  return `${c.threads} dnsperf thread${c.threads > 1 ? 's' : ''}, ${c.sockets} socket${c.sockets > 1 ? 's' : ''}`
}

/** A dnsperf thread on a CPU or waiting for one this share of the time or more: the client is what limits. */
const CLIENT_BOUND = 0.9

export function formatDns(b: DnsBench): string {
  const lines = [
    `${b.runs} runs of ${SECONDS} s per server, servers alternating, at most ${OUTSTANDING} questions outstanding; median (min-max)`,
  ]
  const med = (r: DnsBenchRow[], f: (x: DnsBenchRow) => number) => spread(r.map(f)).median
  const f0 = (x: number) => x.toFixed(0)
  const f2 = (x: number) => x.toFixed(2)
  for (const {client, rows} of b.byClient) {
    for (const k of DNS_SERVERS) {
      const r = rows[k]
      lines.push(
        `${(r[0]?.label ?? k).padEnd(100)} ${fmtSpread(spread(r.map((x) => x.qps)), f0)} q/s   p50 ${f0(med(r, (x) => x.p50us))} us   p99 ${fmtSpread(spread(r.map((x) => x.p99us)), f0)} us   lost ${r.reduce((a, x) => a + x.lost, 0)}   dnsperf CPU ${(100 * med(r, (x) => x.clientCpu)).toFixed(0)}% (busiest thread busy ${(100 * med(r, (x) => x.clientBusiestThread)).toFixed(0)}%, on a CPU ${(100 * med(r, (x) => x.clientBusiestOnCpu)).toFixed(0)}%), ${f2(med(r, (x) => x.clientUsPerQuery))} us/query` +
          (k === 'fast' ? '' : `   server CPU ${fmtSpread(spread(r.map((x) => x.serverUsPerQuery)), f2)} us/query`),
      )
    }
    const q = (k: DnsServer) => med(rows[k], (x) => x.qps)
    const bound = DNS_SERVERS.filter((k) => med(rows[k], (x) => x.clientBusiestThread) >= CLIENT_BOUND)
    lines.push(
      `  ${clientLabel(client)}: fast path / dnsmasq ${f2(q('fast') / q('dnsmasq'))}, responder / dnsmasq ${f2(q('responder') / q('dnsmasq'))}; ` +
        (bound.length
          ? `the client is what limits (a dnsperf thread on a CPU or waiting for one >= ${100 * CLIENT_BOUND}% of the time) for: ${bound.join(', ')}`
          : `the client is not what limits (no dnsperf thread busy ${100 * CLIENT_BOUND}% of the time)`),
    )
  }
  // Each server at the setting it answered most under (the same settings were offered to all).
  const best = (k: DnsServer) => {
    let top = {qps: -1, at: ''}
    for (const {client, rows} of b.byClient) {
      const v = med(rows[k], (x) => x.qps)
      if (v > top.qps) top = {qps: v, at: clientLabel(client)}
    }
    return top
  }
  const [bf, br, bd] = DNS_SERVERS.map(best) as [ReturnType<typeof best>, ReturnType<typeof best>, ReturnType<typeof best>]
  lines.push(
    `dnsperf, each at its fastest setting: fast path ${f0(bf.qps)} (${bf.at}), responder ${f0(br.qps)} (${br.at}), dnsmasq ${f0(bd.qps)} (${bd.at}): ` +
      `fast path / dnsmasq ${f2(bf.qps / bd.qps)}, responder / dnsmasq ${f2(br.qps / bd.qps)}`,
  )
  if (b.kxdpgun) lines.push(...formatKxdpgun(b.kxdpgun, b.runs))
  else if (b.kxdpgunError) lines.push(`kxdpgun: failed, no AF_XDP figures: ${b.kxdpgunError}`)
  else lines.push('kxdpgun: not installed (knot-dnsutils): no AF_XDP figures')
  return lines.join('\n')
}

/** kxdpgun's ratios: fast path over dnsmasq on `web`, responder over dnsmasq on the long name. */
export function kxdpgunRatios(k: Record<KxTarget, KxRow[]>): {fast: number; responder: number} {
  const q = (t: KxTarget) => spread(k[t].map((x) => x.qps)).median
  return {fast: q('fast') / q('dnsmasq'), responder: q('responder') / q('dnsmasqLong')}
}

function formatKxdpgun(k: Record<KxTarget, KxRow[]>, runs: number): string[] {
  const f0 = (x: number) => x.toFixed(0)
  const f2 = (x: number) => x.toFixed(2)
  const lines = [
    '',
    `kxdpgun (AF_XDP, generic XDP on the client task's device, one thread on CPU 0, batches of 10), ${runs} runs, the targets in a rotated order each run; ` +
      `each run a search: ${KX_SECONDS} s steps from half dnsperf's best figure up by x1.25 (at most 14; ends steps: never lost) until fewer than 95% are answered (end: server) or kxdpgun cannot send the rate (end: client); the most answered per second in a step`,
  ]
  for (const t of KX_TARGETS) {
    const r = k[t]
    const ends = r.map((x) => x.end).join(',')
    lines.push(
      `${(r[0]?.label ?? t).padEnd(100)} ${fmtSpread(spread(r.map((x) => x.qps)), f0)} answered/s   ends ${ends}` +
        (t === 'fast' ? '' : `   server CPU ${fmtSpread(spread(r.map((x) => x.serverUsPerQuery)), f2)} us/answer`),
    )
    for (const [i, x] of r.entries()) lines.push(`    run ${i + 1}: ${x.error ? `failed: ${x.error}` : x.trail}`)
  }
  const ratios = kxdpgunRatios(k)
  const perRun = (a: KxTarget, b: KxTarget) => k[a].map((x, i) => f2(x.qps / k[b][i]!.qps)).join(' / ')
  lines.push(
    `  kxdpgun: fast path / dnsmasq ${f2(ratios.fast)} (per run ${perRun('fast', 'dnsmasq')}), responder / dnsmasq (long name) ${f2(ratios.responder)} (per run ${perRun('responder', 'dnsmasqLong')}): the ratios of --json`,
  )
  return lines
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf('--runs')
  console.log(formatDns(await benchDns(i >= 0 ? {runs: Number(process.argv[i + 1])} : {})))
}
