// Highly available managers, for real: `lab up --nodes 5 --managers 3 --store etcd`
// starts a 3-member etcd with TLS inside n1..n3's namespaces and managers n1..n3
// on it. Concurrent creates on the three managers never share an address; the
// leader's agent killed with -9 hands the role on and new work is placed by
// another manager; etcd stopped: one clear line, the data plane untouched;
// etcd back: the managers lead and place again. Prints the times it measures.
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {readFileSync} from 'node:fs'
import type {NodeConfig} from '../../src/agent/config.js'
import {describe, test} from 'node:test'
import type {NodeView} from '../../src/agent/views.js'
import {etcdctl, startLabEtcd, stopLabEtcd, waitLabEtcd} from '../../src/lab/etcd.js'
import {readLabState} from '../../src/lab/state.js'
import {BIN, cli, eventually, inNs, json, ok} from './helpers.js'
import {joinFromClient, removeOutsideNode, withLab} from './lab.js'

interface Task {
  id: string
  node: string
  desiredState: string
  state: string
  netns: string
  addresses: {network: string; ip: string}[]
}
interface ServiceInspect {
  name: string
  vips?: {network: string; ip: string}[]
}

const MANAGERS = ['n1', 'n2', 'n3']
const nodes = (on: string) => json<NodeView[]>(on, ['node', 'ls'])
const leaderOf = (on: string) => nodes(on).find((n) => n.managerStatus === 'leader')
const info = (on: string) => json<{leader: string | null; nodeId: string}>(on, ['info'])

/** The CLI as its own process, not waited for: requests that really run at the same time. */
function cliAsync(node: string, args: string[]): Promise<{code: number; stdout: string; stderr: string}> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, ...args], {env: {...process.env, NO_COLOR: '1', SWARMNET_HOST: node}})
    let stdout = ''
    let stderr = ''
    p.stdout.on('data', (b: Buffer) => (stdout += b.toString()))
    p.stderr.on('data', (b: Buffer) => (stderr += b.toString()))
    p.on('close', (code) => resolve({code: code ?? -1, stdout, stderr}))
  })
}

const OUTSIDE = 'outside'
const nodeConfig = (node: string) => JSON.parse(readFileSync(`/var/lib/swarmnet/${node}/node.json`, 'utf8')) as NodeConfig

describe('three managers on etcd', () => {
  let dead: string | undefined
  const killed = new Set<string>()
  let outsideJoined = false

  withLab(['--nodes', '5', '--managers', '3', '--store', 'etcd'], {
    beforeDown: () => {
      // The node that joined from the client namespace is not one of the lab's: it leaves, and its files go here.
      if (outsideJoined) {
        cli(undefined, ['lab', 'exec', 'client', '--', process.execPath, BIN, 'leave', '--force', '--host', OUTSIDE])
        try {
          process.kill(Number(readFileSync(`/run/swarmnet/${OUTSIDE}.pid`, 'utf8').trim()), 'SIGKILL')
        } catch {
          // already gone
        }
        removeOutsideNode(OUTSIDE)
      }
    },
  })

  test('node ls: three managers, one leader, seen the same from a worker; a worker refuses writes', async () => {
    const view = await eventually('one leader seen from n5', () => {
      const ns = nodes('n5')
      return ns.filter((n) => n.managerStatus === 'leader').length === 1 ? ns : undefined
    })
    assert.deepEqual(
      view
        .filter((n) => n.role === 'manager')
        .map((n) => n.name)
        .sort(),
      MANAGERS,
    )
    assert.ok(view.filter((n) => n.role === 'worker').every((n) => n.managerStatus === undefined))
    const table = ok('n4', ['node', 'ls'])
    assert.match(table, /MANAGER STATUS/)
    assert.match(table, /manager\s+leader/)
    const w = cli('n4', ['network', 'create', 'nope'])
    assert.notEqual(w.code, 0)
    assert.match(w.stderr, /this node is a worker/)
    // The state is in etcd, under the cluster's prefix, reached with the lab's client certificate.
    const keys = await etcdctl(readLabState()!.etcd!, ['get', '--prefix', '/swarmnet/', '--keys-only'])
    assert.match(keys, /\/state\/cluster/)
    assert.match(keys, /\/alloc\/name\/network\/ingress/)
  })

  test('node promote / demote by managers other than the first: a worker becomes a manager holding the identity, and a worker again without it', async () => {
    // n2 and n3 joined with --manager: the identity and the tokens came sealed in the join answer.
    for (const m of ['n2', 'n3']) assert.ok(nodeConfig(m).identity, `${m} holds the cluster identity`)
    // A token rotated on one manager is the only one every manager admits with.
    const before = json<{token: string}>('n1', ['swarm', 'join-token']).token
    const rotated = json<{token: string}>('n2', ['swarm', 'join-token', '--rotate']).token
    assert.notEqual(rotated, before)
    for (const m of ['n1', 'n3'])
      await eventually(`${m} admits with the rotated token`, () => nodeConfig(m).token === rotated || undefined)
    assert.equal(nodeConfig('n4').identity, undefined)
    assert.match(ok('n2', ['node', 'promote', 'n4']), /Node n4 is now a manager/)
    let i = 0
    await eventually('n4 serves writes', () => cli('n4', ['network', 'create', `p${i++}`]).code === 0 || undefined, 30_000)
    // Its promotion carried the identity and the tokens sealed to its node key: it gives the same join tokens.
    const n4 = nodeConfig('n4')
    assert.equal(n4.identity?.publicKey, nodeConfig('n1').identity?.publicKey)
    assert.equal(
      json<{token: string}>('n4', ['swarm', 'join-token']).token,
      json<{token: string}>('n1', ['swarm', 'join-token']).token,
    )
    await eventually('n4 a reachable manager, seen from n5', () => {
      const n4 = nodes('n5').find((n) => n.name === 'n4')
      return (n4?.role === 'manager' && n4.managerStatus === 'reachable') || undefined
    })
    assert.match(cli('n1', ['node', 'promote', 'n4']).stderr, /n4 is already a manager/)
    assert.match(ok('n3', ['node', 'demote', 'n4']), /Node n4 is now a worker/)
    await eventually(
      'n4 refuses writes',
      () => /this node is a worker/.test(cli('n4', ['network', 'create', `d${i++}`]).stderr) || undefined,
      30_000,
    )
    await eventually('n4 a worker, seen from n5', () => {
      const n4 = nodes('n5').find((n) => n.name === 'n4')
      return (n4?.role === 'worker' && n4.managerStatus === undefined) || undefined
    })
    const demoted = nodeConfig('n4')
    for (const k of ['identity', 'token', 'managerToken', 'etcd'] as const)
      assert.equal(demoted[k], undefined, `n4 still holds ${k}`)
  })

  test('30 concurrent service creates across the 3 managers: every one created, no address twice', async () => {
    ok('n1', ['network', 'create', 'web'])
    const results = await Promise.all(
      Array.from({length: 30}, (_, i) =>
        cliAsync(MANAGERS[i % 3]!, [
          'service',
          'create',
          '--name',
          `c${i}`,
          '--replicas',
          i % 10 === 0 ? '1' : '0',
          '--network',
          'web',
          '--',
          'sleep',
          'infinity',
        ]),
      ),
    )
    for (const r of results) assert.equal(r.code, 0, r.stderr)
    // Every manager and a worker see the same 30 services, once mirrored through gossip.
    const vips = await eventually('30 services everywhere', () => {
      const per = ['n1', 'n2', 'n3', 'n5'].map((n) =>
        json<ServiceInspect[]>(n, ['service', 'ls']).filter((s) => /^c\d+$/.test(s.name)),
      )
      return per.every((p) => p.length === 30) ? per : undefined
    })
    const ips = vips[0]!.map((s) => s.name).map((name) => json<ServiceInspect>('n2', ['service', 'inspect', name]))
    const addrs = ips.flatMap((s) => (s.vips ?? []).map((v) => v.ip))
    const tasks = ['c0', 'c10', 'c20']
      .flatMap((s) => json<Task[]>('n3', ['service', 'ps', s]))
      .flatMap((t) => t.addresses.map((a) => a.ip))
    const all = [...addrs, ...tasks]
    assert.equal(all.length, 33)
    assert.equal(new Set(all).size, all.length, `an address was given twice: ${all.sort().join(' ')}`)
  })

  test("kill -9 of the leader's agent: another manager leads within seconds and places a new service", async () => {
    const leader = await eventually('a leader', () => leaderOf('n4'))
    dead = leader.name
    const pid = Number(readFileSync(`/run/swarmnet/${dead}.pid`, 'utf8').trim())
    const t0 = Date.now()
    process.kill(pid, 'SIGKILL')
    const others = MANAGERS.filter((n) => n !== dead)
    const next = await eventually(
      'a new leader',
      () => {
        const i = info(others[0]!)
        return i.leader && i.leader !== leader.id ? i.leader : undefined
      },
      20_000,
    )
    const tLeader = Date.now() - t0
    assert.notEqual(next, leader.id)
    // Its agent is known away (SWIM), its node stays ready (its data path answers, issue 21), and
    // placement gives it no new task: nothing waits for the 10 s reschedule delay.
    await eventually('the dead agent down', () => nodes(others[0]!).find((n) => n.name === dead)?.agent === 'down', 20_000)
    assert.equal(nodes(others[0]!).find((n) => n.name === dead)?.state, 'ready')
    const tCreate = Date.now()
    const on = others[1]!
    ok(on, ['service', 'create', '--name', 'after', '--replicas', '2', '--network', 'web', '--', 'sleep', 'infinity'])
    const placed = await eventually(
      'the new service running',
      () => {
        const t = json<Task[]>(on, ['service', 'ps', 'after']).filter((x) => x.desiredState === 'running')
        return t.length === 2 && t.every((x) => x.state === 'running' && x.node !== dead) ? t : undefined
      },
      60_000,
    )
    assert.equal(placed.length, 2)
    console.log(
      `# leader ${dead} killed: new leader elected after ${tLeader} ms; new service created then, all its tasks running ${Date.now() - tCreate} ms after the create (${Date.now() - t0} ms after the kill)`,
    )
  })

  test('etcd stopped: one clear line naming the endpoints, the data plane untouched; etcd back: writes and placement resume', async () => {
    const lab = readLabState()!
    const etcd = lab.etcd!
    const alive = MANAGERS.filter((n) => n !== dead)
    const tasks = json<Task[]>(alive[0]!, ['service', 'ps', 'after']).filter((t) => t.state === 'running')
    assert.equal(tasks.length, 2)
    const ping = () => inNs(tasks[0]!.netns, ['ping', '-c', '1', '-W', '2', tasks[1]!.addresses[0]!.ip]).code
    assert.equal(ping(), 0)
    await stopLabEtcd(etcd)
    try {
      const t0 = Date.now()
      const r = cli(alive[0]!, ['network', 'create', 'during'])
      const took = Date.now() - t0
      assert.notEqual(r.code, 0)
      const line = r.stderr.trim()
      assert.ok(!line.includes('\n'), line)
      assert.ok(line.includes(etcd.endpoints.join(',')), line)
      // A request decides over the manager's copy and fails at its transaction, unless the copy's
      // broken watch was noticed first (then at reading the prefix again).
      assert.match(line, /etcd at .* cannot (read|write) the cluster state/)
      console.log(`# with etcd stopped, a write failed after ${took} ms: ${line}`)
      // Tasks keep talking over the overlay: the data plane does not depend on etcd.
      assert.equal(ping(), 0)
      // Reads are served from the gossip store.
      assert.equal(cli(alive[1]!, ['service', 'ls']).code, 0)
    } finally {
      await startLabEtcd(etcd)
    }
    await waitLabEtcd(etcd)
    const t1 = Date.now()
    await eventually('a leader again', () => (info(alive[0]!).leader ? true : undefined), 30_000)
    ok(alive[1]!, ['network', 'create', 'during'])
    ok(alive[0]!, ['service', 'scale', 'after=3'])
    await eventually(
      'the scaled service running',
      () => {
        const t = json<Task[]>(alive[1]!, ['service', 'ps', 'after']).filter((x) => x.desiredState === 'running')
        return t.length === 3 && t.every((x) => x.state === 'running') ? t : undefined
      },
      60_000,
    )
    console.log(`# etcd back: leader again and a scale placed within ${Date.now() - t1} ms`)
    assert.equal(ping(), 0)
  })

  test("the first manager's agent killed: a new node joins through another manager", async () => {
    if (dead !== 'n1') process.kill(Number(readFileSync('/run/swarmnet/n1.pid', 'utf8').trim()), 'SIGKILL')
    killed.add('n1')
    const via = MANAGERS.filter((n) => n !== dead && !killed.has(n))[0]!
    await eventually(
      "n1's agent down, seen from the other manager",
      () => nodes(via).find((n) => n.name === 'n1')?.agent === 'down',
      20_000,
    )
    const {token, addr} = json<{token: string; addr: string}>(via, ['swarm', 'join-token'])
    outsideJoined = true
    const join = joinFromClient(OUTSIDE, token, addr)
    assert.equal(join.code, 0, join.stderr)
    await eventually(
      'the new node ready, seen from the manager that admitted it',
      () => nodes(via).some((n) => n.name === OUTSIDE && n.state === 'ready' && n.role === 'worker') || undefined,
    )
    // It leaves again at once: the tests after this one count the lab's nodes only.
    const leave = cli(undefined, ['lab', 'exec', 'client', '--', process.execPath, BIN, 'leave', '--host', OUTSIDE])
    assert.equal(leave.code, 0, leave.stderr)
  })

  test('every manager down: workers keep forwarding between their tasks and answer reads', async () => {
    const alive = MANAGERS.filter((n) => n !== dead && !killed.has(n))
    ok(alive[0]!, ['service', 'create', '--name', 'wk', '--mode', 'global', '--network', 'web', '--', 'sleep', 'infinity'])
    const on = await eventually(
      'wk running on n4 and n5',
      () => {
        const t = json<Task[]>('n4', ['service', 'ps', 'wk']).filter((x) => x.state === 'running')
        const a = t.find((x) => x.node === 'n4')
        const b = t.find((x) => x.node === 'n5')
        return a && b ? [a, b] : undefined
      },
      60_000,
    )
    const ping = () => inNs(on[0]!.netns, ['ping', '-c', '1', '-W', '2', on[1]!.addresses[0]!.ip]).code
    assert.equal(ping(), 0)
    for (const m of alive) process.kill(Number(readFileSync(`/run/swarmnet/${m}.pid`, 'utf8').trim()), 'SIGKILL')
    await eventually(
      "the managers' agents down, seen from n4",
      () =>
        nodes('n4')
          .filter((n) => n.role === 'manager')
          .every((n) => n.agent === 'down') || undefined,
      20_000,
    )
    assert.equal(ping(), 0)
    assert.ok(json<ServiceInspect[]>('n5', ['service', 'ls']).some((s) => s.name === 'wk'))
    // Desired state waits for a manager: a worker still says where writes go.
    const w = cli('n5', ['network', 'create', 'late'])
    assert.notEqual(w.code, 0)
    assert.match(w.stderr, /this node is a worker/)
  })
})
