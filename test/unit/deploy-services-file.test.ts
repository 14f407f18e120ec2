// The services file of `service deploy` / the action's `services` input: what it accepts, and
// the one line each bad file gives (the file, the service, the key).
import assert from 'node:assert/strict'
import {describe, test} from 'node:test'
import {parseServicesFile} from '../../src/deploy/services-file.js'
import {planDeploy} from '../../src/deploy/deploy.js'
import {UserError} from '../../src/model/errors.js'
import type {NetworkView, ServiceView} from '../../src/agent/views.js'

const parse = (text: string) => parseServicesFile('s.yml', text)

function refused(text: string, expected: RegExp): void {
  assert.throws(
    () => parse(text),
    (e: unknown) => {
      assert.ok(e instanceof UserError, `a UserError, not ${String(e)}`)
      assert.doesNotMatch(e.message, /\n/, 'one line')
      assert.match(e.message, expected)
      return true
    },
  )
}

describe('services file: accepted', () => {
  test('a list of services with every key, defaults filled', () => {
    const f = parse(`
networks:
  web: {subnet: 10.30.0.0/24, attachable: true, mtu: 1400}
  back:
services:
  - name: whoami
    replicas: 3
    networks: [web, back]
    endpoint_mode: dnsrr
    user: "1000:1000"
    limit_memory: 64M
    limit_cpu: 0.5
  - name: probe
    mode: global
    command: [sleep, infinity]
    publish:
      - "8080:80"
      - "53:53/udp"
      - 9090
      - "7000"
      - {published: 9000, target: 90, protocol: tcp, mode: host}
      - {target: 91}
`)
    assert.deepEqual(f.networks, [
      {name: 'web', subnet: '10.30.0.0/24', attachable: true, mtu: 1400},
      {name: 'back', attachable: false},
    ])
    assert.deepEqual(f.services[0], {
      name: 'whoami',
      mode: 'replicated',
      replicas: 3,
      networks: ['web', 'back'],
      command: [],
      endpointMode: 'dnsrr',
      ports: [],
      user: '1000:1000',
      limitMemory: '64M',
      limitCpu: '0.5',
    })
    assert.deepEqual(f.services[1], {
      name: 'probe',
      mode: 'global',
      replicas: 0,
      networks: [],
      command: ['sleep', 'infinity'],
      endpointMode: 'vip',
      ports: [
        {protocol: 'tcp', target: 80, published: 8080, mode: 'ingress'},
        {protocol: 'udp', target: 53, published: 53, mode: 'ingress'},
        {protocol: 'tcp', target: 9090, mode: 'ingress'},
        {protocol: 'tcp', target: 7000, mode: 'ingress'},
        {protocol: 'tcp', target: 90, published: 9000, mode: 'host'},
        {protocol: 'tcp', target: 91, mode: 'ingress'},
      ],
    })
  })

  test('a map of services keyed by name (compose style), an empty entry is a default service', () => {
    const f = parse('services:\n  web:\n    replicas: 2\n  idle:\n')
    assert.deepEqual(
      f.services.map((s) => [s.name, s.mode, s.replicas]),
      [
        ['web', 'replicated', 2],
        ['idle', 'replicated', 1],
      ],
    )
  })

  test('the same port number on tcp and udp is two ports, host-mode ports may repeat across services', () => {
    const f = parse(`services:
  - {name: a, publish: ["53:53/udp", "53:53/tcp"]}
  - {name: b, publish: [{published: 53, target: 53, mode: host}]}
`)
    assert.equal(f.services.length, 2)
  })
})

describe('services file: refused with one line naming the file, service and key', () => {
  const cases: [string, string, RegExp][] = [
    ['not YAML', 'services: [\n  - name: a\n', /^s\.yml:\d+:\d+: not valid YAML: /],
    ['a duplicate map key', 'services:\n  - name: a\n    name: b\n', /^s\.yml:3:\d+: not valid YAML: .*unique/i],
    ['an empty file', '', /^s\.yml: is empty: it needs a services list$/],
    ['a list at the top', '- name: a\n', /^s\.yml: must be a mapping with services/],
    ['no services', 'networks: {web: }\n', /^s\.yml: services: is missing$/],
    ['an empty services list', 'services: []\n', /^s\.yml: services: is empty$/],
    ['services a string', 'services: web\n', /^s\.yml: services: must be a list of services$/],
    [
      'an unknown top-level key',
      'services: [{name: a}]\nvolumes: {}\n',
      /^s\.yml: volumes: unknown key \(known: services, networks\)$/,
    ],
    [
      'an unknown service key',
      'services:\n  - name: web\n    replica: 3\n',
      /^s\.yml: service 'web': replica: unknown key \(known: name, /,
    ],
    [
      'image (compose)',
      'services:\n  - name: web\n    image: nginx\n',
      /^s\.yml: service 'web': image: not supported: .*command/,
    ],
    ['env', 'services:\n  - name: web\n    env: {A: b}\n', /^s\.yml: service 'web': env: not supported: environment variables/],
    [
      'ports (compose spelling)',
      'services:\n  - name: web\n    ports: ["80:80"]\n',
      /^s\.yml: service 'web': ports: not supported: .*publish/,
    ],
    ['a service without a name', 'services:\n  - replicas: 2\n', /^s\.yml: services\[0\]: name is missing$/],
    ['a service that is a string', 'services:\n  - web\n', /^s\.yml: services\[0\]: must be a mapping/],
    ['a name that is a number', 'services:\n  - name: 5\n', /^s\.yml: services\[0\]\.name: must be a string, not 5$/],
    ['a bad name', 'services:\n  - name: "-web"\n', /^s\.yml: service '-web': name: invalid service name '-web'/],
    ['a keyed name that differs', 'services:\n  web: {name: api}\n', /^s\.yml: services\.web\.name: 'api' differs from the key/],
    [
      'duplicate names',
      'services:\n  - name: web\n  - name: api\n  - name: web\n',
      /^s\.yml: service 'web': name used twice in this file$/,
    ],
    [
      'negative replicas',
      'services:\n  - {name: web, replicas: -1}\n',
      /^s\.yml: service 'web': replicas: invalid replica count -1: must be a whole number 0-1000$/,
    ],
    [
      'fractional replicas',
      'services:\n  - {name: web, replicas: 1.5}\n',
      /^s\.yml: service 'web': replicas: invalid replica count 1\.5/,
    ],
    [
      'replicas a string',
      'services:\n  - {name: web, replicas: "3"}\n',
      /^s\.yml: service 'web': replicas: invalid replica count '3'/,
    ],
    [
      'too many replicas',
      'services:\n  - {name: web, replicas: 1001}\n',
      /^s\.yml: service 'web': replicas: invalid replica count 1001/,
    ],
    [
      'replicas with global',
      'services:\n  - {name: web, mode: global, replicas: 2}\n',
      /^s\.yml: service 'web': replicas: cannot be used with mode global$/,
    ],
    [
      'a bad mode',
      'services:\n  - {name: web, mode: replicas}\n',
      /^s\.yml: service 'web': mode: invalid service mode "replicas"/,
    ],
    [
      'a bad endpoint mode',
      'services:\n  - {name: web, endpoint_mode: rr}\n',
      /^s\.yml: service 'web': endpoint_mode: invalid endpoint mode "rr"/,
    ],
    [
      'networks a string',
      'services:\n  - {name: web, networks: web}\n',
      /^s\.yml: service 'web': networks: must be a list of strings, not 'web'$/,
    ],
    [
      'a network listed twice',
      'services:\n  - {name: web, networks: [a, a]}\n',
      /^s\.yml: service 'web': networks: a network is listed twice$/,
    ],
    [
      'the ingress network',
      'services:\n  - {name: web, networks: [ingress]}\n',
      /^s\.yml: service 'web': networks: the ingress network is attached through publish/,
    ],
    [
      'a command string',
      'services:\n  - {name: web, command: "sleep 1"}\n',
      /^s\.yml: service 'web': command: must be a list, such as \[sleep, infinity\]/,
    ],
    [
      'a command with a map',
      'services:\n  - {name: web, command: [sleep, {a: 1}]}\n',
      /^s\.yml: service 'web': command: must be a list of strings/,
    ],
    ['publish not a list', 'services:\n  - {name: web, publish: "80:80"}\n', /^s\.yml: service 'web': publish: must be a list/],
    [
      'a port too big',
      'services:\n  - {name: web, publish: ["70000:80"]}\n',
      /^s\.yml: service 'web': publish\[0\]: invalid published port '70000': must be 1-65535$/,
    ],
    [
      'port 0',
      'services:\n  - {name: web, publish: ["8080:0"]}\n',
      /^s\.yml: service 'web': publish\[0\]: invalid target port '0'/,
    ],
    [
      'a port word',
      'services:\n  - {name: web, publish: ["http:80"]}\n',
      /^s\.yml: service 'web': publish\[0\]: invalid published port 'http'/,
    ],
    [
      'an address in the short form',
      'services:\n  - {name: web, publish: ["127.0.0.1:8080:80"]}\n',
      /^s\.yml: service 'web': publish\[0\]: invalid publish '127\.0\.0\.1:8080:80'/,
    ],
    [
      'a bad protocol',
      'services:\n  - {name: web, publish: ["53:53/sctp"]}\n',
      /^s\.yml: service 'web': publish\[0\]: invalid protocol 'sctp': must be tcp or udp$/,
    ],
    [
      'an empty port',
      'services:\n  - {name: web, publish: [":80"]}\n',
      /^s\.yml: service 'web': publish\[0\]: invalid published port ''/,
    ],
    [
      'a long form without target',
      'services:\n  - {name: web, publish: [{published: 80}]}\n',
      /^s\.yml: service 'web': publish\[0\]: target is missing$/,
    ],
    [
      'a long form unknown key',
      'services:\n  - {name: web, publish: [{target: 80, host_ip: 1.2.3.4}]}\n',
      /^s\.yml: service 'web': publish\[0\]\.host_ip: unknown key \(known: published, target, protocol, mode\)$/,
    ],
    [
      'a long form bad mode',
      'services:\n  - {name: web, publish: [{target: 80, mode: global}]}\n',
      /^s\.yml: service 'web': publish\[0\]: invalid mode 'global': must be ingress or host$/,
    ],
    [
      'a long form fractional port',
      'services:\n  - {name: web, publish: [{target: 80.5}]}\n',
      /^s\.yml: service 'web': publish\[0\]: invalid target port 80\.5/,
    ],
    [
      'a publish entry that is a list',
      'services:\n  - {name: web, publish: [[80, 80]]}\n',
      /^s\.yml: service 'web': publish\[0\]: must be "PUBLISHED:TARGET/,
    ],
    [
      'the same ingress port twice in a file',
      'services:\n  - {name: a, publish: ["8080:80"]}\n  - {name: b, publish: ["8080:81"]}\n',
      /^s\.yml: service 'b': publish: port 8080\/tcp is already published by service 'a' in this file$/,
    ],
    [
      'dnsrr with an ingress port',
      'services:\n  - {name: web, endpoint_mode: dnsrr, publish: ["80:80"]}\n',
      /^s\.yml: service 'web': publish: an ingress port needs endpoint_mode vip/,
    ],
    [
      'a bad memory limit',
      'services:\n  - {name: web, limit_memory: lots}\n',
      /^s\.yml: service 'web': invalid --limit-memory 'lots'/,
    ],
    ['a bad cpu limit', 'services:\n  - {name: web, limit_cpu: 0}\n', /^s\.yml: service 'web': invalid --limit-cpu '0'/],
    ['a bad user', 'services:\n  - {name: web, user: "a:b:c"}\n', /^s\.yml: service 'web': invalid --user 'a:b:c'/],
    ['user a list', 'services:\n  - {name: web, user: [a]}\n', /^s\.yml: service 'web': user: must be a string/],
    ['networks a list', 'networks: [web]\nservices: [{name: a}]\n', /^s\.yml: networks: must be a mapping of network names$/],
    [
      'a network unknown key',
      'networks:\n  web: {ipam: x}\nservices: [{name: a}]\n',
      /^s\.yml: networks\.web\.ipam: unknown key \(known: subnet, attachable, mtu, driver\)$/,
    ],
    [
      'a bad subnet',
      'networks:\n  web: {subnet: 10.0.0.1/24}\nservices: [{name: a}]\n',
      /^s\.yml: networks\.web\.subnet: invalid CIDR '10\.0\.0\.1\/24': host bits are set/,
    ],
    ['a bad mtu', 'networks:\n  web: {mtu: 100}\nservices: [{name: a}]\n', /^s\.yml: networks\.web\.mtu: invalid MTU 100/],
    [
      'attachable a string',
      'networks:\n  web: {attachable: "yes"}\nservices: [{name: a}]\n',
      /^s\.yml: networks\.web\.attachable: must be true or false, not 'yes'$/,
    ],
    [
      'a bridge driver',
      'networks:\n  web: {driver: bridge}\nservices: [{name: a}]\n',
      /^s\.yml: networks\.web\.driver: invalid driver 'bridge': only overlay$/,
    ],
    [
      'declaring ingress',
      'networks:\n  ingress:\nservices: [{name: a}]\n',
      /^s\.yml: networks\.ingress: the ingress network is made by swarmnet/,
    ],
    [
      'an alias bomb',
      'a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\nservices: [{name: a}]\n',
      /^s\.yml: not valid YAML: Excessive alias count/,
    ],
  ]
  for (const [what, text, expected] of cases) test(what, () => refused(text, expected))

  test('the first problem in file order is the one reported, and nothing of the rest is used', () => {
    refused('services:\n  - {name: ok}\n  - {name: bad, replicas: x}\n  - {name: ok}\n', /service 'bad': replicas/)
  })
})

describe('services file against the cluster (before anything is created)', () => {
  const net = (name: string, over: Partial<NetworkView> = {}): NetworkView => ({
    id: `id-${name}`,
    name,
    driver: 'overlay',
    scope: 'swarm',
    subnet: '10.0.1.0/24',
    gateway: '10.0.1.1',
    attachable: false,
    ingress: false,
    mtu: 1450,
    peers: [],
    endpoints: [],
    attachments: [],
    ...over,
  })
  const svc = (name: string): ServiceView => ({
    id: `id-${name}`,
    name,
    mode: 'replicated',
    desired: 1,
    running: 1,
    networks: [],
    command: [],
    endpointMode: 'vip',
    vips: [],
    ports: [],
  })
  const f = parse('networks:\n  new:\n  old: {subnet: 10.0.1.0/24}\nservices:\n  - {name: web, networks: [new, old, existing]}\n')

  test('declared networks that are missing are created, existing ones that match are used', () => {
    const plan = planDeploy('s.yml', f, [net('old'), net('existing')], [svc('other')])
    assert.deepEqual(
      plan.map((n) => n.name),
      ['new'],
    )
  })
  test('a service name taken in the cluster', () => {
    assert.throws(
      () => planDeploy('s.yml', f, [net('old'), net('existing')], [svc('web')]),
      /^UserError: s\.yml: service 'web': a service with this name already exists in the cluster$/,
    )
  })
  test('a network neither declared nor existing', () => {
    assert.throws(
      () => planDeploy('s.yml', f, [net('old')], []),
      /s\.yml: service 'web': networks: network 'existing' does not exist: create it or declare it under networks$/,
    )
  })
  test('a declared network that exists with other settings', () => {
    assert.throws(
      () => planDeploy('s.yml', f, [net('old', {subnet: '10.0.2.0/24'}), net('existing')], []),
      /s\.yml: networks\.old: the network exists with a different subnet \(10\.0\.2\.0\/24\)/,
    )
  })
})
