import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {generateIdentity} from '../../src/gossip/identity.js'
import {generateToken, parseToken, rotateToken, tokenMatchesIdentity} from '../../src/gossip/token.js'

describe('join token', () => {
  const id = generateIdentity()

  it("has Swarm's format and pins the identity", () => {
    const t = generateToken(id.publicKey)
    assert.match(t.text, /^SWMTKN-1-[0-9a-z]{50}-[0-9a-z]{25}$/)
    assert.deepEqual(parseToken(t.text), t)
    assert.ok(tokenMatchesIdentity(t, id.publicKey))
    assert.ok(!tokenMatchesIdentity(t, generateIdentity().publicKey))
    assert.notEqual(generateToken(id.publicKey).secret, t.secret)
  })

  it('parse errors say what is wrong', () => {
    const good = generateToken(id.publicKey).text
    assert.throws(() => parseToken('hello'), /invalid join token: it must start with SWMTKN-1-/)
    assert.throws(() => parseToken(good.replace('SWMTKN-1', 'SWMTKN-2')), /unsupported version '2'/)
    assert.throws(() => parseToken('SWMTKN-1-abc'), /expected SWMTKN-1-<digest>-<secret>/)
    assert.throws(() => parseToken(`SWMTKN-1-${'A'.repeat(50)}-${'a'.repeat(25)}`), /digest must be 50 base36/)
    assert.throws(() => parseToken(`${good}x`), /secret must be 25 base36/)
    assert.deepEqual(parseToken(` ${good}\n`).text, good)
  })

  it('rotate keeps the digest and changes the secret', () => {
    const t = generateToken(id.publicKey)
    const r = rotateToken(t.text)
    assert.equal(r.digest, t.digest)
    assert.notEqual(r.secret, t.secret)
  })
})
