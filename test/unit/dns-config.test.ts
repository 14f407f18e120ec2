// init --dns / --dns-ttl as a person types them: checked whole, one clear line; and where a node forwards.
import assert from 'node:assert/strict'
import {test} from 'node:test'
import {checkDnsSpec, dnsTtl, nodeUpstreams} from '../../src/dns/config.js'
import {valueProblem} from '../../src/model/shape.js'

test('--dns and --dns-ttl: addresses and a TTL in range, or one line naming the bad word', () => {
  assert.deepEqual(checkDnsSpec({servers: ['10.0.0.53', '10.0.0.53', '1.1.1.1'], ttl: 10}), {
    servers: ['10.0.0.53', '1.1.1.1'],
    ttl: 10,
  })
  assert.deepEqual(checkDnsSpec({servers: [], ttl: undefined}), {})
  assert.throws(
    () => checkDnsSpec({servers: ['--dns-ttl']}),
    /^UserError: invalid --dns '--dns-ttl': must be an IPv4 address$|invalid --dns '--dns-ttl'/,
  )
  assert.throws(() => checkDnsSpec({servers: ['dns.example']}), /invalid --dns 'dns.example'/)
  assert.throws(() => checkDnsSpec({ttl: -1}), /invalid --dns-ttl '-1'/)
  assert.throws(() => checkDnsSpec({ttl: 3601}), /0-3600/)
  assert.equal(dnsTtl(undefined), 5)
})

test("a node forwards to the cluster's --dns, else to its own resolv.conf's nameservers, never to itself", () => {
  const conf = 'nameserver 10.255.255.53\nnameserver 172.18.0.1\nnameserver ::1\nsearch x\n'
  assert.deepEqual(nodeUpstreams(undefined, conf, '172.18.0.1'), [{host: '10.255.255.53', port: 53}])
  assert.deepEqual(nodeUpstreams({servers: ['172.30.0.100']}, conf, '172.18.0.1'), [{host: '172.30.0.100', port: 53}])
})

test('the cluster record refuses a malformed dns setting', () => {
  const c = {id: 'c', createdAt: 0, dataPathPort: 4789, defaultAddrPool: '10.0.0.0/8', subnetSize: 24}
  assert.equal(valueProblem('cluster', {...c, dns: {servers: ['10.0.0.1'], ttl: 5}}), undefined)
  assert.match(valueProblem('cluster', {...c, dns: {servers: ['x']}}) ?? '', /dns: 'servers'/)
  assert.match(valueProblem('cluster', {...c, dns: {ttl: 1.5}}) ?? '', /dns: 'ttl'/)
})
