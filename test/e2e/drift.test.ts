// Drift in a 2-node lab: what an operator (or another tool) removes by hand
// from the data plane comes back by itself, with traffic between tasks on
// the two nodes: a task's host veth deleted, its tc link detached or its pin
// removed, the underlay's XDP link detached.
import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import {before, describe, test} from 'node:test'
import {eventually, inNs, json, ok, sh} from './helpers.js'
import {withLab} from './lab.js'

interface Task {
  id: string
  node: string
  state: string
  netns: string
  addresses: {network: string; ip: string}[]
}

const agentLog = (node: string) => readFileSync(`/var/lib/swarmnet/${node}/agent.log`, 'utf8')
const hostIf = (t: Task) => `sn-${t.id.slice(0, 8)}-0`

describe('drift repair across a 2-node lab', {timeout: 300_000}, () => {
  let a: Task
  let b: Task

  /** HTTP from the task on n1 to the one on n2 and back works (again). */
  const traffic = async (what: string) => {
    for (const [from, to] of [
      [a, b],
      [b, a],
    ] as const) {
      await eventually(
        `${what}: HTTP ${from.node} -> ${to.node}`,
        () => inNs(from.netns, ['curl', '-s', '-m', '2', `http://${to.addresses[0]!.ip}/`]).code === 0,
        20_000,
      )
    }
  }

  withLab(['--nodes', '2'])
  before(async () => {
    ok('n1', ['network', 'create', 'drift'])
    ok('n1', ['service', 'create', '--name', 'web', '--replicas', '2', '--network', 'drift'])
    const tasks = await eventually(
      '2 running tasks on 2 nodes',
      () => {
        const t = json<Task[]>('n1', ['service', 'ps', 'web']).filter((x) => x.state === 'running')
        return t.length === 2 && new Set(t.map((x) => x.node)).size === 2 ? t : undefined
      },
      30_000,
    )
    a = tasks.find((t) => t.node === 'n1')!
    b = tasks.find((t) => t.node === 'n2')!
    await traffic('at start')
  })

  test("a task's host veth deleted by hand is made again in the task's namespace", async () => {
    const dev = hostIf(b)
    const r = sh(['ip', '-n', 'sn-lab-n2', 'link', 'del', dev])
    assert.equal(r.code, 0, r.stderr)
    // Deleting one end takes the task's end with it.
    assert.notEqual(inNs(b.netns, ['ip', 'link', 'show', 'eth0']).code, 0)
    await eventually('n2 made it again', () => agentLog('n2').includes(`${dev} was gone: made again`))
    assert.equal(inNs(b.netns, ['ip', 'link', 'show', 'eth0']).code, 0)
    await traffic('after the veth came back')
    const pid = json<Task[]>('n1', ['service', 'ps', 'web']).find((t) => t.id === b.id)
    assert.equal(pid?.state, 'running', 'the task kept running')
  })

  test('a tc link detached, or its pin removed, is attached again', async () => {
    const pin = `/sys/fs/bpf/swarmnet/n2/links/tcx-${hostIf(b)}`
    const before = agentLog('n2').split(`tc on ${hostIf(b)} was gone`).length
    const r = sh(['bpftool', 'link', 'detach', 'pinned', pin])
    assert.equal(r.code, 0, r.stderr)
    await eventually('n2 attached it again', () => agentLog('n2').split(`tc on ${hostIf(b)} was gone`).length > before)
    await traffic('after the tc link came back')

    const pinA = `/sys/fs/bpf/swarmnet/n1/links/tcx-${hostIf(a)}`
    const beforeA = agentLog('n1').split(`tc on ${hostIf(a)} was gone`).length
    assert.equal(sh(['rm', pinA]).code, 0)
    await eventually('n1 attached it again', () => agentLog('n1').split(`tc on ${hostIf(a)} was gone`).length > beforeA)
    await traffic('after the removed pin came back')
  })

  test("the underlay's XDP link detached is attached again; netlink cannot take it off", async () => {
    // `ip link set ... xdp off` (what a tool that does not know links runs) is refused by the kernel.
    const off = sh(['ip', '-n', 'sn-lab-n1', 'link', 'set', 'dev', 'eth0', 'xdp', 'off'])
    assert.notEqual(off.code, 0)
    assert.match(off.stderr, /BPF XDP link/)
    const before = agentLog('n1').split('XDP on eth0 was gone').length
    const r = sh(['bpftool', 'link', 'detach', 'pinned', '/sys/fs/bpf/swarmnet/n1/links/xdp-underlay'])
    assert.equal(r.code, 0, r.stderr)
    await eventually('n1 attached XDP again', () => agentLog('n1').split('XDP on eth0 was gone').length > before)
    assert.match(sh(['ip', '-n', 'sn-lab-n1', '-d', 'link', 'show', 'eth0']).stdout, /prog\/xdp id \d+ name sn_xdp_underlay/)
    await traffic('after XDP came back')
    // The agent reports how its programs are attached and what it repaired.
    const info = JSON.parse(sh(['curl', '-s', '--unix-socket', '/run/swarmnet/n1.sock', 'http://agent/info']).stdout) as {
      datapath: {underlayVia: string; repairs: number; syncErrors: Record<string, number>}
    }
    assert.equal(info.datapath.underlayVia, 'link')
    assert.ok(info.datapath.repairs >= 2, JSON.stringify(info.datapath))
    assert.deepEqual(info.datapath.syncErrors, {})
  })
})
