import assert from 'node:assert/strict'
import {describe, it, test} from 'node:test'
import fc from 'fast-check'
import {UserError} from '../../src/model/errors.js'
import {
  broadcast,
  cidrContains,
  cidrOverlaps,
  formatCidr,
  formatIpv4,
  isIpv4,
  networkOf,
  nthHost,
  parseCidr,
  parseIpv4,
} from '../../src/model/ipv4.js'
import {checkDataPathPort, checkName, checkPort} from '../../src/model/validate.js'

describe('ipv4', () => {
  it('parses and formats addresses', () => {
    assert.equal(parseIpv4('10.0.0.1'), 0x0a000001)
    assert.equal(formatIpv4(0xffffffff), '255.255.255.255')
    assert.equal(formatIpv4(parseIpv4('192.168.1.254')), '192.168.1.254')
    for (const bad of ['1.2.3', '1.2.3.4.5', '256.0.0.1', '01.2.3.4', '1.2.3.-4', ' 1.2.3.4', 'a.b.c.d', '']) {
      assert.equal(isIpv4(bad), false, bad)
    }
    assert.throws(() => parseIpv4('1.2.3'), /invalid IPv4 address '1.2.3'/)
  })

  it('reads exactly the canonical spelling (the same as a split and a regular expression per part)', () => {
    // The reference: what tryParseIpv4 was before it read character codes.
    const reference = (text: string): number | undefined => {
      const parts = text.split('.')
      if (parts.length !== 4) return undefined
      let n = 0
      for (const p of parts) {
        if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return undefined
        const b = Number(p)
        if (b > 255) return undefined
        n = n * 256 + b
      }
      return n
    }
    const parse = (t: string) => (isIpv4(t) ? parseIpv4(t) : undefined)
    // Strings near addresses: digits, dots and a few others, and dotted quads of small numbers.
    const near = fc.oneof(
      fc.string({unit: fc.constantFrom('0', '1', '2', '5', '9', '.', ' ', '-', '+', 'a', '\u0660'), maxLength: 18}),
      fc
        .tuple(...Array.from({length: 4}, () => fc.oneof(fc.nat(300), fc.constantFrom('00', '01', '007', '', '1000'))))
        .map((p) => p.join('.')),
    )
    fc.assert(
      fc.property(near, (t) => assert.equal(parse(t), reference(t), JSON.stringify(t))),
      {numRuns: 20000},
    )
    for (let n = 0; n < 2 ** 32; n += 65521) assert.equal(parseIpv4(formatIpv4(n)), n)
    assert.equal(formatIpv4(0), '0.0.0.0')
  })

  it('parses CIDRs and refuses bad ones with a clear message', () => {
    assert.deepEqual(parseCidr('10.0.0.0/8'), {addr: 0x0a000000, prefix: 8})
    assert.equal(formatCidr(parseCidr('0.0.0.0/0')), '0.0.0.0/0')
    assert.throws(
      () => parseCidr('10.0.0.0/33'),
      (e: unknown) => e instanceof UserError && e.message === "invalid CIDR '10.0.0.0/33': prefix must be 0-32",
    )
    assert.throws(() => parseCidr('10.0.0.0'), /invalid CIDR '10.0.0.0': expected ADDRESS\/PREFIX/)
    assert.throws(() => parseCidr('10.0.0/24'), /'10.0.0' is not an IPv4 address/)
    assert.throws(() => parseCidr('10.0.0.5/24'), /host bits are set, did you mean 10.0.0.0\/24\?/)
    assert.throws(() => parseCidr('10.0.0.0/-1'), /prefix must be 0-32/)
  })

  it('contains, overlaps, nth host, broadcast', () => {
    const a = parseCidr('10.0.0.0/16')
    const b = parseCidr('10.0.5.0/24')
    const c = parseCidr('10.1.0.0/24')
    assert.ok(cidrContains(a, parseIpv4('10.0.255.255')))
    assert.ok(!cidrContains(a, parseIpv4('10.1.0.0')))
    assert.ok(cidrOverlaps(a, b) && cidrOverlaps(b, a))
    assert.ok(!cidrOverlaps(a, c))
    assert.equal(formatIpv4(nthHost(b, 1)), '10.0.5.1')
    assert.equal(formatIpv4(broadcast(b)), '10.0.5.255')
    assert.equal(formatIpv4(broadcast(parseCidr('0.0.0.0/0'))), '255.255.255.255')
    assert.throws(() => nthHost(b, 256), /outside 10.0.5.0\/24/)
  })
})

describe('validate', () => {
  it('names follow Docker', () => {
    assert.equal(checkName('network', 'my-net_1.a'), 'my-net_1.a')
    assert.throws(() => checkName('network', '-x'), /invalid network name '-x'/)
    assert.throws(() => checkName('network', 'a b'), /must match/)
    assert.throws(() => checkName('network', 'a'.repeat(64)), /at most 63/)
    assert.throws(() => checkName('network', ''), /must not be empty/)
  })

  it('ports', () => {
    assert.equal(checkPort('port', '80'), 80)
    assert.throws(() => checkPort('port', 0), /invalid port '0'/)
    assert.equal(checkDataPathPort(4789), 4789)
    assert.throws(() => checkDataPathPort(1023), /1024-49151/)
    assert.throws(() => checkDataPathPort('49152'), /1024-49151/)
    assert.throws(() => checkDataPathPort('12x'), /invalid data path port/)
  })
})

test('networkOf: the network an address is on', () => {
  assert.equal(networkOf('172.18.0.1', 16), '172.18.0.0/16')
  assert.equal(networkOf('10.0.1.77', 24), '10.0.1.0/24')
  assert.equal(networkOf('10.0.1.77', 0), '0.0.0.0/0')
  assert.throws(() => networkOf('10.0.1', 24))
})
