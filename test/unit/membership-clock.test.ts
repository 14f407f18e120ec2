// The agent's clock for the membership protocol (src/membership/clock.ts realClock): a timer that
// came due while the event loop was held runs only after what arrived meanwhile was read, so a
// probe whose ack waits in the socket is not judged failed (real UDP sockets on loopback).
import assert from 'node:assert/strict'
import {createSocket, type Socket} from 'node:dgram'
import {once} from 'node:events'
import {test} from 'node:test'
import {realClock} from '../../src/membership/clock.js'

const bound = async (s: Socket): Promise<number> => {
  s.bind(0, '127.0.0.1')
  await once(s, 'listening')
  return s.address().port
}

test('a timer due while the loop was held runs after the datagram that arrived meanwhile', async () => {
  const rx = createSocket('udp4')
  const tx = createSocket('udp4')
  try {
    const port = await bound(rx)
    await bound(tx)
    tx.connect(port, '127.0.0.1')
    await once(tx, 'connect')
    const order: string[] = []
    const got = once(rx, 'message').then(() => order.push('datagram'))
    const fired = new Promise<void>((resolve) =>
      realClock.after(10, () => {
        order.push('timer')
        resolve()
      }),
    )
    // The "ack" leaves now (a connected socket sends at once) and waits in rx's buffer while the
    // loop is held past the timer's time, as a long pass holds it.
    tx.send('ack')
    const t0 = Date.now()
    while (Date.now() - t0 < 60) {
      // held
    }
    await Promise.all([got, fired])
    assert.deepEqual(order, ['datagram', 'timer'])
  } finally {
    rx.close()
    tx.close()
  }
})

test('a cancelled timer does not run, also once due', async () => {
  let ran = false
  const cancel = realClock.after(5, () => (ran = true))
  const t0 = Date.now()
  while (Date.now() - t0 < 20) {
    // due meanwhile
  }
  cancel()
  await new Promise((resolve) => setTimeout(resolve, 30))
  assert.equal(ran, false)
})
