/**
 * What a task device costs: task to task through tc_task (the real program, its maps filled as
 * the agent fills them for two local tasks on one network), one device kind against another,
 * beside two namespaces on one bare veth (no program, no node between: the limit here).
 *
 *   flock /tmp/sn-lab.lock node --import tsx bench/task-device.ts [--seconds 5] [--runs 5] [--variants bare,veth,...]
 *
 * Variants (test/bpf/task-device-child.ts builds each in namespaces of its own, snk-<v>-{n,a,b}):
 *   bare       one veth between the two task namespaces
 *   veth       the agent's task devices: veth, tc_task on the host side's TCX ingress,
 *              xdp_task_peer + GRO on the task side; local delivery is bpf_redirect_peer,
 *              straight into the other task's side
 *   veth-redirect  the same, tc_task built with bpf_redirect in place of bpf_redirect_peer (as
 *              it was before): the other task's host side transmits, its task side's NAPI
 *              (on for xdp_task_peer) takes the frame
 *   veth-q2    as veth, with 2 tx/rx queues on each end
 *   netkit     netkit pairs (L2), tc_task (the bpf_redirect build) as the task side's own
 *              transmit program (BPF_NETKIT_PEER); reported as unsupported where the kernel
 *              has no netkit
 *
 * For each: small UDP (iperf3 -u -l 64 -b 0, packets/s received) and one TCP stream (Gb/s).
 * The variants alternate within each run (order rotated) so drift on a shared machine hits all
 * alike; the figure is the median of the runs, with min-max. Everything it makes is removed.
 */
import {execFileSync, spawn, type ChildProcess} from 'node:child_process'
import {readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join, relative} from 'node:path'
import {fileURLToPath} from 'node:url'
import {netnsExists, netnsPath} from '../src/sys/netns.js'
import {compileBpf} from '../test/fixtures/bpf/build.js'
import {DIST} from '../test/bpf/harness.js'
import {sleep} from './lab-bench.js'
import {tcpStream, udpSmall} from './throughput.js'

const HERE = dirname(fileURLToPath(import.meta.url))
const REPO = join(HERE, '..')
const ALL = ['bare', 'veth', 'veth-redirect', 'veth-q2', 'netkit'] as const
type Variant = (typeof ALL)[number]

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`)
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt
}
const seconds = Number(arg('seconds', '5'))
const runs = Number(arg('runs', '5'))
const variants = arg('variants', ALL.join(',')).split(',') as Variant[]
for (const v of variants) if (!ALL.includes(v)) throw new Error(`unknown variant ${v} (${ALL.join(', ')})`)

const nsOf = (v: Variant, role: 'n' | 'a' | 'b') => `snk-${v}-${role}`
const pinOf = (v: Variant) => `/sys/fs/bpf/snk-bench-${process.pid}-${v}`
const ipx = (args: string[]) => execFileSync('ip', args, {stdio: ['ignore', 'ignore', 'inherit']})
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}
const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')

/** tc_task with every bpf_redirect_peer a bpf_redirect, as it was before it delivered to the peer. */
function redirectObject(tmp: string): string {
  const src = join(tmp, 'tc_task_redirect.c')
  writeFileSync(
    src,
    [
      '#include <linux/bpf.h>',
      '#include <bpf/bpf_helpers.h>',
      '#define bpf_redirect_peer(ifindex, flags) bpf_redirect(ifindex, flags)',
      `#include "${join(REPO, 'bpf/tc_task.c')}"`,
      '',
    ].join('\n'),
  )
  return compileBpf(src, join(tmp, 'tc_task_redirect.o'))
}

function teardown(v: Variant): void {
  for (const r of ['a', 'b', 'n'] as const) {
    if (netnsExists(nsOf(v, r))) ipx(['netns', 'del', nsOf(v, r)])
  }
  rmSync(pinOf(v), {recursive: true, force: true})
}

/** Builds variant v; a reason when this kernel cannot. */
function build(v: Variant, redirectObj: string): string | undefined {
  teardown(v)
  ipx(['netns', 'add', nsOf(v, 'a')])
  ipx(['netns', 'add', nsOf(v, 'b')])
  if (v === 'bare') {
    ipx([
      '-n',
      nsOf(v, 'a'),
      'link',
      'add',
      'eth0',
      'mtu',
      '1450',
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'mtu',
      '1450',
      'netns',
      nsOf(v, 'b'),
    ])
    for (const [r, addr] of [
      ['a', '10.77.0.2/24'],
      ['b', '10.77.0.3/24'],
    ] as const) {
      ipx(['-n', nsOf(v, r), 'addr', 'add', addr, 'dev', 'eth0'])
      ipx(['-n', nsOf(v, r), 'link', 'set', 'dev', 'eth0', 'up'])
      ipx(['-n', nsOf(v, r), 'link', 'set', 'dev', 'lo', 'up'])
    }
    return undefined
  }
  ipx(['netns', 'add', nsOf(v, 'n')])
  // netkit runs the program in its transmit path, not at tc ingress, where bpf_redirect_peer
  // drops: there the other task's device is reached by bpf_redirect (its transmit delivers).
  const obj = v === 'veth-redirect' || v === 'netkit' ? relative(DIST, redirectObj) : 'tc_task.o'
  const out = execFileSync(
    'nsenter',
    [
      `--net=${netnsPath(nsOf(v, 'n'))}`,
      '--',
      process.execPath,
      '--import',
      'tsx',
      join(REPO, 'test/bpf/task-device-child.ts'),
      v,
      pinOf(v),
      nsOf(v, 'a'),
      nsOf(v, 'b'),
      obj,
    ],
    {cwd: REPO, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit']},
  )
  const r = JSON.parse(out.trim().split('\n').pop()!) as {ok?: true; unsupported?: string}
  return r.unsupported
}

function startServer(ns: string): ChildProcess {
  const child = spawn('nsenter', [`--net=${netnsPath(ns)}`, '--', 'iperf3', '-s'], {stdio: 'ignore'})
  child.on('error', () => undefined)
  return child
}

async function main(): Promise<void> {
  const tmp = join(tmpdir(), `snk-bench-${process.pid}`)
  execFileSync('mkdir', ['-p', tmp])
  const servers: ChildProcess[] = []
  const live: Variant[] = []
  const skipped: string[] = []
  const udp = new Map<Variant, number[]>()
  const tcp = new Map<Variant, number[]>()
  try {
    const redirectObj = variants.includes('veth-redirect') || variants.includes('netkit') ? redirectObject(tmp) : ''
    for (const v of variants) {
      const why = build(v, redirectObj)
      if (why) {
        skipped.push(`${v}: ${why}`)
        teardown(v)
        continue
      }
      live.push(v)
      servers.push(startServer(nsOf(v, 'b')))
      udp.set(v, [])
      tcp.set(v, [])
    }
    await sleep(1000)
    console.log(`load before: ${loadavg()}`)
    for (let i = 0; i < runs; i++) {
      const order = live.map((_v, k) => live[(k + i) % live.length]!)
      for (const v of order) {
        const u = await udpSmall(nsOf(v, 'a'), '10.77.0.3', seconds)
        const t = await tcpStream(nsOf(v, 'a'), '10.77.0.3', seconds)
        udp.get(v)!.push(u.pps)
        tcp.get(v)!.push(t.gbps)
        console.log(
          `run ${i + 1} ${v}: udp ${Math.round(u.pps)} pps (sent ${u.sent}, cpu c/s ${u.cpu.join('/')}%), tcp ${t.gbps.toFixed(2)} Gb/s (retr ${t.retransmits})`,
        )
      }
    }
    console.log(`load after: ${loadavg()}`)
    const base = live.includes('veth') ? 'veth' : live[0]!
    console.log(`\n| variant | UDP 64 B pps median (min-max) | vs ${base} | TCP Gb/s median (min-max) | vs ${base} |`)
    console.log('|---|---|---|---|---|')
    for (const v of live) {
      const us = udp.get(v)!
      const ts = tcp.get(v)!
      const [um, tm] = [median(us), median(ts)]
      console.log(
        `| ${v} | ${Math.round(um)} (${Math.round(Math.min(...us))}-${Math.round(Math.max(...us))}) | ${(um / median(udp.get(base)!)).toFixed(2)}x | ${tm.toFixed(2)} (${Math.min(...ts).toFixed(2)}-${Math.max(...ts).toFixed(2)}) | ${(tm / median(tcp.get(base)!)).toFixed(2)}x |`,
      )
    }
    for (const s of skipped) console.log(`not measured: ${s}`)
  } finally {
    for (const s of servers) s.kill('SIGTERM')
    await sleep(300)
    for (const v of variants) teardown(v)
    rmSync(tmp, {recursive: true, force: true})
  }
}

await main()
