/**
 * The task runner inside a lab node. The runner works on the current namespace (the agent runs
 * in its node's), so this file runs itself a second time inside sn-lab-n1: the outer run builds
 * and removes the lab, the inner run (SN_TASKS_INNER=1) is the test proper.
 */
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {after, before, test} from 'node:test'
import {fileURLToPath} from 'node:url'
import {labDown, labUp} from '../../src/lab/lab.js'
import {getLink, listAddresses} from '../../src/sys/link.js'
import {cgroup2Root, removeCgroupTree, removeIfEmpty} from '../../src/sys/cgroup.js'
import {run} from '../../src/sys/exec.js'
import {execIn, netnsExists, netnsPath, nsenterArgv} from '../../src/sys/netns.js'
import {isAlive, procsInNetns} from '../../src/sys/proc.js'
import {ensureGwBridge, GWBRIDGE_IF, removeGwBridge} from '../../src/tasks/gwbridge.js'
import {
  createTaskSandbox,
  destroyTaskSandbox,
  type Sandbox,
  startTaskProcess,
  stopTaskProcess,
  taskNetnsName,
} from '../../src/tasks/runner.js'
import {Supervisor, type SupervisorEvent} from '../../src/tasks/supervisor.js'
import {removeNodeContainers} from '../../src/tasks/container.js'

const self = fileURLToPath(import.meta.url)
const repo = fileURLToPath(new URL('../..', import.meta.url))

function spawnCollect(argv: string[], env: NodeJS.ProcessEnv): Promise<{code: number | null; out: string}> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), {env, cwd: repo, stdio: ['ignore', 'pipe', 'pipe']})
    let out = ''
    child.stdout.on('data', (b: Buffer) => (out += b.toString()))
    child.stderr.on('data', (b: Buffer) => (out += b.toString()))
    child.on('error', reject)
    child.on('close', (code) => resolve({code, out}))
  })
}

if (process.env.SN_TASKS_INNER !== '1') {
  let ours = false
  // A lab that is already up belongs to someone else: labUp refuses it and we leave it alone.
  before(async () => {
    await labUp({nodes: 1, startNode: async () => undefined})
    ours = true
  })
  after(async () => {
    if (ours) await labDown()
  })
  test('task runner inside node n1', {timeout: 120_000}, async (t) => {
    const argv = nsenterArgv('sn-lab-n1', [process.execPath, '--import', 'tsx', '--test-reporter=tap', self])
    // Without NODE_TEST_CONTEXT the inner run reports TAP of its own instead of talking to our runner.
    const {NODE_TEST_CONTEXT: _, ...env} = process.env
    const {code, out} = await spawnCollect(argv, {...env, SN_TASKS_INNER: '1'})
    assert.equal(code, 0, `inner run failed:\n${out}`)
    for (const line of out.split('\n').filter((l) => /^(ok|not ok) /.test(l))) t.diagnostic(`inner: ${line}`)
    assert.match(out, /^# pass [1-9]/m)
    assert.match(out, /^# fail 0$/m)
  })
} else {
  inner()
}

function inner(): void {
  const node = 'n1'
  const idA = 'aaaaaaaa1111222233334444'
  const idB = 'bbbbbbbb3333444455556666'
  const nsA = taskNetnsName(node, idA)
  const nsB = taskNetnsName(node, idB)
  const logDir = mkdtempSync(join(tmpdir(), 'sn-tasks-'))
  const sandboxes: Sandbox[] = []
  // Task ids whose cgroups (swarmnet/n1/<id>) this test made.
  const started = new Set<string>()
  const OUTSIDE = 'cccccccc55556666cccccccc'
  const moved: [string, string, boolean][] = []
  const events: SupervisorEvent[] = []
  const supervisor = new Supervisor({pollMs: 100, onEvent: (e) => events.push(e)})

  before(async () => {
    await ensureGwBridge()
    for (const [id, ns, n] of [
      [idA, nsA, 2],
      [idB, nsB, 3],
    ] as const) {
      sandboxes.push(
        await createTaskSandbox({
          node,
          taskId: id,
          netns: ns,
          attachments: [
            {hostIf: `sn-${id.slice(0, 8)}-0`, ip: `10.0.1.${n}`, prefixLen: 24, mac: `02:42:0a:00:01:0${n}`, mtu: 1450},
          ],
          gw: {ip: `172.18.0.${n}`, prefixLen: 16, gatewayIp: '172.18.0.1', hostIf: `sn-${id.slice(0, 8)}-g`},
          hooks: {
            beforeMove: async (hostIf, peerIf) => void moved.push([hostIf, peerIf, (await getLink(peerIf)) !== undefined]),
          },
        }),
      )
    }
  })

  after(async () => {
    supervisor.stop()
    for (const id of started) await stopTaskProcess(node, id, undefined, 0)
    // runc's state and the node's level of the v1 cgroup hierarchies it made.
    await removeNodeContainers(node)
    for (const s of sandboxes) await destroyTaskSandbox(s.netns, s.hostIfs)
    removeCgroupTree(join(cgroup2Root(), 'swarmnet', node))
    removeIfEmpty(join(cgroup2Root(), 'swarmnet'))
    await removeGwBridge()
    rmSync(logDir, {recursive: true, force: true})
  })

  test('the XDP hook sees the peer in the node namespace before the move', () => {
    // Each task's overlay veth and its gateway-bridge veth: both task ends get XDP before the move.
    assert.equal(moved.length, 4)
    assert.deepEqual(
      moved.map(([hostIf]) => hostIf).sort(),
      [idA, idB].flatMap((id) => [`sn-${id.slice(0, 8)}-0`, `sn-${id.slice(0, 8)}-g`]).sort(),
    )
    for (const [hostIf, peerIf, present] of moved) {
      assert.match(hostIf, /^sn-/)
      assert.ok(peerIf.length <= 15 && peerIf.startsWith('sn-'))
      assert.equal(present, true)
    }
  })

  test('the task namespace has its veths with MTU, MAC, addresses and the default route', async () => {
    const s = sandboxes[0]!
    assert.deepEqual(
      s.attachments.map((a) => a.ifname),
      ['eth0'],
    )
    assert.equal(s.gw?.ifname, 'eth1')
    const eth0 = await getLink('eth0', nsA)
    assert.equal(eth0?.mtu, 1450)
    assert.equal(eth0?.address, '02:42:0a:00:01:02')
    assert.equal(eth0?.operstate, 'UP')
    assert.deepEqual(await listAddresses('eth0', nsA), ['10.0.1.2/24'])
    const eth1 = await getLink('eth1', nsA)
    assert.equal(eth1?.address, '02:42:ac:12:00:02')
    assert.deepEqual(await listAddresses('eth1', nsA), ['172.18.0.2/16'])
    assert.match(await execIn(nsA, ['ip', 'route', 'show', 'default']), /default via 172\.18\.0\.1 dev eth1/)
    const host = await getLink(s.attachments[0]!.hostIf)
    assert.equal(host?.ifindex, s.attachments[0]!.hostIfindex)
    assert.equal(host?.mtu, 1450)
    assert.equal((await getLink(s.gw!.hostIf))?.master, GWBRIDGE_IF)
  })

  test('a task reaches the outside through the gwbridge with the node address as source', async () => {
    await execIn(nsA, ['ping', '-c1', '-W1', '172.30.0.100'], 'pinging the client from a task')
    const whoami = `import(${JSON.stringify(join(repo, 'src/whoami/server.ts'))}).then((m) => m.startWhoami({ port: 8080 }))`
    started.add(OUTSIDE)
    await startTaskProcess({
      node,
      taskId: OUTSIDE,
      netns: 'sn-lab-client',
      name: 'outside',
      ips: [],
      // Tasks start in /, so tsx is named by its path, not looked up from the current directory.
      argv: [process.execPath, '--import', import.meta.resolve('tsx'), '--input-type=module', '-e', whoami],
      env: {SWARMNET_TASK_NAME: 'outside'},
      dir: join(logDir, 'outside'),
    })
    const get = `
      for (let i = 0; i < 50; i++) {
        try { const r = await fetch('http://172.30.0.100:8080/json'); console.log(JSON.stringify(await r.json())); process.exit(0); }
        catch { await new Promise((r) => setTimeout(r, 100)); }
      }
      process.exit(1);`
    const out = await execIn(nsA, [process.execPath, '--input-type=module', '-e', get], 'asking whoami from a task')
    const seen = JSON.parse(out) as {hostname: string; remoteAddr: string}
    assert.equal(seen.hostname, 'outside')
    assert.match(seen.remoteAddr, /^172\.30\.0\.11:\d+$/)
  })

  test('tasks on the gwbridge cannot reach each other (isolated ports)', async () => {
    await assert.rejects(execIn(nsA, ['ping', '-c1', '-W1', '172.18.0.3']))
    await execIn(nsB, ['ping', '-c1', '-W1', '172.18.0.1'], 'pinging the gateway from task B')
  })

  test("nor through the node: a task's packets to another task's gateway-bridge address are dropped (tcp, udp, icmp)", async () => {
    // What reaches task B's interface from either source, by protocol: arrival is the question,
    // not an answer (B's answers to A go on-link and die at the isolated ports anyway).
    const argv = nsenterArgv(nsB, [
      'tshark',
      '-l',
      '-n',
      '-i',
      'eth1',
      '-f',
      'ip and (src host 172.18.0.1 or src host 172.18.0.2)',
      '-T',
      'fields',
      '-e',
      'ip.src',
      '-e',
      'ip.proto',
    ])
    const cap = spawn(argv[0]!, argv.slice(1), {stdio: ['ignore', 'pipe', 'pipe']})
    let seen = ''
    let started = ''
    cap.stdout.on('data', (b: Buffer) => (seen += b.toString()))
    cap.stderr.on('data', (b: Buffer) => (started += b.toString()))
    const arrived = (src: string, proto: number) => seen.split('\n').some((l) => l.trim() === `${src}\t${proto}`)
    const waitFor = async (check: () => boolean) => {
      for (let i = 0; i < 50 && !check(); i++) await new Promise((r) => setTimeout(r, 100))
      return check()
    }
    const tcp = `const c=require('net').connect(7000,'172.18.0.3');c.on('error',()=>{});setTimeout(()=>process.exit(0),1500)`
    const udp = `const s=require('dgram').createSocket('udp4');let n=3;const go=()=>s.send('x',7001,'172.18.0.3',()=>{if(--n>0)setTimeout(go,100);else s.close()});go()`
    const all = async (ns: string | undefined) => {
      const at = (a: string[]) => (ns ? nsenterArgv(ns, a) : a)
      await run(at(['ping', '-c2', '-i0.2', '-W1', '172.18.0.3']), 'pinging B').catch(() => undefined)
      await run(at([process.execPath, '-e', tcp]), 'connecting to B')
      await run(at([process.execPath, '-e', udp]), 'sending to B')
    }
    try {
      assert.ok(await waitFor(() => /Capturing on/.test(started)), `the capture started: ${started}`)
      // The control: the node itself (the bridge's own port) reaches B's address by all three.
      await all(undefined)
      assert.ok(await waitFor(() => [1, 6, 17].every((p) => arrived('172.18.0.1', p))), `B saw the node: ${seen}`)
      // Task A sends to B through its gateway: a route via 172.18.0.1 gives exactly the frames a
      // task with NET_RAW writes itself (B's address, the gateway bridge's MAC), which the bridge
      // hands to the node to route, not to B's isolated port.
      await execIn(nsA, ['ip', 'route', 'add', '172.18.0.3/32', 'via', '172.18.0.1', 'dev', 'eth1'], 'routing A to B')
      try {
        await all(nsA)
        await waitFor(() => [1, 6, 17].some((p) => arrived('172.18.0.2', p)))
        for (const p of [1, 6, 17]) assert.equal(arrived('172.18.0.2', p), false, `protocol ${p} from A reached B: ${seen}`)
        // A still reaches its gateway and the outside world.
        await execIn(nsA, ['ping', '-c1', '-W1', '172.18.0.1'], 'pinging the gateway from task A')
        await execIn(nsA, ['ping', '-c1', '-W1', '172.30.0.100'], 'pinging the client from task A')
      } finally {
        await execIn(nsA, ['ip', 'route', 'del', '172.18.0.3/32'], 'removing the route')
      }
    } finally {
      cap.kill()
    }
  })

  test("the gateway's MAC stays put while bridge ports come and go (tasks' neighbour entries stay right)", async () => {
    const mac = async () => (await getLink(GWBRIDGE_IF))!.address
    assert.equal(await mac(), '02:42:ac:12:00:01', 'derived from the gateway address')
    // A port whose MAC is lower than every other: Linux would give it to an unpinned bridge.
    await run(
      ['ip', 'link', 'add', 'sn-lowmac', 'address', '00:00:00:00:00:01', 'type', 'veth', 'peer', 'name', 'sn-lowmac-p'],
      'adding a low-MAC veth',
    )
    try {
      await run(['ip', 'link', 'set', 'sn-lowmac', 'master', GWBRIDGE_IF, 'up'], 'enslaving it')
      assert.equal(await mac(), '02:42:ac:12:00:01', 'a new port took the bridge its MAC')
    } finally {
      await run(['ip', 'link', 'del', 'sn-lowmac'], 'removing it')
    }
    assert.equal(await mac(), '02:42:ac:12:00:01', 'a removed port took the bridge its MAC')
    await ensureGwBridge()
    assert.equal(await mac(), '02:42:ac:12:00:01', 'ensureGwBridge again changed it')
    // Task B's entry for its gateway is the bridge's MAC: what it sends to the node still arrives.
    await execIn(nsB, ['ping', '-c1', '-W1', '172.18.0.1'], 'pinging the gateway from task B')
    assert.match(await execIn(nsB, ['ip', 'neigh', 'show', '172.18.0.1']), /lladdr 02:42:ac:12:00:01 /)
  })

  test('the supervisor restarts a task whose process died', {timeout: 20_000}, async () => {
    const start = async () => {
      started.add(idA)
      const p = await startTaskProcess({
        node,
        taskId: idA,
        netns: nsA,
        name: 'a.1',
        ips: [],
        argv: ['sleep', '1000'],
        dir: join(logDir, 'a'),
      })
      return p.pid
    }
    const first = await start()
    assert.ok(isAlive(first))
    supervisor.watch(idA, first, start)
    supervisor.start()
    assert.ok(procsInNetns(netnsPath(nsA)).some((p) => p.pid === first))
    process.kill(first, 'SIGKILL')
    while (!events.some((e) => e.type === 'restarted')) await new Promise((r) => setTimeout(r, 50))
    const restarted = events.find((e) => e.type === 'restarted')
    assert.ok(restarted && restarted.type === 'restarted')
    assert.notEqual(restarted.pid, first)
    assert.equal(restarted.restarts, 1)
    assert.ok(isAlive(restarted.pid))
    assert.ok(procsInNetns(netnsPath(nsA)).some((p) => p.pid === restarted.pid))
    assert.deepEqual(events[0], {type: 'exited', taskId: idA, pid: first})
  })

  test('destroy removes the namespace and the host ends, and is idempotent', async () => {
    supervisor.unwatch(idA)
    const s = sandboxes[0]!
    await destroyTaskSandbox(s.netns, s.hostIfs)
    assert.equal(netnsExists(nsA), false)
    for (const h of s.hostIfs) assert.equal(await getLink(h), undefined)
    await destroyTaskSandbox(s.netns, s.hostIfs)
  })
}
