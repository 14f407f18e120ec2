// `service deploy -f FILE` in a real 2-node lab: a file creates its networks and services and
// they carry traffic; a bad file, a clash with the cluster, or a refusal by the agent halfway
// leaves nothing behind.
import assert from 'node:assert/strict'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {before, describe, test} from 'node:test'
import {cli, eventually, inNs, json, ok} from './helpers.js'
import {withLab} from './lab.js'

interface Svc {
  name: string
  mode: string
  desired: number
  running: number
  networks: string[]
  command: string[]
  endpointMode: string
  vips: {network: string; ip: string}[]
  ports: {published: number; target: number; protocol: string; mode: string}[]
}
interface Task {
  name: string
  node: string
  state: string
  netns: string
}
interface Net {
  name: string
  subnet: string
  attachable: boolean
}

describe('service deploy in a 2-node lab', {timeout: 600_000}, () => {
  const tmp = mkdtempSync(join(tmpdir(), 'sn-deploy-'))
  const file = (name: string, text: string) => {
    const p = join(tmp, name)
    writeFileSync(p, text)
    return p
  }
  const services = () => json<Svc[]>('n1', ['service', 'ls']).map((s) => s.name)
  const networks = () => json<Net[]>('n1', ['network', 'ls']).map((n) => n.name)

  withLab(['--nodes', '2'], {afterDown: () => rmSync(tmp, {recursive: true, force: true})})
  before(() => {
    ok('n1', ['network', 'create', 'old', '--attachable'])
  })

  test('a bad file: one line naming the file, service and key; nothing created', () => {
    const p = file(
      'bad.yml',
      'networks:\n  web:\nservices:\n  - name: ok\n    networks: [web]\n  - name: web\n    replicas: three\n',
    )
    const r = cli('n1', ['service', 'deploy', '-f', p])
    assert.notEqual(r.code, 0)
    assert.equal(
      r.stderr,
      `swarmnet: ${p}: service 'web': replicas: invalid replica count 'three': must be a whole number 0-1000\n`,
    )
    assert.equal(r.stdout, '')
    assert.deepEqual(services(), [])
    assert.ok(!networks().includes('web'))
  })

  test('a network neither declared nor existing, or a taken name: refused before anything is created', () => {
    ok('n1', ['service', 'create', '--name', 'taken', '--replicas', '0'])
    let r = cli('n1', [
      'service',
      'deploy',
      '-f',
      file('x.yml', 'networks: {web: }\nservices:\n  - {name: a, networks: [web, nope]}\n'),
    ])
    assert.match(
      r.stderr,
      /^swarmnet: .*x\.yml: service 'a': networks: network 'nope' does not exist: create it or declare it under networks\n$/,
    )
    r = cli('n1', [
      'service',
      'deploy',
      '-f',
      file('y.yml', 'networks: {web: }\nservices:\n  - {name: a, networks: [web]}\n  - {name: taken}\n'),
    ])
    assert.match(r.stderr, /^swarmnet: .*y\.yml: service 'taken': a service with this name already exists in the cluster\n$/)
    assert.deepEqual(services(), ['taken'])
    assert.ok(!networks().includes('web'))
    ok('n1', ['service', 'rm', 'taken'])
  })

  test('the agent refuses the second service (no addresses left): the first and the network are removed again', () => {
    // a /29 has 5 addresses for tasks and VIPs after the gateway: the first service takes 3, the second needs 4
    const p = file(
      'full.yml',
      'networks:\n  tiny: {subnet: 10.77.0.0/29}\nservices:\n  - {name: a, replicas: 2, networks: [tiny]}\n  - {name: b, replicas: 3, networks: [tiny]}\n',
    )
    const r = cli('n1', ['service', 'deploy', '-f', p])
    assert.notEqual(r.code, 0)
    assert.equal(r.stderr.split('\n').length, 2, r.stderr)
    assert.match(r.stderr, /^swarmnet: .*full\.yml: service 'b': .*; what it created was removed\n$/)
    assert.deepEqual(services(), [])
    assert.ok(!networks().includes('tiny'))
  })

  test('published ports go to service create; one the cluster has taken is refused and the run undone', () => {
    const p = file(
      'pub.yml',
      `services:
  - name: pub
    publish: ["8080:80", "53:53/udp", 90, {published: 9000, target: 91, mode: host}]
`,
    )
    let r = cli('n1', ['service', 'deploy', '-f', p])
    assert.equal(r.code, 0, r.stderr)
    const svc = json<Svc[]>('n1', ['service', 'ls']).find((s) => s.name === 'pub')!
    const ports = [...svc.ports].sort((a, b) => a.target - b.target)
    assert.deepEqual(ports.slice(0, 2), [
      {published: 53, target: 53, protocol: 'udp', mode: 'ingress'},
      {published: 8080, target: 80, protocol: 'tcp', mode: 'ingress'},
    ])
    assert.equal(ports[2]!.target, 90)
    assert.ok(ports[2]!.published >= 30000 && ports[2]!.published <= 32767, 'allocated from 30000-32767')
    assert.deepEqual(ports[3], {published: 9000, target: 91, protocol: 'tcp', mode: 'host'})
    // 8080/tcp is pub's: a file whose second service wants it is undone whole
    r = cli('n1', [
      'service',
      'deploy',
      '-f',
      file('clash.yml', 'networks: {web: }\nservices:\n  - {name: a, networks: [web]}\n  - {name: b, publish: ["8080:81"]}\n'),
    ])
    assert.notEqual(r.code, 0)
    assert.match(r.stderr, /^swarmnet: .*clash\.yml: service 'b': .*8080.*; what it created was removed\n$/)
    assert.deepEqual(services(), ['pub'])
    assert.ok(!networks().includes('web'))
    ok('n1', ['service', 'rm', 'pub'])
  })

  test('a file creates its networks and services, they run, and a request reaches the VIP across nodes', async () => {
    const p = file(
      'good.yml',
      `networks:
  web: {subnet: 10.78.0.0/24}
  old: {attachable: true}   # exists already, with these settings: used
services:
  - name: whoami
    replicas: 2
    networks: [web]
  - name: probe
    mode: global
    networks: [web, old]
    command: [sleep, infinity]
`,
    )
    const r = cli('n1', ['service', 'deploy', '-f', p, '--wait', '90'])
    assert.equal(r.code, 0, r.stderr)
    assert.deepEqual(r.stdout.trim().split('\n'), [
      'network web created (10.78.0.0/24)',
      'service whoami created (2 replicas)',
      'service probe created (global)',
      'all tasks running',
    ])
    const svcs = json<Svc[]>('n1', ['service', 'ls'])
    const who = svcs.find((s) => s.name === 'whoami')!
    const probe = svcs.find((s) => s.name === 'probe')!
    assert.deepEqual([who.mode, who.desired, who.running, who.networks], ['replicated', 2, 2, ['web']])
    assert.deepEqual([probe.mode, probe.desired, probe.running, probe.networks.sort()], ['global', 2, 2, ['old', 'web']])
    assert.deepEqual(probe.command, ['sleep', 'infinity'])
    assert.equal(json<Net[]>('n1', ['network', 'ls']).find((n) => n.name === 'web')!.subnet, '10.78.0.0/24')
    const vip = who.vips.find((v) => v.network === 'web')!.ip
    const onN2 = json<Task[]>('n1', ['service', 'ps', 'probe']).find((t) => t.node === 'n2' && t.state === 'running')!
    const hosts = new Set<string>()
    await eventually(
      'both whoami tasks answer through the VIP from n2',
      () => {
        const c = inNs(onN2.netns, ['curl', '-sf', '-m', '3', `http://${vip}/`])
        const h = /Hostname: (\S+)/.exec(c.stdout)?.[1]
        if (h) hosts.add(h)
        return hosts.size === 2
      },
      30_000,
    )
    // deploying the same file again is refused whole: deploy creates, it does not update
    const again = cli('n1', ['service', 'deploy', '-f', p])
    assert.match(again.stderr, /good\.yml: service 'whoami': a service with this name already exists in the cluster/)
  })
})
