// An attachment (`network connect`) across `kill -9` of its node's agent and a restart: the
// data plane keeps carrying it while the agent is dead, and the restarted agent adopts the
// same interface (same ifindex in the namespace, not made again) and still manages it; one
// disconnected while its node's agent is dead is removed by that agent when it runs again.
import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import {before, describe, test} from 'node:test'
import {BIN, cli, eventually, inNs, json, ok, sh} from './helpers.js'
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
}

const NS = `snt-red-${process.pid}`
const NS_PATH = `/run/netns/${NS}`
const GREEN = `snt-green-${process.pid}`
const inPath = (argv: string[]) => sh(['nsenter', `--net=${NS_PATH}`, '--', ...argv], {}, 30_000)
const eth0 = () => /^(\d+): eth0@/m.exec(inPath(['ip', '-o', 'link', 'show', 'eth0']).stdout)?.[1]
const agentPid = (node = 'n1') => Number(readFileSync(`/run/swarmnet/${node}.pid`, 'utf8').trim())
const alive = (pid: number) => sh(['kill', '-0', String(pid)]).code === 0

describe('an attachment across kill -9 of the agent and its restart, 2-node lab', {timeout: 300_000}, () => {
  let remote: Task
  let local: Task

  withLab(['--nodes', '2'], {beforeDown: () => [NS, GREEN].forEach((ns) => sh(['ip', 'netns', 'del', ns]))})
  before(async () => {
    ok('n1', ['network', 'create', '--attachable', 'att'])
    ok('n1', ['service', 'create', '--name', 'web', '--mode', 'global', '--network', 'att'])
    remote = await runningOn<Task>('web', 'n2')
    local = await runningOn<Task>('web', 'n1')
  })

  test('carried while the agent is dead, adopted (same interface) by the restarted agent, still disconnectable', async () => {
    assert.equal(sh(['ip', 'netns', 'add', NS]).code, 0)
    const a = json<Att>('n1', ['network', 'connect', 'att', '--netns', NS_PATH, '--name', 'red'])
    const taskIp = remote.addresses[0]!.ip
    await eventually(
      'the namespace reaches the task on n2',
      () => inPath(['ping', '-c', '1', '-W', '2', taskIp]).code === 0,
      30_000,
    )
    const ifindex = eth0()
    assert.ok(ifindex, 'eth0 in the namespace')

    const pid = agentPid()
    process.kill(pid, 'SIGKILL')
    await eventually('agent n1 dead', () => !alive(pid))
    // The data plane is the kernel's: no agent needed for packets on the node. (Across nodes
    // the others' failure detector soon declares this node down and drops its endpoints: by design.)
    const localIp = local.addresses[0]!.ip
    assert.equal(inPath(['ping', '-c', '2', '-W', '2', localIp]).code, 0, 'carried while the agent is dead')
    assert.equal(inNs(local.netns, ['ping', '-c', '1', '-W', '2', a.ip]).code, 0, 'reached while the agent is dead')

    const start = cli(undefined, ['lab', 'exec', 'n1', '--', process.execPath, BIN, 'agent', '--node', 'n1', '--detach'])
    assert.equal(start.code, 0, start.stderr)
    await eventually('agent n1 answers', () => cli('n1', ['network', 'ls']).code === 0, 30_000)
    // Give the restarted agent's reconcile a pass over the attachment, then look: the same link.
    await eventually('the attachment attached after the restart', () =>
      json<{attachments: Att[]}>('n1', ['network', 'inspect', 'att']).attachments.find(
        (x) => x.name === 'red' && x.state === 'attached',
      ),
    )
    await new Promise((r) => setTimeout(r, 2000))
    assert.equal(eth0(), ifindex, 'the same interface: adopted, not made again')
    // Across nodes again once n2 sees n1 alive.
    await eventually('the task on n2 reached again', () => inPath(['ping', '-c', '1', '-W', '2', taskIp]).code === 0, 30_000)
    const http = inPath(['curl', '-s', '-m', '5', `http://${taskIp}/`])
    assert.equal(http.code, 0, http.stderr)
    assert.match(http.stdout, /Hostname: web\./)
    assert.equal(inNs(remote.netns, ['ping', '-c', '1', '-W', '2', a.ip]).code, 0)

    // The restarted agent manages it: disconnect removes the interface it adopted.
    ok('n1', ['network', 'disconnect', 'att', 'red'])
    await eventually('its interface gone', () => eth0() === undefined, 15_000)
  })

  test("disconnected while its node's agent is dead: said in one line, and the restarted agent removes the interface", async () => {
    assert.equal(sh(['ip', 'netns', 'add', GREEN]).code, 0)
    const eth0Of = () => sh(['ip', '-n', GREEN, '-br', 'link', 'show', 'dev', 'eth0']).stdout.trim()
    const a = json<Att>('n1', ['network', 'connect', 'att', '--netns', `/run/netns/${GREEN}`, '--node', 'n2', '--name', 'green'])
    assert.equal(a.state, 'attached')
    assert.notEqual(eth0Of(), '')

    const pid = agentPid('n2')
    process.kill(pid, 'SIGKILL')
    await eventually('agent n2 dead', () => !alive(pid))
    const r = cli('n1', ['network', 'disconnect', 'att', 'green', '--timeout', '3'])
    assert.notEqual(r.code, 0)
    assert.match(
      r.stderr.trim(),
      /^swarmnet: node n2 did not remove the interface of green within 3 s \(is its agent running\?\)[^\n]*$/,
    )
    assert.deepEqual(json<{attachments: Att[]}>('n1', ['network', 'inspect', 'att']).attachments, [], 'removed all the same')
    assert.notEqual(eth0Of(), '', 'nobody removed the interface: its agent is dead')

    const start = cli(undefined, ['lab', 'exec', 'n2', '--', process.execPath, BIN, 'agent', '--node', 'n2', '--detach'])
    assert.equal(start.code, 0, start.stderr)
    await eventually('the restarted agent removes the interface', () => eth0Of() === '', 30_000)
    assert.deepEqual(
      sh(['ip', '-n', 'sn-lab-n2', '-br', 'link'])
        .stdout.split('\n')
        .filter((l) => l.startsWith('sn-x')),
      [],
    )
  })
})
