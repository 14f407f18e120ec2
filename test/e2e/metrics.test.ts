// The agent's Prometheus endpoint, scraped in a 2-node lab from inside a node's namespace (each
// node's 127.0.0.1:9323 is its own), parsed, and checked: names and types by the conventions,
// counters that rise with traffic; `swarmnet top` shows the same; --metrics-addr '' turns it off.
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {closeSync, openSync} from 'node:fs'
import {before, describe, test} from 'node:test'
import {parseExposition, sumOf, type Exposition} from '../../src/metrics/parse.js'
import {BIN, cli, eventually, inNs, json, ok, sh} from './helpers.js'
import {withLab} from './lab.js'

interface Task {
  node: string
  state: string
  netns: string
  addresses: {network: string; ip: string}[]
}

function scrape(node: string, addr = '127.0.0.1:9323'): Exposition {
  const r = inNs(`sn-lab-${node}`, ['curl', '-sf', '-m', '5', `http://${addr}/metrics`])
  if (r.code !== 0) throw new Error(`scraping ${node}: curl exit ${r.code}`)
  return parseExposition(r.stdout)
}

describe('metrics: /metrics on every node, 2-node lab', {timeout: 300_000}, () => {
  let tasks: Task[]

  withLab(['--nodes', '2'])
  before(async () => {
    ok('n1', ['network', 'create', 'm'])
    ok('n1', ['service', 'create', '--name', 'web', '--mode', 'global', '--network', 'm'])
    tasks = await eventually(
      'a running task on each node',
      () => {
        const t = json<Task[]>('n1', ['service', 'ps', 'web']).filter((x) => x.state === 'running')
        return t.length === 2 ? t : undefined
      },
      60_000,
    )
  })

  test('names, types and help follow the conventions', () => {
    const e = scrape('n1')
    const names = [...e.types.keys()]
    for (const [name, type] of e.types) {
      assert.match(name, /^swarmnet_[a-z0-9_]+$/, name)
      assert.ok(e.help.get(name), `${name} has help`)
      if (type === 'counter') assert.match(name, /_total$/, `counter ${name}`)
      else assert.doesNotMatch(name, /_total$/, `${type} ${name}`)
    }
    const want: [string, string][] = [
      ['swarmnet_datapath_packets_total', 'counter'],
      ['swarmnet_bpf_map_entries', 'gauge'],
      ['swarmnet_bpf_map_max_entries', 'gauge'],
      ['swarmnet_network_endpoints', 'gauge'],
      ['swarmnet_gossip_messages_received_total', 'counter'],
      ['swarmnet_gossip_sent_bytes_total', 'counter'],
      ['swarmnet_gossip_messages_dropped_total', 'counter'],
      ['swarmnet_gossip_entries_refused_total', 'counter'],
      ['swarmnet_cluster_nodes', 'gauge'],
      ['swarmnet_tasks', 'gauge'],
      ['swarmnet_task_restarts_total', 'counter'],
      ['swarmnet_reconcile_duration_seconds', 'histogram'],
      ['swarmnet_reconcile_errors_total', 'counter'],
      ['swarmnet_processes_started_total', 'counter'],
    ]
    for (const [n, t] of want) assert.equal(e.types.get(n), t, `${n} in ${names.join(' ')}`)
    // Every series names its node; every program's counter is there, zero or not.
    assert.ok(e.samples.every((s) => s.labels.node === 'n1'))
    const results = e.samples.filter((s) => s.name === 'swarmnet_datapath_packets_total')
    assert.ok(results.some((s) => s.labels.program === 'xdp_underlay' && s.labels.result === 'decap'))
    assert.ok(results.some((s) => s.labels.program === 'tc_task' && s.labels.result === 'encap'))
    assert.equal(sumOf(e, 'swarmnet_cluster_nodes', {state: 'ready'}), 2)
    assert.equal(sumOf(e, 'swarmnet_tasks', {state: 'running'}), 1)
    assert.equal(sumOf(e, 'swarmnet_network_endpoints', {network: 'm', location: 'local'}), 1)
    assert.equal(sumOf(e, 'swarmnet_network_endpoints', {network: 'm', location: 'remote'}), 1)
    assert.ok(sumOf(e, 'swarmnet_bpf_map_entries', {map: 'sn_endpoints'}) >= 2)
    assert.ok(sumOf(e, 'swarmnet_bpf_map_max_entries', {map: 'sn_endpoints'}) > 0)
    assert.ok(sumOf(e, 'swarmnet_reconcile_duration_seconds_count', {step: 'maps'}) > 0)
    // Every command the agent ran (its task's runc, ip, nft...) was started by its spawner: the
    // agent forked none itself once the spawner was up, its first act (src/sys/spawner.ts).
    assert.ok(sumOf(e, 'swarmnet_processes_started_total', {via: 'spawner'}) > 0)
    assert.equal(sumOf(e, 'swarmnet_processes_started_total', {via: 'fork'}), 0)
  })

  test('counters rise with traffic: encapsulated on one node, decapsulated on the other', async () => {
    const a = tasks.find((t) => t.node === 'n1')!
    const b = tasks.find((t) => t.node === 'n2')!
    const encap0 = sumOf(scrape('n1'), 'swarmnet_datapath_packets_total', {program: 'tc_task', result: 'encap'})
    const decap0 = sumOf(scrape('n2'), 'swarmnet_datapath_packets_total', {program: 'xdp_underlay', result: 'decap'})
    const gossip0 = sumOf(scrape('n1'), 'swarmnet_gossip_messages_received_total')
    const r = inNs(a.netns, ['ping', '-c', '5', '-i', '0.2', '-W', '2', b.addresses[0]!.ip])
    assert.equal(r.code, 0, r.stdout)
    const n1 = scrape('n1')
    assert.ok(sumOf(n1, 'swarmnet_datapath_packets_total', {program: 'tc_task', result: 'encap'}) >= encap0 + 5)
    assert.ok(sumOf(scrape('n2'), 'swarmnet_datapath_packets_total', {program: 'xdp_underlay', result: 'decap'}) >= decap0 + 5)
    await eventually('gossip goes on', () => sumOf(scrape('n1'), 'swarmnet_gossip_messages_received_total') > gossip0, 10_000)
  })

  test("per service: flows through a VIP raise the service's and its backends' flow gauges on the client's node", async () => {
    ok('n1', ['service', 'create', '--name', 'client', '--network', 'm', '--', 'sleep', 'infinity'])
    const client = await eventually(
      'the client task running',
      () => json<Task[]>('n1', ['service', 'ps', 'client']).find((t) => t.state === 'running'),
      60_000,
    )
    const vip = await eventually('web has a VIP', () =>
      json<{vips: {network: string; ip: string}[]}>('n1', ['service', 'inspect', 'web']).vips.find((v) => v.network === 'm'),
    )
    const before = scrape(client.node)
    assert.equal(before.types.get('swarmnet_service_flows'), 'gauge')
    assert.equal(before.types.get('swarmnet_service_backend_flows'), 'gauge')
    assert.equal(before.types.get('swarmnet_conntrack_entries'), 'gauge')
    assert.equal(sumOf(before, 'swarmnet_service_flows', {service: 'web', network: 'm'}), 0)
    assert.equal(sumOf(before, 'swarmnet_service_backends', {service: 'web', network: 'm'}), 2)
    const ct0 = sumOf(before, 'swarmnet_conntrack_entries')
    const limit = sumOf(before, 'swarmnet_conntrack_entries_limit')
    assert.ok(limit >= 1024, `limit ${limit}`)
    // Three TCP connections to VIP:80 held open until stdin closes, then ended with a FIN.
    const holder = spawn(
      'nsenter',
      [
        `--net=/run/netns/${client.netns}`,
        '--',
        process.execPath,
        '-e',
        `const net = require('node:net')
const socks = []
let up = 0
for (let i = 0; i < 3; i++) {
  const s = net.connect({host: process.env.VIP, port: 80}, () => { if (++up === 3) console.log('ready') })
  s.on('error', (e) => { console.log('error ' + e.code); process.exit(1) })
  socks.push(s)
}
process.stdin.on('end', () => { for (const s of socks) s.end(); setTimeout(() => process.exit(0), 500) }).resume()`,
      ],
      {env: {...process.env, VIP: vip.ip}, stdio: ['pipe', 'pipe', 'inherit']},
    )
    try {
      let out = ''
      holder.stdout.on('data', (d: Buffer) => (out += d.toString()))
      await eventually(
        '3 connections to the VIP open',
        () => (out.includes('error') ? assert.fail(out) : out.includes('ready')),
        15_000,
      )
      const during = scrape(client.node)
      assert.equal(
        sumOf(during, 'swarmnet_service_flows', {service: 'web', network: 'm'}),
        3,
        cli(client.node, ['inspect', 'lb', 'web']).stdout,
      )
      const perBackend = during.samples.filter((x) => x.name === 'swarmnet_service_backend_flows' && x.labels.service === 'web')
      assert.equal(perBackend.length, 2)
      assert.equal(
        perBackend.reduce((n, x) => n + x.value, 0),
        3,
      )
      for (const b of perBackend) {
        assert.match(b.labels.backend!, /^web\./, 'a backend is named by its task')
        assert.ok(['n1', 'n2'].includes(b.labels.backend_node!), b.labels.backend_node)
        assert.equal(b.labels.node, client.node)
      }
      // Both directions of each flow are tracked.
      assert.ok(sumOf(during, 'swarmnet_conntrack_entries') >= ct0 + 6)
      // Ended flows stay counted until the data path marks their FIN (SN_CT_SEEN_FIN, set by the
      // CT reclaim of issue 8, not yet): so no check here that the gauge falls.
    } finally {
      holder.kill()
    }
  })

  test('swarmnet top shows the same numbers, screen after screen, and stops after --count', () => {
    const r = cli('n1', ['top', '--count', '2', '--interval', '300'])
    assert.equal(r.code, 0, r.stderr)
    const screens = r.stdout.split('swarmnet top: node n1').slice(1)
    assert.equal(screens.length, 2)
    assert.match(screens[1]!, /tc_task\s+encap\s+\d+\s+\d+\.\d/, 'a rate on the second screen')
    assert.match(screens[0]!, /sn_endpoints\s+\d+\s+\d+\s+[\d.]+%/)
    assert.match(screens[0]!, /nodes: 2 ready/)
  })

  test("--metrics-addr: refused with one line when malformed, served where asked, off with ''", async () => {
    const bad = cli(undefined, ['agent', '--node', 'n2', '--metrics-addr', '127.0.0.1'])
    assert.notEqual(bad.code, 0)
    assert.match(bad.stderr.trim(), /^swarmnet: invalid --metrics-addr '127.0.0.1'[^\n]*$/)
    const restart = async (addr: string) => {
      const pid = Number(sh(['cat', '/run/swarmnet/n2.pid']).stdout.trim())
      process.kill(pid, 'SIGTERM')
      await eventually('agent n2 gone', () => cli('n2', ['node', 'ls']).code !== 0)
      const log = openSync('/var/lib/swarmnet/n2/agent.log', 'a')
      const a = spawn(
        'nsenter',
        ['--net=/run/netns/sn-lab-n2', '--', process.execPath, BIN, 'agent', '--node', 'n2', '--metrics-addr', addr],
        {
          detached: true,
          stdio: ['ignore', log, log],
        },
      )
      a.unref()
      closeSync(log)
      await eventually('agent n2 back', () => cli('n2', ['node', 'ls']).code === 0, 30_000)
    }
    await restart('127.0.0.1:9400')
    assert.ok(scrape('n2', '127.0.0.1:9400').samples.length > 0)
    assert.throws(() => scrape('n2'))
    await restart('')
    assert.throws(() => scrape('n2', '127.0.0.1:9400'))
    assert.throws(() => scrape('n2'))
    // n1 is untouched: its own endpoint still answers.
    assert.ok(scrape('n1').samples.length > 0)
  })
})
