// Service VIPs in a real 3-node lab: what `service create --endpoint-mode`, `service inspect`,
// `service ls` and `inspect lb` say, and that VIPs share the task address pool without collisions.
import assert from 'node:assert/strict'
import {request} from 'node:http'
import {after, before, describe, test} from 'node:test'
import {cli, eventually, json, leftovers, ok, sh} from './helpers.js'

interface Task {
  name: string
  node: string
  state: string
  netns: string
  addresses: {network: string; ip: string}[]
}
interface Backend {
  network: string
  task: string
  ip: string
  node: string
  state: string
}
interface Svc {
  id: string
  name: string
  mode: string
  endpointMode: string
  vips: {network: string; ip: string}[]
  backends: Backend[]
}
interface LbService {
  service: string
  frontends: {
    network: string
    vip: string
    programmed: boolean
    tableSize?: number
    backends: {ip: string; task?: string; node: string; flows: number}[]
  }[]
}
interface Net {
  endpoints: {task: string; ip: string}[]
}

const tasksOf = (svc: string) => json<Task[]>('n1', ['service', 'ps', svc]).filter((t) => t.state !== 'shutdown')

async function running(svc: string, n: number): Promise<Task[]> {
  return eventually(
    `${n} running tasks of ${svc}`,
    () => {
      const t = tasksOf(svc)
      return t.length === n && t.every((x) => x.state === 'running') ? t : undefined
    },
    60_000,
  )
}

function api(method: string, path: string, body?: unknown): Promise<{status: number; error?: string}> {
  return new Promise((resolve, reject) => {
    const req = request({socketPath: '/run/swarmnet/n1.sock', method, path}, (res) => {
      let text = ''
      res.on('data', (c: Buffer) => (text += c.toString()))
      res.on('end', () => resolve({status: res.statusCode ?? 0, ...(JSON.parse(text) as {error?: string})}))
    })
    req.on('error', reject)
    req.end(body === undefined ? undefined : JSON.stringify(body))
  })
}

describe('service VIPs in a 3-node lab', {timeout: 600_000}, () => {
  before(() => {
    const up = sh(['ip', 'netns', 'list']).stdout
    assert.ok(!/sn-lab-/.test(up), 'a lab is already up on this machine: `swarmnet lab down` first')
    ok(undefined, ['lab', 'up', '--nodes', '3'])
    ok('n1', ['network', 'create', 'lbnet'])
  })

  after(() => {
    const down = cli(undefined, ['lab', 'down'])
    assert.equal(down.code, 0, down.stderr)
    assert.deepEqual(leftovers(), [], 'lab down must leave nothing behind')
  })

  test('an unknown endpoint mode is refused in one line, by the CLI and by the API, and makes nothing', async () => {
    const r = cli('n1', ['service', 'create', '--name', 'bad', '--endpoint-mode', 'ipvs', '--network', 'lbnet'])
    assert.notEqual(r.code, 0)
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr)
    assert.match(r.stderr, /^swarmnet: Expected --endpoint-mode=ipvs to be one of: vip, dnsrr/)
    const a = await api('POST', '/services', {name: 'bad', endpointMode: 'ipvs', networks: ['lbnet']})
    assert.equal(a.status, 400)
    assert.equal(a.error, 'invalid endpoint mode "ipvs": must be vip or dnsrr')
    assert.equal((await api('POST', '/services', {name: 'bad', endpointMode: 7})).status, 400)
    assert.deepEqual(json<Svc[]>('n1', ['service', 'ls']), [])
  })

  test('vip (the default): one VIP on the network; service inspect shows it and the running backends', async () => {
    ok('n1', ['service', 'create', '--name', 'web', '--replicas', '3', '--network', 'lbnet'])
    const tasks = await running('web', 3)
    assert.deepEqual(tasks.map((t) => t.node).sort(), ['n1', 'n2', 'n3'])
    // Read on a worker: the VIP travelled with the service record.
    const s = await eventually('n3 sees 3 running backends', () => {
      const v = json<Svc>('n3', ['service', 'inspect', 'web'])
      return v.backends.filter((b) => b.state === 'running').length === 3 ? v : undefined
    })
    assert.equal(s.endpointMode, 'vip')
    assert.equal(s.vips.length, 1)
    assert.equal(s.vips[0]!.network, 'lbnet')
    const vip = s.vips[0]!.ip
    assert.deepEqual(
      s.backends.map((b) => [b.network, b.task, b.ip, b.node]).sort(),
      tasks.map((t) => ['lbnet', t.name, t.addresses[0]!.ip, t.node]).sort(),
    )
    const text = ok('n1', ['service', 'inspect', 'web'])
    assert.match(text, /^Name: +web$/m)
    assert.match(text, /^Mode: +replicated \(3\/3 running\)$/m)
    assert.match(text, /^Endpoint mode: +vip$/m)
    assert.match(text, new RegExp(`^VIPs: +lbnet=${vip.replace(/\./g, '\\.')}$`, 'm'))
    assert.match(text, /^NETWORK +TASK +ADDRESS +NODE +STATE$/m)
    for (const t of tasks) assert.match(text, new RegExp(`^lbnet +${t.name} +${t.addresses[0]!.ip} +${t.node} +running$`, 'm'))
    const ls = ok('n1', ['service', 'ls'])
    assert.match(ls, /^ID +NAME +MODE +REPLICAS +NETWORKS +VIPS +COMMAND$/m)
    assert.match(ls, new RegExp(`^\\w{12} +web +replicated +3/3 +lbnet +lbnet=${vip.replace(/\./g, '\\.')}`, 'm'))
  })

  test('dnsrr: no VIP, and inspect says so', async () => {
    ok('n1', ['service', 'create', '--name', 'rr', '--replicas', '2', '--endpoint-mode', 'dnsrr', '--network', 'lbnet'])
    await running('rr', 2)
    const s = json<Svc>('n1', ['service', 'inspect', 'rr'])
    assert.equal(s.endpointMode, 'dnsrr')
    assert.deepEqual(s.vips, [])
    assert.equal(s.backends.length, 2)
    assert.match(ok('n1', ['service', 'inspect', 'rr']), /^VIPs: +dnsrr: no VIP$/m)
    assert.match(ok('n1', ['service', 'ls']), /^\w{12} +rr +replicated +\d\/2 +lbnet +dnsrr$/m)
  })

  test("inspect lb reads the node's maps (agent not needed): the VIP as programmed, its backends, flows", async () => {
    const web = json<Svc>('n1', ['service', 'inspect', 'web'])
    const vip = web.vips[0]!.ip
    type Lb = {node: string; services: LbService[]}
    const lb = await eventually(
      'n2 programs web with 3 backends',
      () => {
        const v = json<Lb>(undefined, ['inspect', 'lb', 'web', '--host', 'n2'])
        const f = v.services[0]?.frontends[0]
        return f?.programmed && f.backends.length === 3 ? v : undefined
      },
      30_000,
    )
    assert.equal(lb.node, 'n2')
    assert.deepEqual(
      lb.services.map((s) => s.service),
      ['web'],
    )
    const f = lb.services[0]!.frontends[0]!
    assert.deepEqual([f.network, f.vip], ['lbnet', vip])
    assert.equal(f.tableSize, 307, 'Maglev: the smallest prime >= 100 x 3')
    assert.deepEqual(f.backends.map((b) => [b.ip, b.task, b.node]).sort(), web.backends.map((b) => [b.ip, b.task, b.node]).sort())
    for (const b of f.backends) assert.equal(typeof b.flows, 'number')
    // every service with a VIP, the dnsrr one not among them
    const all = json<Lb>(undefined, ['inspect', 'lb', '--host', 'n2'])
    assert.deepEqual(
      all.services.map((s) => s.service),
      ['web'],
    )
    const text = ok(undefined, ['inspect', 'lb', '--host', 'n2'])
    assert.match(text, /^SERVICE +NETWORK +FRONTEND +BACKEND +TASK +NODE +FLOWS$/m)
    const ip = (x: string) => x.replace(/\./g, '\\.')
    const first = f.backends[0]!
    assert.match(text, new RegExp(`^web +lbnet +${ip(vip)} +${ip(first.ip)} +${first.task} +${first.node} +${first.flows}$`, 'm'))
    const r = cli(undefined, ['inspect', 'lb', 'nosuch', '--host', 'n2'])
    assert.notEqual(r.code, 0)
    assert.match(r.stderr.trim(), /^swarmnet: service nosuch has no VIP on node n2$/)
  })

  test('VIPs never collide with task addresses; a removed service frees its VIP', async () => {
    const addresses = () => {
      const vips = json<Svc[]>('n1', ['service', 'ls']).flatMap((s) => s.vips.map((v) => v.ip))
      const eps = json<Net>('n1', ['network', 'inspect', 'lbnet']).endpoints.map((e) => e.ip)
      return {vips, eps}
    }
    ok('n1', ['service', 'create', '--name', 'extra', '--replicas', '2', '--network', 'lbnet', '--', 'sleep', 'infinity'])
    await running('extra', 2)
    ok('n1', ['service', 'scale', 'web=5'])
    await running('web', 5)
    const {vips, eps} = addresses()
    assert.equal(vips.length, 2, 'web and extra have a VIP, rr none')
    assert.equal(eps.length, 5 + 2 + 2)
    const all = [...vips, ...eps]
    assert.equal(new Set(all).size, all.length, `an address is used twice: ${all.join(' ')}`)
    const extraVip = json<Svc>('n1', ['service', 'inspect', 'extra']).vips[0]!.ip
    ok('n1', ['service', 'rm', 'extra'])
    ok('n1', ['service', 'create', '--name', 'again', '--replicas', '0', '--network', 'lbnet'])
    assert.equal(json<Svc>('n1', ['service', 'inspect', 'again']).vips[0]!.ip, extraVip)
    ok('n1', ['service', 'rm', 'again'])
    ok('n1', ['service', 'scale', 'web=3'])
    await running('web', 3)
  })
})
