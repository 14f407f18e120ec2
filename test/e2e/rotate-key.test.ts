// Cluster key rotation in the 3-node lab, for real: `swarm rotate-key` while
// tasks ping each other across nodes and the manager keeps writing. Every node
// ends up holding the new key only, no gossip packet fails to open on the way,
// a service created right after reaches every node, and the pings lose
// nothing. Then a node whose agent is down across a rotation cannot read the
// cluster any more, and joins again with the join token under its own name.
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {readFileSync} from 'node:fs'
import {describe, test} from 'node:test'
import {AgentClient} from '../../src/agent/client.js'
import type {NodeView} from '../../src/agent/views.js'
import type {GossipStats} from '../../src/gossip/stats.js'
import {nodeAddress} from '../../src/lab/topology.js'
import {agentOn, BIN, cli, eventually, inNs, json, ok, sh, stateOn, until} from './helpers.js'
import {withLab} from './lab.js'
import {allRunning} from './service-tasks.js'

interface Task {
  id: string
  node: string
  desiredState: string
  state: string
  netns: string
  addresses: {network: string; ip: string}[]
}
type Keys = {primary: number; ids: number[]; rotation?: {phase: string}}

const ps = (svc: string) => json<Task[]>('n1', ['service', 'ps', svc])
const live = (svc: string) => ps(svc).filter((t) => t.desiredState === 'running')
const ipOf = (t: Task) => t.addresses[0]!.ip
const keysOf = (n: string) => new AgentClient(n).get<Keys>('/swarm/keys')
const statsOf = async (n: string) => (await new AgentClient(n).get<{gossip: GossipStats}>('/info')).gossip
const running = (svc: string, n: number, where?: (t: Task) => boolean) => allRunning(svc, n, live, 60_000, where)

/** ping in a task's namespace, in the background: resolves with (sent, received). */
function pinging(netns: string, ip: string, count: number): Promise<{sent: number; received: number; out: string}> {
  return new Promise((resolve) => {
    const p = spawn('nsenter', [`--net=/run/netns/${netns}`, '--', 'ping', '-n', '-i', '0.2', '-W', '1', '-c', String(count), ip])
    let out = ''
    p.stdout.on('data', (d: Buffer) => (out += d.toString()))
    p.on('close', () => {
      const m = /(\d+) packets transmitted, (\d+) received/.exec(out)
      resolve({sent: Number(m?.[1] ?? 0), received: Number(m?.[2] ?? 0), out})
    })
  })
}

describe('swarm rotate-key: a new cluster key everywhere, under traffic', {timeout: 600_000}, () => {
  withLab(['--nodes', '3'])

  test('rotate-key under traffic: every node switches, no gossip lost, a new service reaches all, pings keep working', async () => {
    ok('n1', ['network', 'create', 'rk'])
    ok('n1', ['service', 'create', '--name', 'web', '--replicas', '3', '--network', 'rk'])
    const web = await running('web', 3)
    const on = (n: string) => web.find((t) => t.node === n)!
    for (const n of ['n1', 'n2', 'n3']) {
      const k = await keysOf(n)
      assert.equal(k.primary, 0)
      assert.deepEqual(k.ids, [0])
    }
    await eventually(
      'pings between tasks answer',
      () => inNs(on('n1').netns, ['ping', '-c', '1', '-W', '2', ipOf(on('n3'))]).code === 0,
    )

    // A rotation from a worker is refused in one line.
    const fromWorker = cli('n2', ['swarm', 'rotate-key'])
    assert.notEqual(fromWorker.code, 0)
    assert.match(fromWorker.stderr, /this node is a worker: run the command on the manager/)
    assert.equal(fromWorker.stderr.trim().split('\n').length, 1)
    const bad = cli('n1', ['swarm', 'rotate-key', '--grace', '5 minutes'])
    assert.notEqual(bad.code, 0)
    assert.match(bad.stderr, /invalid --grace '5 minutes'/)
    assert.deepEqual((await keysOf('n1')).ids, [0], 'a refused command changes nothing')

    const before = Object.fromEntries(await Promise.all(['n1', 'n2', 'n3'].map(async (n) => [n, await statsOf(n)] as const)))
    // Traffic: tasks ping each other across nodes, the manager writes desired state.
    const pings = [pinging(on('n1').netns, ipOf(on('n2')), 60), pinging(on('n2').netns, ipOf(on('n3')), 60)]
    const scaling = (async () => {
      for (let i = 0; i < 6; i++) {
        ok('n1', ['service', 'scale', `web=${i % 2 === 0 ? 4 : 3}`])
        await new Promise((r) => setTimeout(r, 700))
      }
    })()
    await new Promise((r) => setTimeout(r, 1000))
    const t0 = Date.now()
    const out = ok('n1', ['swarm', 'rotate-key', '--grace', '3s'])
    console.log(`# rotate-key returned (every live node holds the new key, the manager seals with it) in ${Date.now() - t0} ms`)
    assert.match(out, /Rotated the cluster key: key 1 is in use; key 0 is accepted for 3s more, then removed/)

    // Right after: a new service reaches every node.
    ok('n1', ['service', 'create', '--name', 'fresh', '--mode', 'global', '--network', 'rk', '--', 'sleep', 'infinity'])
    const fresh = await running('fresh', 3)
    assert.deepEqual(fresh.map((t) => t.node).sort(), ['n1', 'n2', 'n3'])
    for (const n of ['n2', 'n3'])
      await eventually(`service fresh known on ${n}`, () =>
        json<{name: string}[]>(n, ['service', 'ls']).some((s) => s.name === 'fresh'),
      )

    await until(
      'every node holds key 1 only',
      async () => {
        const ks = await Promise.all(['n1', 'n2', 'n3'].map(keysOf))
        return ks.every((k) => k.primary === 1 && k.ids.length === 1 && k.ids[0] === 1)
      },
      30_000,
    )
    console.log(`# rotate-key -> old key retired on every node: ${Date.now() - t0} ms`)
    await scaling
    await running('web', 3)
    const results = await Promise.all(pings)
    for (const r of results) {
      console.log(`# pings between tasks across the rotation: ${r.received}/${r.sent}`)
      assert.equal(r.sent, 60, r.out)
      assert.ok(r.received >= r.sent - 1, `pings lost: ${r.out}`)
    }
    for (const n of ['n1', 'n2', 'n3']) {
      const s = await statsOf(n)
      assert.equal(s.decryptFailed - before[n]!.decryptFailed, 0, `${n}: no gossip packet failed to open during the rotation`)
      assert.ok(s.received > before[n]!.received, `${n}: gossip kept flowing`)
    }
    for (const n of ['n2', 'n3']) assert.ok((await statsOf(n)).keyChanges >= 3, `${n} applied install, use and retire`)
    // The config on disk holds the new key only (a restart keeps it).
    const cfg = JSON.parse(readFileSync('/var/lib/swarmnet/n2/node.json', 'utf8')) as {keyId: number; keys: {id: number}[]}
    assert.equal(cfg.keyId, 1)
    assert.deepEqual(
      cfg.keys.map((k) => k.id),
      [1],
    )
  })

  test('a node down across a rotation rejoins with the join token and gets the current key', async () => {
    const held = (await keysOf('n3')).primary
    const agent = Number(readFileSync('/run/swarmnet/n3.pid', 'utf8').trim())
    process.kill(agent, 'SIGKILL')
    // Its agent is gone (its node stays ready while its data path answers): the rotation goes on without it.
    await until("n3's agent down on n1", async () => (await agentOn('n1', 'n3')) === 'down', 30_000)
    const out = ok('n1', ['swarm', 'rotate-key', '--grace', '1s'])
    const current = Number(/key (\d+) is in use/.exec(out)?.[1])
    assert.notEqual(current, held)
    await until(
      'n1 and n2 hold the new key only',
      async () => {
        const ks = await Promise.all(['n1', 'n2'].map(keysOf))
        return ks.every((k) => k.ids.length === 1 && k.ids[0] === current)
      },
      30_000,
    )
    const stale = JSON.parse(readFileSync('/var/lib/swarmnet/n3/node.json', 'utf8')) as {keyId: number}
    assert.equal(stale.keyId, held, 'n3 slept through it with the old key')

    const token = ok('n1', ['swarm', 'join-token', '-q']).trim()
    const join = sh([
      'nsenter',
      '--net=/run/netns/sn-lab-n3',
      '--',
      process.execPath,
      BIN,
      'join',
      '--node',
      'n3',
      '--advertise-addr',
      'eth0',
      '--token',
      token,
      `${nodeAddress(1)}:7946`,
    ])
    assert.equal(join.code, 0, join.stderr)
    assert.match(join.stdout, /joined its swarm again as a worker, with the current cluster key/)
    assert.equal((await keysOf('n3')).primary, current)
    await until(
      'n3 ready again on n1 and n2, and they on n3',
      async () =>
        (await stateOn('n1', 'n3')) === 'ready' &&
        (await stateOn('n2', 'n3')) === 'ready' &&
        (await stateOn('n3', 'n1')) === 'ready',
      60_000,
    )
    const rejoined = json<NodeView[]>('n1', ['node', 'ls']).filter((n) => n.name === 'n3')
    assert.equal(rejoined.length, 1, 'the same node, not a second one')

    // What the manager writes now reaches n3 and runs there; its task talks to the others.
    ok('n1', ['service', 'create', '--name', 'after', '--mode', 'global', '--network', 'rk'])
    const after = await running('after', 3)
    const on3 = after.find((t) => t.node === 'n3')!
    const on1 = after.find((t) => t.node === 'n1')!
    await eventually(
      'n3 task answers n1 task',
      () => inNs(on1.netns, ['ping', '-c', '1', '-W', '2', ipOf(on3)]).code === 0,
      30_000,
    )
    await eventually(
      'n1 task answers n3 task',
      () => inNs(on3.netns, ['ping', '-c', '1', '-W', '2', ipOf(on1)]).code === 0,
      30_000,
    )

    // A join with a wrong token is still refused, and changes nothing.
    const wrong = sh([
      'nsenter',
      '--net=/run/netns/sn-lab-n3',
      '--',
      process.execPath,
      BIN,
      'join',
      '--node',
      'n3',
      '--token',
      'SWMTKN-1-nope',
      `${nodeAddress(1)}:7946`,
    ])
    assert.notEqual(wrong.code, 0)
    assert.equal((await keysOf('n3')).primary, current)
  })
})
