import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {generateKey, Keyring, SEAL_OVERHEAD} from '../../src/gossip/keyring.js'

describe('keyring', () => {
  const msg = Buffer.from('{"t":"ping","from":"a","seq":1}')

  it('round trips, with a fixed overhead and a fresh nonce each time', () => {
    const k = new Keyring(generateKey())
    const a = k.seal(msg)
    const b = k.seal(msg)
    assert.equal(a.length, msg.length + SEAL_OVERHEAD)
    assert.notDeepEqual(a, b)
    assert.deepEqual(k.open(a), msg)
    assert.deepEqual(k.open(b), msg)
  })

  it('wrong key, tampered byte, truncated or garbage -> undefined', () => {
    const k = new Keyring(generateKey())
    const other = new Keyring(generateKey())
    const p = k.seal(msg)
    assert.equal(other.open(p), undefined)
    for (let i = 0; i < p.length; i++) {
      const t = Buffer.from(p)
      t[i] = (t[i] as number) ^ 0x01
      assert.equal(k.open(t), undefined, `byte ${i}`)
    }
    assert.equal(k.open(p.subarray(0, p.length - 1)), undefined)
    assert.equal(k.open(p.subarray(0, 10)), undefined)
    assert.equal(k.open(Buffer.alloc(0)), undefined)
    assert.equal(k.open(Buffer.from('hello world, not a packet at all')), undefined)
  })

  it('rotates: install, use, remove; old packets open while the old key is held', () => {
    const k1 = generateKey()
    const k = new Keyring(k1)
    const old = k.seal(msg)
    k.install(1, generateKey())
    k.use(1)
    const fresh = k.seal(msg)
    assert.equal(fresh[1], 1)
    assert.deepEqual(k.open(old), msg)
    assert.throws(() => k.remove(1), /primary key cannot be removed/)
    k.remove(0)
    assert.equal(k.open(old), undefined)
    assert.deepEqual(k.open(fresh), msg)
    assert.throws(() => k.install(2, Buffer.alloc(16)), /32 bytes/)
  })
})
