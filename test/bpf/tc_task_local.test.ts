// Two tasks of one node on one network, through sn_tc_task attached as the agent attaches it
// (TCX ingress of each veth's host side, xdp_task_peer and GRO on the task side): ARP, ping
// and a TCP stream between them, with real namespaces and devices. Delivery is
// bpf_redirect_peer: straight into the other task's side, so the host side of the receiving
// task's veth transmits nothing of it (a plain bpf_redirect is counted there).
import assert from 'node:assert/strict'
import {execFileSync, spawn, type ChildProcess} from 'node:child_process'
import {rmSync} from 'node:fs'
import {join} from 'node:path'
import {after, before, test} from 'node:test'
import {addNetns, delNetns, execIn, netnsPath} from '../../src/sys/netns.js'
import {REPO, pinRootFor} from './harness.js'

const NODE = 'sn-bt-local-n'
const A = 'sn-bt-local-a'
const B = 'sn-bt-local-b'
const PINS = pinRootFor('local')
let server: ChildProcess | undefined

const txPackets = (dev: string) =>
  (
    JSON.parse(execFileSync('ip', ['-n', NODE, '-s', '-j', 'link', 'show', 'dev', dev], {encoding: 'utf8'}))[0] as {
      stats64: {tx: {packets: number}}
    }
  ).stats64.tx.packets

before(async () => {
  for (const ns of [NODE, A, B]) await delNetns(ns)
  for (const ns of [NODE, A, B]) await addNetns(ns)
  const out = execFileSync(
    'nsenter',
    [
      `--net=${netnsPath(NODE)}`,
      '--',
      process.execPath,
      '--import',
      'tsx',
      join(REPO, 'test/bpf/task-device-child.ts'),
      'veth',
      PINS,
      A,
      B,
      'tc_task.o',
    ],
    {cwd: REPO, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit']},
  )
  assert.deepEqual(JSON.parse(out.trim()), {ok: true})
})

after(async () => {
  server?.kill('SIGKILL')
  try {
    for (const ns of [A, B, NODE]) await delNetns(ns)
  } finally {
    rmSync(PINS, {recursive: true, force: true})
  }
})

test('task to task on one node: ARP answered, ping and TCP delivered into the peer, not through the host side', async () => {
  const before = txPackets('snk-b')
  // ARP first (nothing but tc_task answers it), then 50 echoes both ways.
  const ping = await execIn(A, ['ping', '-c', '50', '-i', '0.01', '-W', '2', '10.77.0.3'])
  assert.match(ping, /50 packets transmitted, 50 received/)
  const neigh = await execIn(A, ['ip', 'neigh', 'show', '10.77.0.3'])
  assert.match(neigh, /lladdr 02:42:0a:4d:00:03/)

  server = spawn('nsenter', [`--net=${netnsPath(B)}`, '--', 'iperf3', '-s', '-1'], {stdio: 'ignore'})
  let out = ''
  for (let i = 0; i < 20 && !out; i++) {
    try {
      out = await execIn(A, ['iperf3', '--json', '-c', '10.77.0.3', '-t', '1'])
    } catch {
      await new Promise((r) => setTimeout(r, 100))
    }
  }
  const j = JSON.parse(out) as {end?: {sum_received?: {bytes?: number}}}
  const got = j.end?.sum_received?.bytes ?? 0
  assert.ok(got > 1_000_000, `TCP received ${got} bytes: ${out.slice(-400)}`)

  // 50 echo requests and a TCP stream went to B; B's host side sent none of them (its own
  // IPv6 router/neighbour solicitations are all it may count).
  const sent = txPackets('snk-b') - before
  assert.ok(sent < 20, `the host side of B's veth transmitted ${sent} packets`)
})
