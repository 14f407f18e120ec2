// A 3-node lab, for real: agents gossiping over the lab's switch, tasks in
// their own namespaces, traffic between them through the XDP/tc programs.
import assert from 'node:assert/strict'
import {describe, test} from 'node:test'
import {spawn} from 'node:child_process'
import {closeSync, openSync} from 'node:fs'
import {BIN, cli, eventually, inNs, json, ok, sh} from './helpers.js'
import {joinFromClient, withLab} from './lab.js'
import {allRunning} from './service-tasks.js'
import {LAYOUT_VERSION} from '../../src/bpf/upgrade.js'

interface Task {
  id: string
  name: string
  node: string
  state: string
  netns: string
  pid: number
  restarts: number
  addresses: {network: string; ip: string}[]
}
interface Net {
  name: string
  subnet: string
  vni: number
  mtu: number
  peers: {node: string}[]
  endpoints: {ip: string; node: string}[]
}
type Stats = Record<string, string>

const stats = (node: string): Stats =>
  json<{maps: {entries: {value: Stats}[]}[]}>(undefined, ['inspect', 'maps', '--host', node, '--map', 'sn_stats']).maps[0]!
    .entries[0]!.value

const tasksOf = (svc: string) => json<Task[]>('n1', ['service', 'ps', svc]).filter((t) => t.state !== 'shutdown')

const running = (svc: string, n: number) => allRunning(svc, n, tasksOf, 30_000)

describe('overlay networks across a 3-node lab', {timeout: 600_000}, () => {
  let web: Task[] = []
  const on = (node: string) => web.find((t) => t.node === node)!
  const ipOf = (t: Task) => t.addresses[0]!.ip

  withLab(['--nodes', '3'])

  test('every node knows every node, as ready', async () => {
    for (const n of ['n1', 'n2', 'n3']) {
      await eventually(`${n} sees 3 ready nodes`, () => {
        const nodes = json<{name: string; state: string}[]>(n, ['node', 'ls'])
        return nodes.length === 3 && nodes.every((x) => x.state === 'ready')
      })
    }
  })

  test('network create: VNI from 4096 up, a /24 from the pool, refusals are one clear line', async () => {
    const a = JSON.parse(ok('n1', ['network', 'create', 'neta', '--json'])) as Net
    assert.equal(a.vni, 4097) // 4096 is the ingress network's
    assert.match(a.subnet, /^10\.0\.\d+\.0\/24$/)
    assert.equal(a.mtu, 1450)
    ok('n1', ['network', 'create', '--subnet', '10.20.0.0/24', 'netb'])
    for (const [args, msg] of [
      [['network', 'create', 'neta'], /already exists/],
      [['network', 'create', '--subnet', '10.20.0.128/25', 'netc'], /overlap/],
      [['network', 'create', '--subnet', '10.0.0.0/33', 'netd'], /invalid CIDR/],
      [['network', 'create', '--bogus', 'x'], /Nonexistent flag/],
    ] as const) {
      const r = cli('n1', [...args])
      assert.notEqual(r.code, 0)
      assert.match(r.stderr, msg)
      assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`)
    }
    // Every node learns of them within a second or so.
    await eventually('n3 knows netb', () => json<Net[]>('n3', ['network', 'ls']).some((n) => n.name === 'netb'))
  })

  test('a 3-replica service spreads over the 3 nodes', async () => {
    ok('n1', ['service', 'create', '--name', 'web', '--replicas', '3', '--network', 'neta'])
    web = await running('web', 3)
    assert.deepEqual(web.map((t) => t.node).sort(), ['n1', 'n2', 'n3'])
    const net = json<Net>('n2', ['network', 'inspect', 'neta'])
    assert.equal(net.endpoints.length, 3)
    assert.deepEqual(net.peers.map((p) => p.node).sort(), ['n1', 'n2', 'n3'])
  })

  test('ICMP from a task on n1 to tasks on n2 and n3', () => {
    for (const to of ['n2', 'n3']) {
      const r = inNs(on('n1').netns, ['ping', '-c', '2', '-W', '2', ipOf(on(to))])
      assert.equal(r.code, 0, r.stdout + r.stderr)
    }
  })

  test('TCP between tasks across nodes, the caller keeps its address', async () => {
    for (const to of ['n2', 'n3']) {
      // running means the process started; whoami may need a moment more to listen
      const r = await eventually(`HTTP to ${to}`, () => {
        const x = inNs(on('n1').netns, ['curl', '-s', '-m', '5', `http://${ipOf(on(to))}/`])
        return x.code === 0 ? x : undefined
      })
      assert.match(r.stdout, new RegExp(`Hostname: web\\.\\d`))
      assert.match(r.stdout, new RegExp(`RemoteAddr: ${ipOf(on('n1')).replace(/\./g, '\\.')}:`))
    }
  })

  test('UDP between tasks across nodes', () => {
    const server = on('n3')
    const echo = `const s=require('dgram').createSocket('udp4');s.on('message',(m,r)=>s.send(Buffer.concat([Buffer.from('echo:'),m]),r.port,r.address,()=>process.exit(0)));s.bind(9999);setTimeout(()=>process.exit(3),10000)`
    const log = openSync('/dev/null', 'w')
    const srv = spawn('nsenter', [`--net=/run/netns/${server.netns}`, '--', process.execPath, '-e', echo], {
      stdio: ['ignore', log, log],
    })
    closeSync(log)
    try {
      const client = `const s=require('dgram').createSocket('udp4');s.on('message',m=>{console.log(m.toString());process.exit(0)});const go=()=>s.send('ping-udp',9999,${JSON.stringify(ipOf(server))});setInterval(go,300);go();setTimeout(()=>process.exit(4),5000)`
      const r = inNs(on('n1').netns, [process.execPath, '-e', client])
      assert.equal(r.code, 0, r.stderr)
      assert.equal(r.stdout.trim(), 'echo:ping-udp')
    } finally {
      srv.kill()
    }
  })

  test("on the wire between nodes it is standard VXLAN on 4789 with the network's VNI", async () => {
    const vni = json<Net>('n1', ['network', 'inspect', 'neta']).vni
    const cap = spawn(
      'nsenter',
      [
        '--net=/run/netns/sn-lab-n2',
        '--',
        'tshark',
        '-i',
        'eth0',
        '-n',
        '-c',
        '2',
        '-a',
        'duration:15',
        '-f',
        // VXLAN frames (I flag set): the nodes' liveness probes share the port and have it clear
        'udp port 4789 and udp[8] & 0x08 != 0',
        '-T',
        'fields',
        '-e',
        'udp.dstport',
        '-e',
        'vxlan.vni',
        '-e',
        'ip.src',
        '-e',
        'ip.dst',
      ],
      {stdio: ['ignore', 'pipe', 'pipe']},
    )
    let out = ''
    cap.stdout.on('data', (d: Buffer) => (out += d.toString()))
    let done = false
    const exited = new Promise((r) => cap.on('close', () => r((done = true))))
    // tshark takes a moment to start capturing: ping until it has what it waits for
    while (!done) {
      inNs(on('n1').netns, ['ping', '-c', '1', '-W', '1', ipOf(on('n2'))])
      await new Promise((r) => setTimeout(r, 300))
    }
    await exited
    const lines = out.trim().split('\n').filter(Boolean)
    assert.ok(lines.length >= 1, `captured VXLAN packets: ${out}`)
    for (const l of lines) {
      const [port, vnis, src, dst] = l.split('\t')
      assert.equal(port, '4789')
      // the outer addresses are the nodes', the inner ones the tasks'
      assert.equal(vnis, String(vni))
      assert.ok(
        src!.split(',').some((a) => a.startsWith('172.30.0.')),
        l,
      )
      assert.ok(
        dst!.split(',').some((a) => a === ipOf(on('n2')) || a === ipOf(on('n1'))),
        l,
      )
    }
  })

  test('networks are isolated: nothing crosses from one VNI to another', async () => {
    ok('n1', ['service', 'create', '--name', 'other', '--replicas', '1', '--network', 'netb', '--', 'sleep', 'infinity'])
    const [o] = await running('other', 1)
    const target = web.find((t) => t.node !== o!.node)!
    const before = stats(o!.node).tc_no_endpoint
    // Even with a route that says the other subnet is on its link, the task gets nowhere.
    assert.equal(inNs(o!.netns, ['ip', 'route', 'add', '10.0.0.0/8', 'dev', 'eth0']).code, 0)
    assert.notEqual(inNs(o!.netns, ['ping', '-c', '2', '-W', '1', ipOf(target)]).code, 0)
    assert.ok(BigInt(stats(o!.node).tc_no_endpoint) > BigInt(before), 'the drops are counted')
    assert.equal(inNs(target.netns, ['ip', 'route', 'add', '10.20.0.0/24', 'dev', 'eth0']).code, 0)
    assert.notEqual(inNs(target.netns, ['ping', '-c', '1', '-W', '1', o!.addresses[0]!.ip]).code, 0)
  })

  test('MTU: a 1450-byte packet with DF crosses, a 1451-byte one does not', () => {
    const to = ipOf(on('n2'))
    assert.equal(inNs(on('n1').netns, ['ping', '-c', '1', '-W', '2', '-M', 'do', '-s', '1422', to]).code, 0)
    assert.notEqual(inNs(on('n1').netns, ['ping', '-c', '1', '-W', '2', '-M', 'do', '-s', '1423', to]).code, 0)
  })

  test('a task whose process exits is restarted', async () => {
    const t = on('n2')
    process.kill(t.pid, 'SIGKILL')
    const again = await eventually('a new pid for the task', () => {
      const x = tasksOf('web').find((y) => y.id === t.id)
      return x && x.state === 'running' && x.pid !== t.pid ? x : undefined
    })
    assert.ok(again.restarts >= 1)
    await eventually(
      'the restarted whoami answers',
      () => inNs(on('n1').netns, ['curl', '-s', '-m', '5', `http://${ipOf(t)}/`]).code === 0,
    )
  })

  test('the data plane keeps forwarding while the agent is down; a restarted agent adopts its tasks', async () => {
    const pid = Number(sh(['cat', '/run/swarmnet/n2.pid']).stdout.trim())
    process.kill(pid, 'SIGKILL')
    // At once: within a second or two the others' failure detectors declare n2 down (its agent
    // answers their probes) and take its endpoints out of their maps; its tasks stay put unless
    // it stays down longer than the reschedule delay.
    const r = inNs(on('n1').netns, ['curl', '-s', '-m', '1', `http://${ipOf(on('n2'))}/`])
    assert.equal(r.code, 0, 'forwarding to a task on a node whose agent is dead')
    await eventually('agent n2 gone', () => cli('n2', ['node', 'ls']).code !== 0)

    // Meanwhile the cluster changes; the restarted agent must catch up.
    ok('n1', ['network', 'create', 'while-away'])
    const taskPid = tasksOf('web').find((t) => t.node === 'n2')!.pid
    const log = openSync('/var/lib/swarmnet/n2/agent.log', 'a')
    const a = spawn('nsenter', ['--net=/run/netns/sn-lab-n2', '--', process.execPath, BIN, 'agent', '--node', 'n2'], {
      detached: true,
      stdio: ['ignore', log, log],
    })
    a.unref()
    closeSync(log)
    await eventually('agent n2 back', () => cli('n2', ['node', 'ls']).code === 0)
    await eventually('n2 learned what it missed', () => json<Net[]>('n2', ['network', 'ls']).some((n) => n.name === 'while-away'))
    const after = tasksOf('web').find((t) => t.node === 'n2')!
    assert.equal(after.pid, taskPid, 'the task kept running and was adopted, not restarted')
    assert.equal(inNs(on('n1').netns, ['curl', '-s', '-m', '5', `http://${ipOf(after)}/`]).code, 0)
  })

  test('inspect maps decodes the live entries: addresses as addresses, flags by name', () => {
    const dump = json<{maps: {name: string; entries: {key: Record<string, unknown>; value: Record<string, unknown>}[]}[]}>(
      undefined,
      ['inspect', 'maps', '--host', 'n1', '--map', 'sn_endpoints'],
    )
    const eps = dump.maps[0]!.entries
    const mine = eps.find((e) => e.key.ip === ipOf(on('n1')))!
    assert.equal(mine.value.node_ip, '172.30.0.11')
    assert.match(String(mine.value.flags), /LOCAL/)
    assert.equal(
      mine.value.mac,
      `02:42:${ipOf(on('n1'))
        .split('.')
        .map((b) => Number(b).toString(16).padStart(2, '0'))
        .join(':')}`,
    )
    const remote = eps.find((e) => e.key.ip === ipOf(on('n3')))!
    assert.equal(remote.value.node_ip, '172.30.0.13')
    // The pins carry BTF: bpftool names the fields without us (maps of layout N are pinned in vN/).
    const dumped = sh(['bpftool', '-j', 'map', 'dump', 'pinned', `/sys/fs/bpf/swarmnet/n1/v${LAYOUT_VERSION}/sn_endpoints`])
    assert.equal(dumped.code, 0, dumped.stderr)
    assert.match(dumped.stdout, /"formatted":\{"key":\{"vni":\d+,"ip":\d+\},"value":\{"node_ip":\d+,"ifindex":\d+,"mac":\[/)
    const bad = cli(undefined, ['inspect', 'maps', '--host', 'n1', '--map', 'nope'])
    assert.notEqual(bad.code, 0)
    assert.match(bad.stderr, /no map named 'nope'/)
  })

  test('join with a bad token is refused and leaves nothing', () => {
    const token = ok('n1', ['swarm', 'join-token', '-q']).trim()
    const bad = token.slice(0, -5) + (token.endsWith('aaaaa') ? 'bbbbb' : 'aaaaa')
    const r = joinFromClient('intruder', bad)
    assert.notEqual(r.code, 0)
    assert.match(r.stderr, /join refused: invalid join token/)
    assert.equal(sh(['ls', '/var/lib/swarmnet/intruder']).code === 0, false, 'no state for a refused join')
  })

  test('global mode runs one task on every node; task exec runs in the task', async () => {
    ok('n1', ['service', 'create', '--name', 'probe', '--mode', 'global', '--network', 'netb', '--', 'sleep', 'infinity'])
    const probes = await running('probe', 3)
    assert.deepEqual(probes.map((t) => t.node).sort(), ['n1', 'n2', 'n3'])
    const r = cli('n3', ['task', 'exec', probes[0]!.id.slice(0, 8), '--', 'ip', '-4', '-o', 'addr', 'show', 'eth0'])
    assert.equal(r.code, 0, r.stderr)
    assert.ok(r.stdout.includes(probes[0]!.addresses[0]!.ip + '/24'), r.stdout)
    ok('n1', ['service', 'rm', 'probe'])
  })

  test('a rotated join token replaces the old one', () => {
    const old = ok('n1', ['swarm', 'join-token', '-q']).trim()
    const fresh = ok('n1', ['swarm', 'join-token', '--rotate', '-q']).trim()
    assert.notEqual(fresh, old)
    assert.match(fresh, /^SWMTKN-1-[0-9a-z]{50}-[0-9a-z]{25}$/)
    const r = joinFromClient('late', old)
    assert.notEqual(r.code, 0)
    assert.match(r.stderr, /join refused: invalid join token/)
  })

  test('network rm is refused while in use; service scale and rm clean up', async () => {
    const r = cli('n1', ['network', 'rm', 'neta'])
    assert.notEqual(r.code, 0)
    assert.match(r.stderr, /in use/)
    ok('n1', ['service', 'scale', 'web=1'])
    await running('web', 1)
    ok('n1', ['service', 'rm', 'web'])
    await eventually(
      'web tasks gone',
      () => tasksOf('other').length === 1 && json<unknown[]>('n1', ['service', 'ls']).length === 1,
    )
    await eventually('their namespaces removed', () => web.every((t) => sh(['ip', 'netns', 'list']).stdout.indexOf(t.netns) < 0))
    ok('n1', ['network', 'rm', 'neta'])
  })

  test('leave: the node stops its tasks, detaches its programs, forgets its state; its tasks move', async () => {
    ok('n1', ['service', 'scale', 'other=3'])
    assert.deepEqual((await running('other', 3)).map((t) => t.node).sort(), ['n1', 'n2', 'n3'])
    const refused = cli('n1', ['leave'])
    assert.notEqual(refused.code, 0)
    assert.match(refused.stderr, /manager .* --force/)
    const leaver = 'n3'
    ok(leaver, ['leave'])
    await eventually(
      `${leaver} marked left`,
      () => json<{name: string; state: string}[]>('n1', ['node', 'ls']).find((n) => n.name === leaver)?.state === 'left',
    )
    assert.equal(sh(['ls', `/sys/fs/bpf/swarmnet/${leaver}`]).code === 0, false, 'pins removed')
    assert.equal(sh(['ls', `/var/lib/swarmnet/${leaver}`]).code === 0, false, 'state removed')
    assert.equal(
      sh(['ip', 'netns', 'list'])
        .stdout.split('\n')
        .some((l) => l.startsWith(`sn-${leaver}.`)),
      false,
      'task namespaces removed',
    )
    assert.equal(
      inNs(`sn-lab-${leaver}`, ['ip', '-d', 'link', 'show', 'eth0']).stdout.includes('xdp'),
      false,
      'XDP detached from the underlay',
    )
    const moved = await running('other', 3)
    assert.ok(
      moved.every((t) => t.node !== leaver),
      'the manager placed its tasks on nodes that are still there',
    )
  })
})
