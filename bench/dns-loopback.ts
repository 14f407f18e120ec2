// The TypeScript DNS responder against dnsmasq on loopback, no lab: the quick loop for profiling
// the responder (`--prof` on this process profiles it alone). Both answer `web A` from the same
// data; dnsperf asks each in turn for SECONDS, `--runs N` times (default 5), median (min-max).
// The responder twice: as it runs (UDP in batches on a thread of its own, src/dns/udp-batch.ts)
// and with one dgram socket on the main loop (as before that thread). A fourth server is the
// ceiling of a responder on one dgram socket: an echo in this process that sets QR and sends
// the question back (one recvmsg and one sendmsg per query, no DNS work). Beside q/s, each
// server's CPU time per answered question (this process's for the three in it, dnsmasq's own),
// which the machine's load moves less than q/s.
//
//   node --import tsx bench/dns-loopback.ts [--runs N] [--seconds S]
//
// Loopback only: the responder sees the asker 127.0.0.1 as a task of `front`.
import {spawn} from 'node:child_process'
import {createSocket} from 'node:dgram'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import type {NameTable} from '../src/dns/names.js'
import {DnsServer} from '../src/dns/server.js'
import {fmtSpread, spread} from './summary.js'

const arg = (n: string, d: number) => {
  const i = process.argv.indexOf(n)
  return i >= 0 ? Number(process.argv[i + 1]) : d
}
const RUNS = arg('--runs', 5)
const SECONDS = arg('--seconds', 3)
const ASKER = '127.0.0.1'
const table: NameTable = {
  networks: new Map([
    [
      'front',
      {
        id: 'front',
        name: 'front',
        a: new Map([['web', {ips: ['10.0.1.2'], rotate: false, kind: 'service' as const}]]),
        ptr: new Map([['10.0.1.2', 'web']]),
        srv: new Map(),
      },
    ],
  ]),
  scopes: new Map([[ASKER, ['front']]]),
  known: new Set(['web']),
  askers: new Map([[ASKER, 't']]),
}

async function freePort(): Promise<number> {
  const s = createSocket('udp4')
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r))
  const p = s.address().port
  s.close()
  return p
}

/** A process's CPU time so far (user + system, all threads), ms. */
function cpuMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100 // USER_HZ
}

/**
 * dnsperf in a child, asynchronously (the responder runs in this process and must keep its
 * loop): q/s, and `pid`'s CPU time per completed question (us).
 */
function dnsperf(port: number, file: string, pid: number): Promise<{qps: number; usPerQuery: number}> {
  return new Promise((resolve, reject) => {
    const c0 = cpuMs(pid)
    const c = spawn('dnsperf', ['-s', '127.0.0.1', '-p', String(port), '-d', file, '-l', String(SECONDS), '-q', '64'])
    let out = ''
    c.stdout.on('data', (d: Buffer) => (out += d.toString()))
    c.on('error', reject)
    c.on('close', () => {
      const done = Number(/Queries completed:\s+(\d+)/.exec(out)?.[1] ?? NaN)
      resolve({
        qps: Number(/Queries per second:\s+([\d.]+)/.exec(out)?.[1] ?? NaN),
        usPerQuery: ((cpuMs(pid) - c0) * 1000) / done,
      })
    })
  })
}

const tmp = mkdtempSync(join(tmpdir(), 'sn-dnsloop-'))
const [rport, dport, mport, eport] = [await freePort(), await freePort(), await freePort(), await freePort()]
const echo = createSocket({type: 'udp4', lookup: (address, _o, cb) => cb(null, address, 4)})
echo.on('message', (m, r) => {
  m.writeUInt16BE(m.readUInt16BE(2) | 0x8000, 2)
  echo.send(m, r.port, r.address)
})
await new Promise<void>((r) => echo.bind(eport, '127.0.0.1', r))
const server = new DnsServer({addr: '127.0.0.1', port: rport, ttl: 5, upstreams: [], names: () => table, log: () => undefined})
await server.start()
const dgram = new DnsServer({
  addr: '127.0.0.1',
  port: dport,
  ttl: 5,
  upstreams: [],
  names: () => table,
  log: () => undefined,
  udp: 'dgram',
})
await dgram.start()
writeFileSync(join(tmp, 'hosts'), '10.0.1.2 web\n')
writeFileSync(join(tmp, 'queries'), 'web A\n')
const dnsmasq = spawn(
  'dnsmasq',
  [
    '--keep-in-foreground',
    '--no-resolv',
    '--no-hosts',
    `--addn-hosts=${join(tmp, 'hosts')}`,
    '--bind-interfaces',
    '--listen-address=127.0.0.1',
    `--port=${mport}`,
    '--user=root',
    '--pid-file=',
    '--local-ttl=5',
  ],
  {stdio: 'ignore'},
)
try {
  await new Promise((r) => setTimeout(r, 500))
  const names = ['responder', 'responder on dgram', 'dnsmasq', 'node echo'] as const
  const servers: [number, number][] = [
    [rport, process.pid],
    [dport, process.pid],
    [mport, dnsmasq.pid!],
    [eport, process.pid],
  ]
  const got = names.map(() => ({qps: [] as number[], us: [] as number[]}))
  for (let i = 0; i < RUNS; i++) {
    for (const [k, [port, pid]] of servers.entries()) {
      const r = await dnsperf(port, join(tmp, 'queries'), pid)
      got[k]!.qps.push(r.qps)
      got[k]!.us.push(r.usPerQuery)
    }
    console.error(`[dns-loopback] run ${i + 1}: ${names.map((n, k) => `${n} ${got[k]!.qps[i]!.toFixed(0)} q/s`).join(', ')}`)
  }
  const f0 = (x: number) => x.toFixed(0)
  const f2 = (x: number) => x.toFixed(2)
  for (const [k, n] of names.entries())
    console.log(`${n.padEnd(20)} ${fmtSpread(spread(got[k]!.qps), f0)} q/s   ${fmtSpread(spread(got[k]!.us), f2)} us CPU/query`)
  const med = (k: number) => spread(got[k]!.qps).median
  console.log(
    `responder/dnsmasq ${(med(0) / med(2)).toFixed(2)}; responder on dgram/dnsmasq ${(med(1) / med(2)).toFixed(2)}; responder/echo ${(med(0) / med(3)).toFixed(2)}`,
  )
} finally {
  await server.stop()
  await dgram.stop()
  echo.close()
  dnsmasq.kill('SIGKILL')
  rmSync(tmp, {recursive: true, force: true})
}
