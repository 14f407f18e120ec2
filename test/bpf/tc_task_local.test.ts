// Two tasks of one node on one network, through sn_tc_task attached as the agent attaches it
// (TCX ingress of each veth's host side, xdp_task_peer and GRO on the task side): ARP, ping
// and a TCP stream between them, with real namespaces and devices. Delivery is
// bpf_redirect_peer: straight into the other task's side, so the host side of the receiving
// task's veth transmits nothing of it (a plain bpf_redirect is counted there). And a VIP
// whose backend is the other task: TCP and UDP from the task's own stack through the DNAT and
// the reverse NAT (no socket program here, so tc does it). Checksums are not held to account
// by this: a packet the stack left CHECKSUM_PARTIAL crosses veth unverified (lb.test.ts checks
// them on whole-checksum packets; a remote backend's node verifies them, test/e2e).
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
      'vip',
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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/**
 * iperf3's JSON from a client in A, against a one-off server started in B once the last one is
 * gone and this one listens. A client that could not connect (its JSON says why, and it may
 * still exit 0) is tried again: the server takes only a whole run as its one.
 */
async function iperf(args: string[]): Promise<string> {
  const listening = async () => (await execIn(B, ['ss', '-Hltn', 'sport = :5201'])).trim() !== ''
  for (let i = 0; i < 50 && (await listening()); i++) await sleep(100)
  server?.kill('SIGKILL')
  server = spawn('nsenter', [`--net=${netnsPath(B)}`, '--', 'iperf3', '-s', '-1'], {stdio: 'ignore'})
  for (let i = 0; i < 50 && !(await listening()); i++) await sleep(100)
  let out = ''
  for (let i = 0; i < 20; i++) {
    try {
      out = await execIn(A, ['iperf3', '--json', ...args])
      if (!(JSON.parse(out) as {error?: string}).error) return out
    } catch {
      // not yet connected: again
    }
    await sleep(100)
  }
  throw new Error(`iperf3 ${args.join(' ')} never ran: ${out.slice(-400)}`)
}

test('task to task on one node: ARP answered, ping and TCP delivered into the peer, not through the host side', async () => {
  const before = txPackets('snk-b')
  // ARP first (nothing but tc_task answers it), then 50 echoes both ways.
  const ping = await execIn(A, ['ping', '-c', '50', '-i', '0.01', '-W', '2', '10.77.0.3'])
  assert.match(ping, /50 packets transmitted, 50 received/)
  const neigh = await execIn(A, ['ip', 'neigh', 'show', '10.77.0.3'])
  assert.match(neigh, /lladdr 02:42:0a:4d:00:03/)

  const out = await iperf(['-c', '10.77.0.3', '-t', '1'])
  const j = JSON.parse(out) as {end?: {sum_received?: {bytes?: number}}}
  const got = j.end?.sum_received?.bytes ?? 0
  assert.ok(got > 1_000_000, `TCP received ${got} bytes: ${out.slice(-400)}`)

  // 50 echo requests and a TCP stream went to B; B's host side sent none of them (its own
  // IPv6 router/neighbour solicitations are all it may count).
  const sent = txPackets('snk-b') - before
  assert.ok(sent < 20, `the host side of B's veth transmitted ${sent} packets`)
})

test('task to a VIP whose backend is the other task: a TCP stream and UDP, the VIP as the peer both ways', async () => {
  const tcp = JSON.parse(await iperf(['-c', '10.77.0.100', '-t', '1'])) as {
    start?: {connected?: {remote_host?: string}[]}
    end?: {sum_received?: {bytes?: number}}
  }
  // The client's socket only takes replies from the VIP: a stream means the replies got it back.
  assert.equal(tcp.start?.connected?.[0]?.remote_host, '10.77.0.100')
  const got = tcp.end?.sum_received?.bytes ?? 0
  assert.ok(got > 1_000_000, `TCP through the VIP received ${got} bytes`)
  const udp = JSON.parse(await iperf(['-c', '10.77.0.100', '-u', '-b', '20M', '-l', '1000', '-t', '1'])) as {
    end?: {sum?: {packets?: number; lost_packets?: number}}
  }
  const sent = udp.end?.sum?.packets ?? 0
  const lost = udp.end?.sum?.lost_packets ?? sent
  assert.ok(sent > 1000 && lost < sent / 10, `UDP through the VIP: ${lost} of ${sent} datagrams lost`)
})
