// Path MTU and ICMP errors on a published port, in a 2-node lab (issue 19, hole 7). The lab's
// client (sn-lab-client, 172.30.0.100) sits on a 1500-byte link; the ingress network carries
// 1450. A UDP datagram of 1500 bytes with DF (Linux sets it on UDP by default) to a published
// port is answered with ICMP "fragmentation needed" from the published address, which the
// client's kernel records as the path MTU (`ip route get` shows it cached) and reports to the
// socket (EMSGSIZE), through the node that runs the task and through the one that does not.
// A published port whose target nothing
// listens on: the task's "port unreachable" reaches the client translated, so its connected
// socket fails at once instead of waiting.
import assert from 'node:assert/strict'
import {describe, test} from 'node:test'
import {eventually, inNs, json, ok} from './helpers.js'
import {withLab} from './lab.js'
import {allRunning} from './service-tasks.js'

const CLIENT_NS = 'sn-lab-client'
const NODES = {n1: '172.30.0.11', n2: '172.30.0.12'} as const

// A UDP echo on 53; nothing listens on 54.
const UDP_ECHO = `require('node:dgram').createSocket('udp4').on('message', function (m, r) { this.send('ok ' + m.length, r.port, r.address) }).bind(53)`

/**
 * From the client, one datagram of `size` bytes of payload on a connected socket: prints the
 * answer, or the socket's error code (a translated ICMP error reaches a connected socket).
 */
const udpSend = (addr: string, port: number, size: number) =>
  inNs(
    CLIENT_NS,
    [
      process.execPath,
      '-e',
      `const s = require('node:dgram').createSocket('udp4'); const t = setTimeout(() => { console.log('timeout'); process.exit(0) }, 1500);
       const done = (x) => { console.log(x); clearTimeout(t); s.close() };
       s.on('message', (m) => done(String(m))); s.on('error', (e) => done(e.code));
       s.connect(${port}, '${addr}', () => s.send(Buffer.alloc(${size}, 120)))`,
    ],
    10_000,
  )

/** The path MTU the client's kernel holds for `addr` (undefined: none cached). */
function cachedMtu(addr: string): number | undefined {
  const out = inNs(CLIENT_NS, ['ip', 'route', 'get', addr]).stdout
  const m = /\bmtu (\d+)/.exec(out)
  return m ? Number(m[1]) : undefined
}

describe('path MTU and ICMP errors on a published port, in a 2-node lab', {timeout: 300_000}, () => {
  withLab(['--nodes', '2'])

  test('a 1500-byte DF datagram gets "fragmentation needed" (1450) through both nodes; the client records it', async () => {
    ok('n1', [
      'service',
      'create',
      '--name',
      'echo',
      '--replicas',
      '1',
      '-p',
      '9053:53/udp',
      '-p',
      '9054:54/udp',
      '--',
      process.execPath,
      '-e',
      UDP_ECHO,
    ])
    const tasks = await allRunning(
      'echo',
      1,
      () => json<{node: string; state: string}[]>('n1', ['service', 'ps', 'echo']),
      60_000,
    )
    console.log(`the task runs on ${tasks[0]!.node}`)
    for (const [name, addr] of Object.entries(NODES)) {
      await eventually(
        `a small datagram echoed through ${name}`,
        () => udpSend(addr, 9053, 100).stdout.trim() === 'ok 100',
        20_000,
      )
      assert.equal(cachedMtu(addr), undefined, `${name}: no path MTU cached before`)
      // 1472 bytes of payload: a 1500-byte datagram, whole on the client's link, 50 too many for the ingress network.
      const big = udpSend(addr, 9053, 1472)
      // Linux tells a connected UDP socket of a "fragmentation needed" that quotes its datagram.
      assert.equal(big.stdout.trim(), 'EMSGSIZE', `${name}: the client's socket got the error`)
      assert.equal(cachedMtu(addr), 1450, `${name}: the client's kernel holds the MTU the node announced`)
    }
  })

  test("a target nothing listens on: the task's port unreachable reaches the client's socket through both nodes", async () => {
    for (const [name, addr] of Object.entries(NODES)) {
      const r = await eventually(
        `port unreachable through ${name}`,
        () => {
          const x = udpSend(addr, 9054, 10).stdout.trim()
          return x === 'ECONNREFUSED' ? x : undefined
        },
        20_000,
      )
      assert.equal(r, 'ECONNREFUSED')
    }
    ok('n1', ['service', 'rm', 'echo'])
  })
})
