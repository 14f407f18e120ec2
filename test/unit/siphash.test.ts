// SipHash-2-4 against the reference vectors of its paper (key 00..0f, message 00..len-1).

import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {siphash24} from '../../src/dataplane/siphash.js'

const KEY = Buffer.from([...Array(16).keys()])
const msg = (len: number): Buffer => Buffer.from([...Array(len).keys()])

describe('siphash24', () => {
  it('matches the reference vectors (empty, 7, 8, 15 and 32 bytes)', () => {
    // vectors.h of the reference implementation, as the 8 output bytes.
    assert.equal(siphash24(KEY, msg(0)).toString('hex'), '310e0edd47db6f72')
    assert.equal(siphash24(KEY, msg(7)).toString('hex'), '37d1018bf50002ab')
    assert.equal(siphash24(KEY, msg(8)).toString('hex'), '6224939a79f5f593')
    assert.equal(siphash24(KEY, msg(15)).toString('hex'), 'e545be4961ca29a1')
    assert.equal(siphash24(KEY, msg(32)).toString('hex'), 'ce7cf2722f512771')
  })

  it('refuses a key that is not 16 bytes', () => {
    assert.throws(() => siphash24(Buffer.alloc(8), msg(1)), /16 bytes/)
  })
})
