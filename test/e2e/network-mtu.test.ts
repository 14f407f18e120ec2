// One MTU per network, end to end in a 2-node lab: `network create --mtu`
// puts it in the store; every node gives it to its tasks' interfaces and to
// its sn_networks map, whatever its own underlay; the programs hold frames to it.
import assert from 'node:assert/strict'
import {describe, test} from 'node:test'
import {cli, eventually, inNs, json, ok} from './helpers.js'
import {withLab} from './lab.js'

interface Task {
  node: string
  state: string
  netns: string
  addresses: {network: string; ip: string}[]
}

describe('network MTU across a 2-node lab', {timeout: 300_000}, () => {
  withLab(['--nodes', '2'])

  test('--mtu out of range is refused with one line, and nothing is made', () => {
    for (const mtu of ['575', '8951', 'big']) {
      const r = cli('n1', ['network', 'create', '--mtu', mtu, 'bad'])
      assert.notEqual(r.code, 0)
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr)
    }
    assert.ok(!json<{name: string}[]>('n1', ['network', 'ls']).some((n) => n.name === 'bad'))
  })

  test('a network of MTU 1400: the tasks on both nodes get it, both maps hold it, frames are held to it', async () => {
    const net = json<{vni: number; mtu: number}>('n1', ['network', 'create', '--mtu', '1400', 'small'])
    assert.equal(net.mtu, 1400)
    ok('n1', ['service', 'create', '--name', 'smallsvc', '--replicas', '2', '--network', 'small'])
    const tasks = await eventually(
      '2 running tasks on 2 nodes',
      () => {
        const t = json<Task[]>('n1', ['service', 'ps', 'smallsvc']).filter((x) => x.state === 'running')
        return t.length === 2 && new Set(t.map((x) => x.node)).size === 2 ? t : undefined
      },
      60_000,
    )
    for (const t of tasks) {
      const link = JSON.parse(inNs(t.netns, ['ip', '-j', 'link', 'show', 'eth0']).stdout) as {mtu: number}[]
      assert.equal(link[0]?.mtu, 1400, `${t.node}: the task's eth0`)
      const maps = json<{maps: {entries: {key: number | string; value: {mtu: number}}[]}[]}>(undefined, [
        'inspect',
        'maps',
        '--host',
        t.node,
        '--map',
        'sn_networks',
      ])
      const entry = maps.maps[0]!.entries.find((e) => Number(e.key) === net.vni)
      assert.equal(entry?.value.mtu, 1400, `${t.node}: sn_networks[${net.vni}]`)
    }
    const [a, b] = tasks as [Task, Task]
    const to = b.addresses[0]!.ip
    await eventually(
      'a 1400-byte DF ping crosses',
      () => inNs(a.netns, ['ping', '-c', '1', '-W', '2', '-M', 'do', '-s', '1372', to]).code === 0,
      30_000,
    )
    const over = inNs(a.netns, ['ping', '-c', '1', '-W', '2', '-M', 'do', '-s', '1373', to])
    assert.notEqual(over.code, 0)
    assert.match(over.stdout + over.stderr, /mtu ?= ?1400/i)
  })
})
