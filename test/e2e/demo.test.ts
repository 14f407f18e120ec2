// `swarmnet lab demo` as a newcomer runs it (npm run demo), its output not a terminal: every line
// of the story is there, and what each line claims is checked against the lab it leaves up (the
// VIP by name, 6 requests over three tasks, the outside fetch through a node with no task keeping
// the client's address, the dead node's measured delays and its task elsewhere, the node back),
// and the commands it suggests work. The demo brings the lab up itself; the lab always goes after.
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {after, before, describe, test} from 'node:test'
import {BIN, cli, json, sh, stateOn} from './helpers.js'
import {labDown} from './lab.js'

interface Task {
  name: string
  node: string
  desiredState: string
  state: string
  addresses: {network: string; ip: string}[]
}
interface Svc {
  vips: {network: string; ip: string}[]
}

const NODES: Record<string, string> = {n1: '172.30.0.11', n2: '172.30.0.12', n3: '172.30.0.13'}
const live = (svc: string) => json<Task[]>('n1', ['service', 'ps', svc]).filter((t) => t.desiredState === 'running')

/** The first match of re in out, its groups; fails naming the line that is missing. */
function line(out: string, re: RegExp, what: string): string[] {
  const m = re.exec(out)
  assert.ok(m, `no line for ${what} (${re}) in the demo's output:\n${out}`)
  return m.slice(1)
}

describe('lab demo: the whole story in a 3-node lab, as a user runs it', {timeout: 400_000}, () => {
  let ran = false
  before(() => {
    assert.ok(
      !/sn-lab-/.test(sh(['ip', 'netns', 'list']).stdout),
      'a lab is already up on this machine: `swarmnet lab down` first',
    )
  })
  // The cut link first, should the demo have stopped between cutting and restoring it.
  after(() => {
    if (ran) labDown({beforeDown: () => sh(['ip', '-n', 'sn-lab-n3', 'link', 'set', 'eth0', 'up'])})
  })

  test('each step has its line, true of the lab it leaves up; the lab is whole afterwards', async () => {
    ran = true
    // As a user's shell runs it, piped: no NO_COLOR (which sh() sets), so plain text must come from stdout not being a terminal.
    const env = {...process.env}
    delete env.NO_COLOR
    delete env.FORCE_COLOR
    const r = spawnSync(process.execPath, [BIN, 'lab', 'demo'], {encoding: 'utf8', env, timeout: 300_000})
    const out = r.stdout ?? ''
    console.log(out.replace(/^/gm, '# '))
    assert.equal(r.status, 0, `lab demo failed: ${r.stderr}\n${out}`)
    assert.doesNotMatch(out, /\x1b\[/, 'no terminal escapes in piped output')

    // 1-3: the lab, the overlay, the service with one task per node.
    line(
      out,
      /^1\. lab: 3 nodes.*\n\s+n1 172\.30\.0\.11, n2 172\.30\.0\.12, n3 172\.30\.0\.13; an outside client at 172\.30\.0\.100/m,
      'the lab',
    )
    line(out, /^2\. overlay network demo: 10\.\d+\.\d+\.0\/24, VXLAN VNI \d+/m, 'the overlay')
    const [placed] = line(out, /^3\. service web: 3 replicas.*\n\s+(web\.1 on n\d .*)$/m, 'the service')
    assert.deepEqual([...placed!.matchAll(/on (n\d)/g)].map((m) => m[1]).sort(), ['n1', 'n2', 'n3'], 'one task per node')

    // 4: by name, the VIP; 6 requests through it over the three tasks.
    const vip = json<Svc>('n1', ['service', 'inspect', 'web']).vips.find((v) => v.network === 'demo')!.ip
    const [probeNode, answer] = line(
      out,
      /^4\. probe\.1 on (n\d) asks for web by name: dig \+short web -> (\S+), web's VIP$/m,
      'the DNS answer',
    )
    assert.equal(answer, vip, "the name's answer is web's VIP")
    assert.equal(live('probe')[0]!.node, probeNode)
    const [to, spread] = line(out, /^\s+6 requests to web \((\S+)\) with curl: ((?:web\.\d x\d(?:, )?)+)/m, 'the 6 requests')
    assert.equal(to, vip)
    const counts = [...spread!.matchAll(/(web\.\d) x(\d)/g)].map((m) => [m[1]!, Number(m[2])] as const)
    assert.equal(new Set(counts.map(([t]) => t)).size, 3, `over three distinct tasks: ${spread}`)
    // The ports were picked from the probe node's table: the data path sends each flow where the table says.
    assert.deepEqual(
      counts.map(([, c]) => c),
      [2, 2, 2],
      `two each, as web's Maglev table sends them: ${spread}`,
    )

    // 5: the outside client through a node with no task of api; the task sees the client itself.
    const [addr, idle] = line(
      out,
      /^\s+outside client 172\.30\.0\.100: curl http:\/\/(172\.30\.0\.\d+):8080\/ \((n\d), no task of api\) -> Hostname: api\.1, RemoteAddr: 172\.30\.0\.100:\d+$/m,
      'the outside fetch',
    )
    assert.equal(NODES[idle!], addr)
    const api = live('api')
    assert.equal(api.length, 1)
    assert.notEqual(api[0]!.node, idle, `${idle} runs no task of api`)

    // 6: n3 killed and cut: the measured delays, and its web task running elsewhere.
    const [downs] = line(
      out,
      /^6\. n3 dies \(kill -9 of its agent, pid \d+; ip -n sn-lab-n3 link set eth0 down\): down on n1, n2 after (\d+\.\d s, \d+\.\d s)$/m,
      'n3 down on the others',
    )
    const [gone, moved, onto, ip, movedIn] = line(
      out,
      /^\s+its endpoints out of their maps on n1, n2 after (\d+\.\d s, \d+\.\d s); (web\.\d) running again on (n[12]) \((\S+)\) after (\d+\.\d) s/m,
      'the endpoints gone and the task moved',
    )
    for (const d of [...downs!.split(', '), ...gone!.split(', ')]) assert.ok(parseFloat(d) > 0, d)
    assert.ok(parseFloat(movedIn!) > 0)
    const web = live('web')
    assert.equal(web.length, 3)
    assert.ok(!web.some((t) => t.node === 'n3'), 'no web task on n3 any more')
    const mover = web.find((t) => t.name === moved)!
    assert.equal(mover.node, onto)
    assert.equal(mover.addresses.find((a) => a.network === 'demo')!.ip, ip)

    // 7: n3 back and ready; 8: where to go next, and those commands work.
    line(out, /^7\. n3 back: link up, agent restarted .*ready on the others after \d+\.\d s$/m, 'n3 back')
    for (const n of ['n1', 'n2']) assert.equal(await stateOn(n, 'n3'), 'ready')
    const [host, taskExec] = line(
      out,
      /^8\. next: .*; SWARMNET_HOST=(n\d) swarmnet task exec probe\.1 -- (curl -s web)$/m,
      'where to go next',
    )
    line(out, /^\s+the lab stays up \(demo: \d+\.\d s\); swarmnet lab down removes it and everything it made$/m, 'lab down')
    const tried = cli(host, ['task', 'exec', 'probe.1', '--', ...taskExec!.split(' ')])
    assert.equal(tried.code, 0, tried.stderr)
    assert.match(tried.stdout, /^Hostname: web\.\d$/m)
    assert.match(cli('n1', ['service', 'ps', 'web']).stdout, /web\.1/)
  })
})
