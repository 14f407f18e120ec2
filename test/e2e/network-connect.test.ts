// `network connect`: namespaces swarmnet did not make (made here by `ip netns add` and
// `unshare --net`) join an attachable overlay in a 2-node lab as tasks do: the namespace on
// n1 reaches a task on n2 and is reached by it; disconnect removes it; a namespace that ends
// is removed from every node by itself.
import assert from 'node:assert/strict'
import {spawn, type ChildProcess} from 'node:child_process'
import {before, describe, test} from 'node:test'
import {cli, eventually, inNs, json, ok, sh} from './helpers.js'
import {withLab} from './lab.js'
import {runningOn} from './service-tasks.js'

interface Task {
  node: string
  state: string
  netns: string
  addresses: {network: string; ip: string}[]
}
interface Att {
  name: string
  ip: string
  node: string
  state: string
  netns: string
}
interface Net {
  vni: number
  subnet: string
  attachments: Att[]
}

const NS = `snt-blue-${process.pid}`
const NS_PATH = `/run/netns/${NS}`
// For the synchronous connect: one namespace used from n1, one from n2 (--node).
const NEAR = `snt-near-${process.pid}`
const FAR = `snt-far-${process.pid}`

const inPath = (path: string, argv: string[]) => sh(['nsenter', `--net=${path}`, '--', ...argv], {}, 30_000)
const endpointIps = (node: string) =>
  json<{maps: {entries: {key: {ip: string}}[]}[]}>(undefined, [
    'inspect',
    'maps',
    '--host',
    node,
    '--map',
    'sn_endpoints',
  ]).maps[0]!.entries.map((e) => e.key.ip)
const attachments = (node: string) => json<Net>(node, ['network', 'inspect', 'att']).attachments
/** The host ends of attachments (sn-x...) in a lab node's namespace. */
const hostEnds = (node: string) =>
  sh(['ip', '-n', `sn-lab-${node}`, '-br', 'link'])
    .stdout.split('\n')
    .filter((l) => l.startsWith('sn-x'))
/** The namespace's eth0 as `ip -br addr` shows it ('' when it has none). */
const eth0Addr = (ns: string) => sh(['ip', '-n', ns, '-br', 'addr', 'show', 'dev', 'eth0']).stdout.trim()

describe('network connect: outside namespaces on an overlay, 2-node lab', {timeout: 300_000}, () => {
  let remote: Task
  let local: Task
  let holder: ChildProcess | undefined

  withLab(['--nodes', '2'], {
    beforeDown: () => {
      holder?.kill('SIGKILL')
      for (const ns of [NS, NEAR, FAR]) sh(['ip', 'netns', 'del', ns])
    },
  })
  before(async () => {
    ok('n1', ['network', 'create', '--attachable', 'att'])
    ok('n1', ['network', 'create', 'closed'])
    ok('n1', ['service', 'create', '--name', 'web', '--mode', 'global', '--network', 'att'])
    remote = await runningOn<Task>('web', 'n2')
    local = await runningOn<Task>('web', 'n1')
  })

  test('refused with one line, nothing written: a network not attachable, no namespace, both, a used address', () => {
    sh(['ip', 'netns', 'add', NS])
    const taskIp = remote.addresses[0]!.ip
    for (const args of [
      ['closed', '--netns', NS_PATH],
      ['att', '--netns', '/run/netns/snt-no-such-ns'],
      ['att', '--netns', NS_PATH, '--pid', '1'],
      ['att'],
      ['att', '--netns', NS_PATH, '--ip', taskIp],
      ['att', '--netns', NS_PATH, '--ip', '10.255.255.1'],
      ['att', '--netns', '/proc/self/ns/net'],
    ]) {
      const r = cli('n1', ['network', 'connect', ...args])
      assert.notEqual(r.code, 0, args.join(' '))
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr)
    }
    assert.match(cli('n1', ['network', 'connect', 'closed', '--netns', NS_PATH]).stderr, /not attachable.*--attachable/)
    assert.deepEqual(attachments('n1'), [])
    assert.deepEqual(json<Net>('n1', ['network', 'inspect', 'closed']).attachments, [])
    // A worker does not write desired state.
    assert.notEqual(cli('n2', ['network', 'connect', 'att', '--netns', NS_PATH]).code, 0)
  })

  test('connect returns once attached: address, route and the task on the other node at once; disconnect once gone', (t) => {
    sh(['ip', 'netns', 'add', NEAR])
    // No waiting and no retry between the command and what uses the network: that is the point.
    const t0 = Date.now()
    const a = json<Att>('n1', ['network', 'connect', 'att', '--netns', `/run/netns/${NEAR}`, '--name', 'near'])
    t.diagnostic(`connect took ${Date.now() - t0} ms (the CLI's start included)`)
    assert.match(eth0Addr(NEAR), new RegExp(`^eth0@\\S+\\s+UP\\s+${a.ip.replace(/\./g, '\\.')}/24`))
    assert.equal(a.state, 'attached')
    const {subnet} = json<Net>('n1', ['network', 'inspect', 'att'])
    assert.match(sh(['ip', '-n', NEAR, 'route']).stdout, new RegExp(`^${subnet.replace(/\./g, '\\.')} dev eth0`, 'm'))
    const taskIp = remote.addresses[0]!.ip
    const ping = inPath(`/run/netns/${NEAR}`, ['ping', '-c', '1', '-W', '2', taskIp])
    assert.equal(ping.code, 0, `the first ping to the task on n2: ${ping.stdout}`)
    const http = inPath(`/run/netns/${NEAR}`, ['curl', '-s', '-m', '5', `http://${taskIp}/`])
    assert.match(http.stdout, new RegExp(`RemoteAddr: ${a.ip.replace(/\./g, '\\.')}:`), http.stderr)

    ok('n1', ['network', 'disconnect', 'att', 'near'])
    assert.equal(eth0Addr(NEAR), '', 'the interface is gone when disconnect returns')
    assert.deepEqual(hostEnds('n1'), [])
    assert.deepEqual(attachments('n1'), [])
  })

  test('the same with --node n2: the namespace on another node, wired there, ready when the command returns', (t) => {
    sh(['ip', 'netns', 'add', FAR])
    const t0 = Date.now()
    const a = json<Att>('n1', ['network', 'connect', 'att', '--netns', `/run/netns/${FAR}`, '--node', 'n2', '--name', 'far'])
    t.diagnostic(`connect --node n2 took ${Date.now() - t0} ms (the CLI's start included)`)
    assert.match(eth0Addr(FAR), new RegExp(`UP\\s+${a.ip.replace(/\./g, '\\.')}/24`))
    assert.deepEqual([a.node, a.state], ['n2', 'attached'])
    const taskIp = local.addresses[0]!.ip
    const ping = inPath(`/run/netns/${FAR}`, ['ping', '-c', '1', '-W', '2', taskIp])
    assert.equal(ping.code, 0, `the first ping to the task on n1: ${ping.stdout}`)
    const http = inPath(`/run/netns/${FAR}`, ['curl', '-s', '-m', '5', `http://${taskIp}/`])
    assert.match(http.stdout, new RegExp(`RemoteAddr: ${a.ip.replace(/\./g, '\\.')}:`), http.stderr)

    ok('n1', ['network', 'disconnect', 'att', 'far'])
    assert.equal(eth0Addr(FAR), '', 'the interface is gone when disconnect returns')
    assert.deepEqual(hostEnds('n2'), [])
    assert.deepEqual(attachments('n1'), [])
  })

  test("a namespace only its node can refuse (not a namespace, the node's own): one line, nothing left", () => {
    for (const path of ['/etc/hostname', '/proc/self/ns/net']) {
      const r = cli('n1', ['network', 'connect', 'att', '--netns', path, '--node', 'n2', '--name', 'nope'])
      assert.notEqual(r.code, 0, `${path}: ${r.stdout}`)
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr)
      assert.match(r.stderr, /n2/, 'the message names the node that refused')
      assert.deepEqual(attachments('n1'), [], path)
      assert.deepEqual(hostEnds('n2'), [], path)
    }
  })

  test('an `ip netns add` namespace on n1 and a task on n2 reach each other; disconnect removes it', async () => {
    const a = json<Att>('n1', ['network', 'connect', 'att', '--netns', NS_PATH, '--name', 'blue'])
    assert.equal(a.node, 'n1')
    await eventually('attached', () => attachments('n2').find((x) => x.name === 'blue' && x.state === 'attached'), 30_000)
    // Gossiped: n2 programs the endpoint, so its task's replies find the way back.
    await eventually('n2 has the endpoint', () => endpointIps('n2').includes(a.ip), 15_000)
    const taskIp = remote.addresses[0]!.ip
    await eventually(
      'ping from the namespace to the task on n2',
      () => inPath(NS_PATH, ['ping', '-c', '1', '-W', '2', taskIp]).code === 0,
      30_000,
    )
    const http = inPath(NS_PATH, ['curl', '-s', '-m', '5', `http://${taskIp}/`])
    assert.equal(http.code, 0, http.stderr)
    assert.match(http.stdout, /Hostname: web\./)
    assert.match(
      http.stdout,
      new RegExp(`RemoteAddr: ${a.ip.replace(/\./g, '\\.')}:`),
      "the task sees the namespace's own address",
    )
    assert.equal(inNs(remote.netns, ['ping', '-c', '1', '-W', '2', a.ip]).code, 0, 'the task reaches the namespace')

    ok('n1', ['network', 'disconnect', 'att', 'blue'])
    await eventually('gone on n2', () => !endpointIps('n2').includes(a.ip) && attachments('n2').length === 0, 15_000)
    await eventually('its interface gone', () => !inPath(NS_PATH, ['ip', '-br', 'link']).stdout.includes('eth0'), 15_000)
    assert.notEqual(inNs(remote.netns, ['ping', '-c', '1', '-W', '1', a.ip]).code, 0)
    assert.equal(sh(['ip', 'netns', 'list']).stdout.includes(NS), true, 'the namespace itself stays: it is not ours')
  })

  test('a namespace deleted by its owner is removed from every node by itself', async () => {
    const b = json<Att>('n1', ['network', 'connect', 'att', '--netns', NS_PATH])
    assert.equal(b.name, NS)
    await eventually('n2 has the endpoint', () => endpointIps('n2').includes(b.ip), 30_000)
    await eventually('reached', () => inNs(remote.netns, ['ping', '-c', '1', '-W', '2', b.ip]).code === 0, 30_000)
    sh(['ip', 'netns', 'del', NS])
    await eventually(
      'removed everywhere',
      () => !endpointIps('n2').includes(b.ip) && attachments('n2').length === 0 && attachments('n1').length === 0,
      30_000,
    )
  })

  test('`--pid` of an `unshare --net` process on n2 (--node): reached from n1, removed when the process ends', async () => {
    holder = spawn('unshare', ['--net', 'sleep', '300'], {stdio: 'ignore'})
    const pid = holder.pid!
    // unshare execs sleep in place: its pid is the namespace's process once it has run.
    await eventually(
      'own namespace',
      () =>
        sh(['readlink', `/proc/${pid}/ns/net`]).stdout !== sh(['readlink', '/proc/self/ns/net']).stdout &&
        sh(['readlink', `/proc/${pid}/exe`]).stdout.includes('sleep'),
    )
    const c = json<Att>('n1', ['network', 'connect', 'att', '--pid', String(pid), '--node', 'n2'])
    assert.deepEqual([c.name, c.node], [`pid-${pid}`, 'n2'])
    await eventually('n1 has the endpoint', () => endpointIps('n1').includes(c.ip), 30_000)
    await eventually(
      'reached from the task on n1',
      () => inNs(local.netns, ['ping', '-c', '1', '-W', '2', c.ip]).code === 0,
      30_000,
    )
    const back = sh(['nsenter', `--net=/proc/${pid}/ns/net`, '--', 'curl', '-s', '-m', '5', `http://${local.addresses[0]!.ip}/`])
    assert.match(back.stdout, new RegExp(`RemoteAddr: ${c.ip.replace(/\./g, '\\.')}:`), back.stderr)
    holder.kill('SIGKILL')
    await eventually(
      'removed everywhere',
      () => !endpointIps('n1').includes(c.ip) && attachments('n1').length === 0 && attachments('n2').length === 0,
      30_000,
    )
  })
})
