// What a person types after --publish / -p / --publish-rm, and what the API may receive.
import assert from 'node:assert/strict'
import {test} from 'node:test'
import {isUserError} from '../../src/model/errors.js'
import {
  checkPortRef,
  checkPortRequest,
  formatIngressPort,
  formatPort,
  parsePortRef,
  parsePublish,
  parsePublishes,
  sortPorts,
} from '../../src/model/ports.js'
import {valueProblem} from '../../src/model/shape.js'

/** The refusal: a UserError of one line that quotes what was typed and matches `said`. */
function refused(fn: () => unknown, said: RegExp, typed?: string): void {
  let err: unknown
  try {
    fn()
  } catch (e) {
    err = e
  }
  assert.ok(isUserError(err), `should be refused: ${said}`)
  const msg = (err as Error).message
  assert.equal(msg.split('\n').length, 1, msg)
  assert.match(msg, said)
  if (typed !== undefined) assert.ok(msg.includes(`'${typed}'`), `quotes what was typed: ${msg}`)
}

test('the short form: P:T, P:T/udp, T alone (published allocated later), tcp and ingress by default', () => {
  assert.deepEqual(parsePublish('8080:80'), {published: 8080, target: 80, protocol: 'tcp', mode: 'ingress'})
  assert.deepEqual(parsePublish('53:5353/udp'), {published: 53, target: 5353, protocol: 'udp', mode: 'ingress'})
  assert.deepEqual(parsePublish('8080:80/tcp'), {published: 8080, target: 80, protocol: 'tcp', mode: 'ingress'})
  assert.deepEqual(parsePublish('80'), {target: 80, protocol: 'tcp', mode: 'ingress'})
  assert.deepEqual(parsePublish('53/udp'), {target: 53, protocol: 'udp', mode: 'ingress'})
  assert.deepEqual(parsePublish('1:65535'), {published: 1, target: 65535, protocol: 'tcp', mode: 'ingress'})
})

test('the long form: keys in any order, defaults tcp and ingress, published optional', () => {
  assert.deepEqual(parsePublish('published=8080,target=80'), {published: 8080, target: 80, protocol: 'tcp', mode: 'ingress'})
  assert.deepEqual(parsePublish('mode=host,protocol=udp,target=53,published=1053'), {
    published: 1053,
    target: 53,
    protocol: 'udp',
    mode: 'host',
  })
  assert.deepEqual(parsePublish('target=80'), {target: 80, protocol: 'tcp', mode: 'ingress'})
  assert.deepEqual(parsePublish('target=80,mode=host'), {target: 80, protocol: 'tcp', mode: 'host'})
})

test('bad numbers: 0, 65536, signs, spaces, hex, exponents, fractions, words, empty', () => {
  for (const [spec, bad] of [
    ['0:80', '0'],
    ['80:0', '0'],
    ['65536:80', '65536'],
    ['80:65536', '65536'],
    ['0', '0'],
    ['99999999999', '99999999999'],
    ['+80:80', '+80'],
    ['-80', '-80'],
    [' 80:80', ' 80'],
    ['80:80 ', '80 '],
    ['0x50:80', '0x50'],
    ['8e1:80', '8e1'],
    ['80.0:80', '80.0'],
    ['http:80', 'http'],
    ['published=0,target=80', '0'],
    ['published=8080,target=65536', '65536'],
    ['published=abc,target=80', 'abc'],
    ['published=-1,target=80', '-1'],
  ] as const) {
    refused(() => parsePublish(spec), new RegExp(`'${bad.replace(/[.+]/g, '\\$&')}' is not a port number 1-65535`), spec)
  }
  refused(() => parsePublish(''), /invalid --publish '': empty/)
  refused(() => parsePublish(':80'), /published port before ':' is empty/)
  refused(() => parsePublish('80:'), /target port is empty/)
  refused(() => parsePublish('published=8080,target='), /'target' has no value/)
})

test('long form mistakes: unknown, duplicate, missing and empty keys, bad protocol and mode', () => {
  refused(() => parsePublish('published=8080'), /'target' is missing/)
  refused(() => parsePublish('published=8080,target=80,published=9090'), /'published' is given twice/)
  refused(() => parsePublish('target=80,target=80'), /'target' is given twice/)
  refused(
    () => parsePublish('published=8080,target=80,proto=udp'),
    /unknown key 'proto': the keys are published, target, protocol, mode/,
  )
  refused(() => parsePublish('Published=8080,target=80'), /unknown key 'Published'/)
  refused(() => parsePublish('src=8080,target=80'), /unknown key 'src'/)
  refused(() => parsePublish('published=8080,,target=80'), /an empty field/)
  refused(() => parsePublish('published=8080,target=80,'), /an empty field/)
  refused(() => parsePublish('=80,target=80'), /unknown key ''/)
  refused(() => parsePublish('target=80,protocol=sctp'), /sctp is not supported/)
  refused(() => parsePublish('target=80,protocol=TCP'), /unknown protocol 'TCP': tcp or udp/)
  refused(() => parsePublish('target=80,mode=global'), /unknown mode 'global'/)
  refused(() => parsePublish('target=80,mode=Host'), /unknown mode 'Host'/)
})

test('mixed forms and more than one port in one value are refused, saying where the other form goes', () => {
  refused(
    () => parsePublish('8080:80,protocol=udp'),
    /'8080:80' is not key=value.*the short form P:T\[\/udp\] or T\[\/udp\] goes in a --publish of its own/,
  )
  refused(() => parsePublish('published=8080:80,target=80'), /published '8080:80' is not a port number/)
  refused(() => parsePublish('target=80/udp'), /target '80\/udp' is not a port number/)
  refused(() => parsePublish('8080:80,8081:81'), /one port per value: give -p once for each port/)
  refused(() => parsePublish('80,81'), /one port per value/)
})

test('short form mistakes: host addresses, ranges, protocols', () => {
  refused(() => parsePublish('127.0.0.1:8080:80'), /a host address \(IP:P:T\) cannot be given/)
  refused(() => parsePublish('8080:80:90'), /a host address/)
  refused(() => parsePublish('8080-8081:80-81'), /one port here, not a range/)
  refused(() => parsePublish('80-81'), /one port here, not a range/)
  refused(() => parsePublish('8080:80/sctp'), /sctp is not supported/)
  refused(() => parsePublish('8080:80/UDP'), /unknown protocol 'UDP'/)
  refused(() => parsePublish('8080:80/'), /unknown protocol ''/)
  refused(() => parsePublish('8080:80/udp/tcp'), /unknown protocol 'udp\/tcp'/)
})

test('flag-like words given as the value are refused as values, never taken for flags', () => {
  for (const spec of ['--name', '-p', '--', '--publish=80:80', '-80:80'])
    refused(() => parsePublish(spec), /invalid --publish/, spec)
  refused(() => parsePublish('--name=web'), /unknown key '--name'/)
})

test('the flag named in the refusal is the one used', () => {
  refused(() => parsePublish('x', '--publish-add'), /^invalid --publish-add 'x'/)
  refused(() => parsePortRef('x', 'unpublish'), /^invalid unpublish 'x'/)
})

test('a port to remove: P or P/udp; a target or the long form is refused', () => {
  assert.deepEqual(parsePortRef('8080'), {published: 8080, protocol: 'tcp'})
  assert.deepEqual(parsePortRef('53/udp'), {published: 53, protocol: 'udp'})
  assert.deepEqual(parsePortRef('53/tcp'), {published: 53, protocol: 'tcp'})
  refused(() => parsePortRef('8080:80'), /give the published port alone/)
  refused(() => parsePortRef('published=8080'), /give the published port alone/)
  refused(() => parsePortRef('0'), /'0' is not a port number/)
  refused(() => parsePortRef('65536'), /'65536' is not a port number/)
  refused(() => parsePortRef(''), /published port is empty/)
  refused(() => parsePortRef('53/sctp'), /sctp is not supported/)
  refused(() => parsePortRef('--publish-rm'), /is not a port number/)
})

test('the API checks what any client sends, field by field', () => {
  assert.deepEqual(checkPortRequest({target: 80}, 0), {target: 80, protocol: 'tcp', mode: 'ingress'})
  assert.deepEqual(checkPortRequest({published: 8080, target: 80, protocol: 'udp', mode: 'host'}, 0), {
    published: 8080,
    target: 80,
    protocol: 'udp',
    mode: 'host',
  })
  refused(() => checkPortRequest('8080:80', 0), /port #1: not an object/)
  refused(() => checkPortRequest({published: '8080', target: 80}, 1), /port #2: 'published' is not a port number/)
  refused(() => checkPortRequest({published: 0, target: 80}, 0), /'published' is not a port number/)
  refused(() => checkPortRequest({target: 80.5}, 0), /'target' is not a port number/)
  refused(() => checkPortRequest({published: 80}, 0), /'target' is not a port number/)
  refused(() => checkPortRequest({target: 80, protocol: 'sctp'}, 0), /'protocol' is not tcp or udp/)
  refused(() => checkPortRequest({target: 80, mode: 'global'}, 0), /'mode' is not ingress or host/)
  refused(() => checkPortRequest({target: 80, extra: 1}, 0), /unknown key 'extra'/)
  assert.deepEqual(checkPortRef({published: 53, protocol: 'udp'}, 0), {published: 53, protocol: 'udp'})
  refused(() => checkPortRef({published: 53, target: 53}, 0), /unknown key 'target'/)
  refused(() => checkPortRef({published: 70000}, 0), /'published' is not a port number/)
})

test('shown as Docker shows them: *:P->T/proto for ingress, sorted by protocol then published', () => {
  const ports = [
    {published: 9000, target: 90, protocol: 'udp', mode: 'ingress'},
    {published: 8081, target: 81, protocol: 'tcp', mode: 'host'},
    {published: 8080, target: 80, protocol: 'tcp', mode: 'ingress'},
  ] as const
  assert.deepEqual(
    sortPorts(ports).map((p) => p.published),
    [8080, 8081, 9000],
  )
  assert.equal(formatIngressPort(ports[2]), '*:8080->80/tcp')
  assert.equal(formatPort(ports[0]), '*:9000->90/udp')
  assert.equal(formatPort(ports[1]), '8081->81/tcp (host)')
})

test('the store refuses malformed ports of a service', () => {
  const base = {id: 's', name: 'web', mode: {replicas: 1}, networks: [], command: [], createdAt: 1, updatedAt: 1}
  const port = {published: 8080, target: 80, protocol: 'tcp', mode: 'ingress'}
  assert.equal(valueProblem('service/s', base), undefined)
  assert.equal(valueProblem('service/s', {...base, ports: [port]}), undefined)
  assert.equal(valueProblem('service/s', {...base, ports: [port, {...port, protocol: 'udp'}]}), undefined)
  for (const [ports, said, extra] of [
    ['8080:80', /'ports' is not a list/, {}],
    [[{...port, published: 0}], /port #0: 'published' is not an integer 1-65535/, {}],
    [[{...port, target: 65536}], /'target' is not an integer 1-65535/, {}],
    [[{target: 80, protocol: 'tcp', mode: 'ingress'}], /'published' is not an integer/, {}],
    [[{...port, protocol: 'sctp'}], /'protocol' is not one of tcp, udp/, {}],
    [[{...port, mode: 'global'}], /'mode' is not one of ingress, host/, {}],
    [[port, {...port, target: 81}], /port #1: 8080\/tcp a second time/, {}],
    [[port], /a dnsrr service has no ingress ports/, {endpointMode: 'dnsrr'}],
  ] as const) {
    assert.match(valueProblem('service/s', {...base, ...extra, ports}) ?? '', said)
  }
  assert.equal(valueProblem('service/s', {...base, endpointMode: 'dnsrr', ports: [{...port, mode: 'host'}]}), undefined)
})

test('port ranges, as Docker expands them: equal ranges pair up, a published range to one target, a target range allocated', () => {
  const tcp = (published: number | undefined, target: number) => ({
    ...(published === undefined ? {} : {published}),
    target,
    protocol: 'tcp',
    mode: 'ingress',
  })
  assert.deepEqual(parsePublishes('8000-8002:80-82'), [tcp(8000, 80), tcp(8001, 81), tcp(8002, 82)])
  assert.deepEqual(parsePublishes('8000-8010:80-90').length, 11)
  assert.deepEqual(parsePublishes('8000-8002:80'), [tcp(8000, 80), tcp(8001, 80), tcp(8002, 80)])
  assert.deepEqual(parsePublishes('80-82'), [tcp(undefined, 80), tcp(undefined, 81), tcp(undefined, 82)])
  assert.deepEqual(parsePublishes('53-54:53-54/udp'), [
    {published: 53, target: 53, protocol: 'udp', mode: 'ingress'},
    {published: 54, target: 54, protocol: 'udp', mode: 'ingress'},
  ])
  assert.deepEqual(parsePublishes('8080-8080:80'), [tcp(8080, 80)], 'a range of one is one port')
  assert.deepEqual(parsePublishes('published=8000-8001,target=80-81,mode=host'), [
    {published: 8000, target: 80, protocol: 'tcp', mode: 'host'},
    {published: 8001, target: 81, protocol: 'tcp', mode: 'host'},
  ])
  assert.deepEqual(parsePublishes('published=9000-9001,target=80'), [tcp(9000, 80), tcp(9001, 80)])
  assert.deepEqual(parsePublishes('target=80-81'), [tcp(undefined, 80), tcp(undefined, 81)])
  assert.deepEqual(parsePublishes('8080:80'), [tcp(8080, 80)], 'a single port is a list of one')
})

test('bad ranges: one line naming what was typed', () => {
  refused(
    () => parsePublishes('8000-8010:80-85'),
    /published 8000-8010 \(11 ports\) and target 80-85 \(6 ports\) differ in size/,
    '8000-8010:80-85',
  )
  refused(() => parsePublishes('8000:80-85'), /published 8000 \(1 port\) and target 80-85 \(6 ports\) differ in size/)
  refused(() => parsePublishes('published=8000-8001,target=80-82'), /differ in size/)
  refused(() => parsePublishes('8010-8000:80'), /published port range '8010-8000' ends before it starts/)
  refused(() => parsePublishes('target=90-80'), /target range '90-80' ends before it starts/)
  refused(() => parsePublishes('8000-:80'), /published port range end is empty/)
  refused(() => parsePublishes('8000-x:80'), /published port range end 'x' is not a port number/)
  refused(() => parsePublishes('8000-70000:80'), /range end '70000' is not a port number 1-65535/)
  refused(() => parsePublishes('0-5:80'), /range start '0' is not a port number/)
  refused(() => parsePublishes('1-2000'), /target port range '1-2000' has 2000 ports: at most 1024 in one range/)
  refused(() => parsePublishes('8000-8002:80-81', '--publish-add'), /^invalid --publish-add '8000-8002:80-81': published/)
  refused(() => parsePublishes('1-2-3:80'), /is not a port number/)
})
