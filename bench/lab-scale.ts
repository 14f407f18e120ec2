/**
 * The lab at size (issue 24): 1,000 tasks (`sleep` commands) on a 3-node lab, created, listed
 * and removed through the CLI as a user would, while every node's `node ls` is watched for a
 * node that is not ready and every agent's SWIM suspicion count is compared before and after.
 *
 *   node --import tsx bench/lab-scale.ts [--tasks 1000] [--services 10] [--cpu-prof DIR]
 *
 * Figures: seconds from the first create until every task runs; `service ls` and `service ps`
 * at that size (median of 5, CLI start included, as a user waits for them); the agents' event
 * loop max delay (their own metric) over the run; suspicions raised and non-ready sightings in
 * `node ls` (the goal is 0 of both); seconds until every task's process is gone after the
 * removes. It brings up its own lab (refusing if one is up) and always takes it down.
 *
 * Per node: the loop's max and worst p99, and whom its agent suspected (its log's membership
 * lines); the machine's load average at the start and the end. --cpu-prof DIR: every agent
 * profiles its main thread (SWARMNET_AGENT_CPU_PROF, src/agent/cpu-profile.ts), is stopped with
 * SIGTERM before the lab goes down so it writes DIR/<node>.cpuprofile, and what held each loop
 * for 20 ms or more is printed (bench/cpuprofile-top.ts).
 */
import {existsSync, readFileSync} from 'node:fs'
import {join, resolve} from 'node:path'
import {pathToFileURL} from 'node:url'
import {CPU_PROF_ENV} from '../src/agent/cpu-profile.js'
import {agentLogPath, pidPath} from '../src/sys/node-paths.js'
import {readLabState} from '../src/lab/state.js'
import {execIn, listNetns} from '../src/sys/netns.js'
import {parseExposition} from '../src/metrics/parse.js'
import {cli as labCli, labDown, sleep} from './lab-bench.js'
import {formatHolders, loopHolders, type CpuProfileJson} from './cpuprofile-top.js'

const NODES = ['n1', 'n2', 'n3']
const NETWORK = 'snscale'
/** A duration no test or user task uses, so the processes are ours to count. */
const SLEEP = '86399'

export interface LabScaleFigures {
  tasks: number
  services: number
  createSeconds: number
  allRunningSeconds: number | null
  serviceLsMs: number
  servicePsMs: number
  /** SWIM suspicions raised on any agent during the run (membership.stats.suspicions deltas). */
  suspicions: number
  /** `node ls` answers (every node asked, about every second) that showed a node not ready. */
  notReadySightings: number
  /** The agents' event loop delay over the run: the max of each scrape's max, and the worst p99. */
  eventLoopMaxMs: number
  eventLoopP99Ms: number
  removeSeconds: number | null
  /** Per node: the loop's max and worst p99 over the run, and its longest garbage collection pause (ms). */
  loop: Record<string, {maxMs: number; p99Ms: number; gcMaxMs: number}>
  /** "n1 -> n2": how often n1's agent marked n2's agent suspect during the run (its log). */
  suspected: Record<string, number>
  /** /proc/loadavg's 1, 5 and 15 minute averages when the lab was up, and at the end. */
  loadStart: string
  loadEnd: string
  /**
   * Per node: the loop's stalls of 50 ms or more over the run (src/metrics/loop-stalls.ts; the
   * sums of each scrape's window), in ms: how many, how late in all, and that wall time split
   * into the main thread on a CPU, waiting for one, and off CPU; and the longest few the agent
   * logged (200 ms or more), as its log line says them.
   */
  stalls: Record<string, {count: number; delayMs: number; ranMs: number; waitedMs: number; offCpuMs: number; longest: string[]}>
  /** Processes forked on the whole machine during the run (/proc/stat), and CLI runs of this bench. */
  forks: number
  cliRuns: number
  /**
   * CPU seconds over the run (from the start of the creates to the removes' end), from /proc:
   * each agent (all its threads), its spawner, the commands its spawner ran (ip, runc, ...: the
   * spawner's reaped children), this bench's CLI runs (its reaped children), and the machine's
   * busy time (both cores) with its user/system/softirq shares.
   */
  cpu: {
    agents: Record<string, {agent: number; spawner: number; commands: number}>
    benchCli: number
    machineBusy: number
    machineWall: number
  }
  /** --cpu-prof: each node's profile and what held its loop. */
  profiles: Record<string, string[]>
  notes: string[]
}

interface NodeJson {
  name: string
  state: string
}
interface ServiceJson {
  name: string
  running: number
  desired: number
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN

/** The agent's event loop delay since its previous scrape (max, p99), in ms. */
async function loopDelay(node: string): Promise<{
  max: number
  p99: number
  gcMax: number
  stalls: {count: number; delayMs: number; ranMs: number; waitedMs: number; offCpuMs: number}
}> {
  const text = await execIn(`sn-lab-${node}`, ['curl', '-sf', '-m', '5', 'http://127.0.0.1:9323/metrics'], `metrics of ${node}`)
  const m = parseExposition(text)
  const get = (stat: string) =>
    (m.samples.find((s) => s.name === 'swarmnet_event_loop_delay_seconds' && s.labels.stat === stat)?.value ?? 0) * 1000
  const gc = (m.samples.find((s) => s.name === 'swarmnet_gc_pause_seconds' && s.labels.stat === 'max')?.value ?? 0) * 1000
  const stall = (part: string) =>
    (m.samples.find((s) => s.name === 'swarmnet_event_loop_stall_seconds' && s.labels.stall === 'all' && s.labels.part === part)
      ?.value ?? 0) * 1000
  const count = m.samples.find((s) => s.name === 'swarmnet_event_loop_stalls')?.value ?? 0
  return {
    max: get('max'),
    p99: get('p99'),
    gcMax: gc,
    stalls: {count, delayMs: stall('delay'), ranMs: stall('ran'), waitedMs: stall('waited'), offCpuMs: stall('off_cpu')},
  }
}

const TICK = 100 // USER_HZ
/** /proc/PID/stat's utime + stime (the process, all threads) and cutime + cstime (its reaped children), in s. */
function procCpu(pid: number | string): {own: number; children: number} {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    // fields 14-17 of stat; f[0] is field 3
    const n = (i: number) => Number(f[i - 3])
    return {own: (n(14) + n(15)) / TICK, children: (n(16) + n(17)) / TICK}
  } catch {
    return {own: NaN, children: NaN}
  }
}

/** The machine's busy and whole CPU time since boot, over all cores, in s. */
function machineCpu(): {busy: number; all: number} {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number)
  const all = f.slice(0, 8).reduce((a, x) => a + x, 0)
  const idle = f[3]! + f[4]!
  return {busy: (all - idle) / TICK, all: all / TICK}
}

/** Each lab agent's own CPU, its spawner's, and its spawner's reaped children's (s), now. */
function agentsCpu(): Record<string, {agent: number; spawner: number; commands: number}> {
  const out: Record<string, {agent: number; spawner: number; commands: number}> = {}
  for (const n of NODES) {
    try {
      const pid = readFileSync(pidPath(n), 'utf8').trim()
      const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)
      const spawner = kids.find((k) => {
        try {
          return readFileSync(`/proc/${k}/cmdline`, 'utf8').includes('spawner-child')
        } catch {
          return false
        }
      })
      const s = spawner ? procCpu(spawner) : {own: NaN, children: NaN}
      out[n] = {agent: procCpu(pid).own, spawner: s.own, commands: s.children}
    } catch {
      out[n] = {agent: NaN, spawner: NaN, commands: NaN}
    }
  }
  return out
}

/** Processes forked since boot, machine-wide. */
const forksSinceBoot = () => Number(/^processes (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'))?.[1] ?? NaN)

/** The longest `loop: stall N ms: ...` lines of `node`'s agent log since `since`, longest first. */
function longestStalls(node: string, since: number, keep: number): string[] {
  let text = ''
  try {
    text = readFileSync(agentLogPath(node), 'utf8')
  } catch {
    return []
  }
  const found: {ms: number; line: string}[] = []
  for (const line of text.split('\n')) {
    const m = /^(\S+) (loop: stall (\d+) ms: .*)$/.exec(line)
    if (m && Date.parse(m[1]!) >= since) found.push({ms: Number(m[3]), line: m[2]!.slice('loop: stall '.length)})
  }
  return found
    .sort((a, b) => b.ms - a.ms)
    .slice(0, keep)
    .map((f) => f.line)
}

const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')

/** "A -> B" for every `membership: agent of node B ... -> suspect` line A's agent logged since `since`. */
function suspectedIn(node: string, since: number, into: Record<string, number>): void {
  let text = ''
  try {
    text = readFileSync(agentLogPath(node), 'utf8')
  } catch {
    return
  }
  for (const line of text.split('\n')) {
    const m = /^(\S+) membership: agent of node (\S+) \S+ -> suspect$/.exec(line)
    if (!m || Date.parse(m[1]!) < since) continue
    const k = `${node} -> ${m[2]}`
    into[k] = (into[k] ?? 0) + 1
  }
}

/** SIGTERM to every agent, which then writes its profile; waits for the files (up to 60 s). */
async function collectProfiles(dir: string, out: LabScaleFigures, log: (s: string) => void): Promise<void> {
  for (const n of NODES) {
    try {
      process.kill(Number(readFileSync(pidPath(n), 'utf8').trim()), 'SIGTERM')
    } catch (e) {
      out.notes.push(`stopping the agent of ${n} for its profile: ${(e as Error).message}`)
    }
  }
  const deadline = Date.now() + 60_000
  for (const n of NODES) {
    const file = join(dir, `${n}.cpuprofile`)
    // Written in one go, then the agent exits and removes its pid file.
    while (Date.now() < deadline && (!existsSync(file) || existsSync(pidPath(n)))) await sleep(200)
    if (!existsSync(file)) {
      out.notes.push(`no profile from ${n} in ${dir}`)
      continue
    }
    log(`profile of ${n}: ${file}`)
    out.profiles[n] = formatHolders(loopHolders(JSON.parse(readFileSync(file, 'utf8')) as CpuProfileJson, 20, 15))
  }
}

export async function benchLabScale(
  opts: {tasks?: number; services?: number; cpuProf?: string; log?: (s: string) => void} = {},
): Promise<LabScaleFigures> {
  const tasks = opts.tasks ?? 1000
  const services = opts.services ?? 10
  const log = opts.log ?? ((s: string) => console.error(`[bench lab-scale] ${s}`))
  if (tasks % services !== 0) throw new Error(`--tasks ${tasks} is not a multiple of --services ${services}`)
  if (listNetns('sn-lab-').length > 0 || readLabState()) throw new Error('a lab is up: not ours, not touching it')
  const out: LabScaleFigures = {
    tasks,
    services,
    createSeconds: NaN,
    allRunningSeconds: null,
    serviceLsMs: NaN,
    servicePsMs: NaN,
    suspicions: 0,
    notReadySightings: 0,
    eventLoopMaxMs: 0,
    eventLoopP99Ms: 0,
    removeSeconds: null,
    loop: Object.fromEntries(NODES.map((n) => [n, {maxMs: 0, p99Ms: 0, gcMaxMs: 0}])),
    suspected: {},
    loadStart: '',
    loadEnd: '',
    stalls: Object.fromEntries(
      NODES.map((n) => [n, {count: 0, delayMs: 0, ranMs: 0, waitedMs: 0, offCpuMs: 0, longest: [] as string[]}]),
    ),
    forks: 0,
    cliRuns: 0,
    cpu: {agents: {}, benchCli: 0, machineBusy: 0, machineWall: 0},
    profiles: {},
    notes: [],
  }
  const cli = (args: string[], host?: string, timeoutMs?: number) => {
    out.cliRuns++
    return labCli(args, host, timeoutMs)
  }
  const suspicions = async (node: string): Promise<number> => {
    const info = JSON.parse(await cli(['info', '--json'], node)) as {membership?: {suspicions?: number}}
    return info.membership?.suspicions ?? 0
  }
  // The agents inherit it: bench -> lab up -> init/join -> agent.
  if (opts.cpuProf) process.env[CPU_PROF_ENV] = opts.cpuProf
  let watching = false
  let watcher: Promise<void> | undefined
  try {
    log(`lab up (${NODES.length} nodes)`)
    await cli(['lab', 'up', '--nodes', String(NODES.length)], undefined, 300_000)
    await cli(['network', 'create', NETWORK, '--subnet', '10.96.0.0/20'], 'n1')
    const before = await Promise.all(NODES.map(suspicions))
    out.loadStart = loadavg()
    const forks0 = forksSinceBoot()
    const cpu0 = {agents: agentsCpu(), bench: procCpu('self').children, machine: machineCpu()}
    const since = Date.now()
    for (const n of NODES) await loopDelay(n) // starts each agent's window
    // Watch every node's view of the others, and the agents' loops, for the whole run.
    watching = true
    watcher = (async () => {
      while (watching) {
        for (const n of NODES) {
          try {
            const nodes = JSON.parse(await cli(['node', 'ls', '--json'], n)) as NodeJson[]
            const bad = nodes.filter((x) => x.state !== 'ready')
            if (bad.length > 0) {
              out.notReadySightings++
              out.notes.push(`node ls on ${n}: ${bad.map((b) => `${b.name} ${b.state}`).join(', ')}`)
            }
            const d = await loopDelay(n)
            out.eventLoopMaxMs = Math.max(out.eventLoopMaxMs, d.max)
            out.eventLoopP99Ms = Math.max(out.eventLoopP99Ms, d.p99)
            const l = out.loop[n]!
            l.maxMs = Math.max(l.maxMs, d.max)
            l.p99Ms = Math.max(l.p99Ms, d.p99)
            l.gcMaxMs = Math.max(l.gcMaxMs, d.gcMax)
            const st = out.stalls[n]!
            st.count += d.stalls.count
            st.delayMs += d.stalls.delayMs
            st.ranMs += d.stalls.ranMs
            st.waitedMs += d.stalls.waitedMs
            st.offCpuMs += d.stalls.offCpuMs
          } catch (e) {
            out.notes.push(`watching ${n}: ${(e as Error).message}`)
          }
        }
        await sleep(1000)
      }
    })()
    const per = tasks / services
    log(`creating ${services} services of ${per} replicas`)
    const t0 = Date.now()
    for (let i = 0; i < services; i++) {
      await cli(
        ['service', 'create', '--name', `scale${i}`, '--replicas', String(per), '--network', NETWORK, '--', 'sleep', SLEEP],
        'n1',
      )
    }
    out.createSeconds = (Date.now() - t0) / 1000
    const deadline = t0 + 600_000
    let running = 0
    while (Date.now() < deadline) {
      const ls = JSON.parse(await cli(['service', 'ls', '--json'], 'n1')) as ServiceJson[]
      running = ls.filter((s) => s.name.startsWith('scale')).reduce((a, s) => a + s.running, 0)
      if (running >= tasks) break
      await sleep(1000)
    }
    if (running >= tasks) out.allRunningSeconds = (Date.now() - t0) / 1000
    else out.notes.push(`after 600 s ${running} of ${tasks} tasks ran`)
    log(`${running} of ${tasks} running after ${((Date.now() - t0) / 1000).toFixed(1)} s`)
    const lsTimes: number[] = []
    const psTimes: number[] = []
    for (let i = 0; i < 5; i++) {
      let t = Date.now()
      await cli(['service', 'ls'], 'n1')
      lsTimes.push(Date.now() - t)
      t = Date.now()
      await cli(['service', 'ps', `scale${i % services}`], 'n1')
      psTimes.push(Date.now() - t)
    }
    out.serviceLsMs = median(lsTimes)
    out.servicePsMs = median(psTimes)
    log('removing')
    const r0 = Date.now()
    for (let i = 0; i < services; i++) await cli(['service', 'rm', `scale${i}`], 'n1')
    while (Date.now() < r0 + 600_000) {
      const left = await countSleepers()
      if (left === 0) {
        out.removeSeconds = (Date.now() - r0) / 1000
        break
      }
      await sleep(1000)
    }
    if (out.removeSeconds === null) out.notes.push(`after 600 s ${await countSleepers()} task processes were left`)
    watching = false
    await watcher
    const after = await Promise.all(NODES.map(suspicions))
    out.suspicions = after.reduce((a, x, i) => a + Math.max(0, x - before[i]!), 0)
    out.loadEnd = loadavg()
    out.forks = forksSinceBoot() - forks0
    const cpu1 = {agents: agentsCpu(), bench: procCpu('self').children, machine: machineCpu()}
    for (const n of NODES) {
      const a = cpu0.agents[n]!
      const b = cpu1.agents[n]!
      out.cpu.agents[n] = {agent: b.agent - a.agent, spawner: b.spawner - a.spawner, commands: b.commands - a.commands}
    }
    out.cpu.benchCli = cpu1.bench - cpu0.bench
    out.cpu.machineBusy = cpu1.machine.busy - cpu0.machine.busy
    out.cpu.machineWall = cpu1.machine.all - cpu0.machine.all
    for (const n of NODES) suspectedIn(n, since, out.suspected)
    for (const n of NODES) out.stalls[n]!.longest = longestStalls(n, since, 5)
    if (opts.cpuProf) await collectProfiles(opts.cpuProf, out, log)
  } finally {
    watching = false
    await watcher?.catch(() => undefined)
    await labDown(log)
  }
  return out
}

/** Processes running `sleep SLEEP` on this host (every lab node's tasks are here). */
async function countSleepers(): Promise<number> {
  const {readdirSync, readFileSync} = await import('node:fs')
  let n = 0
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
      if (argv[0]?.endsWith('sleep') && argv[1] === SLEEP) n++
    } catch {
      // gone meanwhile
    }
  }
  return n
}

export function formatLabScale(f: LabScaleFigures): string[] {
  const s = (x: number | null, unit: string) => (x === null || Number.isNaN(x) ? 'not reached' : `${x.toFixed(1)} ${unit}`)
  return [
    `${f.tasks} tasks (${f.services} services x ${f.tasks / f.services}) on ${NODES.length} nodes:`,
    `  creates answered in ${s(f.createSeconds, 's')}; every task running ${s(f.allRunningSeconds, 's')} after the first create (goal <= 120 s)`,
    `  service ls ${f.serviceLsMs.toFixed(0)} ms, service ps ${f.servicePsMs.toFixed(0)} ms (median of 5, CLI start included)`,
    `  suspicions raised ${f.suspicions}, node ls answers with a node not ready ${f.notReadySightings} (goal 0 and 0)`,
    `  agents' event loop: max ${f.eventLoopMaxMs.toFixed(1)} ms, worst p99 ${f.eventLoopP99Ms.toFixed(1)} ms (per scrape, about 1 s)`,
    `  per node: ${Object.entries(f.loop)
      .map(([n, l]) => `${n} max ${l.maxMs.toFixed(0)} ms p99 ${l.p99Ms.toFixed(0)} ms gc max ${l.gcMaxMs.toFixed(0)} ms`)
      .join('; ')}`,
    `  suspected (observer -> agent: times): ${
      Object.entries(f.suspected)
        .map(([k, n]) => `${k}: ${n}`)
        .join(', ') || 'none'
    }`,
    `  loop stalls >= 50 ms (count, late in all; the stalls' wall time: main thread ran / waited for a CPU / off CPU):`,
    ...Object.entries(f.stalls).map(
      ([n, st]) =>
        `    ${n}: ${st.count}, ${(st.delayMs / 1000).toFixed(1)} s; ran ${(st.ranMs / 1000).toFixed(1)} s, waited ${(st.waitedMs / 1000).toFixed(1)} s, off CPU ${(st.offCpuMs / 1000).toFixed(1)} s; longest: ${st.longest.slice(0, 3).join(' | ') || 'none logged'}`,
    ),
    `  CPU over the run (s): machine busy ${f.cpu.machineBusy.toFixed(0)} of ${f.cpu.machineWall.toFixed(0)}; this bench's CLI runs ${f.cpu.benchCli.toFixed(1)}; ${Object.entries(
      f.cpu.agents,
    )
      .map(([n, c]) => `${n} agent ${c.agent.toFixed(1)} spawner ${c.spawner.toFixed(1)} its commands ${c.commands.toFixed(1)}`)
      .join('; ')}`,
    `  load average (1 5 15 min) at the start ${f.loadStart}, at the end ${f.loadEnd}; processes forked on the machine meanwhile ${f.forks}, of them this bench's CLI runs ${f.cliRuns}`,
    `  every task process gone ${s(f.removeSeconds, 's')} after the first remove`,
    ...f.notes.slice(0, 10).map((n) => `  note: ${n}`),
    ...Object.entries(f.profiles).flatMap(([n, lines]) => [`  what held ${n}'s loop:`, ...lines.map((l) => `    ${l}`)]),
  ]
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const str = (flag: string) => {
    const i = process.argv.indexOf(flag)
    return i >= 0 ? process.argv[i + 1] : undefined
  }
  const arg = (flag: string) => {
    const v = str(flag)
    return v === undefined ? undefined : Number(v)
  }
  const cpuProf = str('--cpu-prof') && resolve(str('--cpu-prof')!)
  const f = await benchLabScale({tasks: arg('--tasks'), services: arg('--services'), ...(cpuProf ? {cpuProf} : {})})
  for (const line of formatLabScale(f)) console.log(line)
  console.log(JSON.stringify(f))
}
