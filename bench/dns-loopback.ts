// The TypeScript DNS responder against dnsmasq on loopback, no lab: the quick loop for profiling
// the responder (`--prof` on this process profiles it alone). Both answer `web A` from the same
// data; dnsperf asks each in turn for SECONDS, `--runs N` times (default 5), median (min-max).
// A third server is the ceiling of any responder on one Node UDP socket: an echo in this process
// that sets QR and sends the question back (one recvmsg and one sendmsg per query, no DNS work).
//
//   node --import tsx bench/dns-loopback.ts [--runs N] [--seconds S]
//
// Loopback only: the responder sees the asker 127.0.0.1 as a task of `front`.
import {spawn} from 'node:child_process'
import {createSocket} from 'node:dgram'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
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

/** dnsperf in a child, asynchronously: the responder runs in this process and must keep its loop. */
function dnsperf(port: number, file: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const c = spawn('dnsperf', ['-s', '127.0.0.1', '-p', String(port), '-d', file, '-l', String(SECONDS), '-q', '64'])
    let out = ''
    c.stdout.on('data', (d: Buffer) => (out += d.toString()))
    c.on('error', reject)
    c.on('close', () => resolve(Number(/Queries per second:\s+([\d.]+)/.exec(out)?.[1] ?? NaN)))
  })
}

const tmp = mkdtempSync(join(tmpdir(), 'sn-dnsloop-'))
const [rport, mport, eport] = [await freePort(), await freePort(), await freePort()]
const echo = createSocket({type: 'udp4', lookup: (address, _o, cb) => cb(null, address, 4)})
echo.on('message', (m, r) => {
  m.writeUInt16BE(m.readUInt16BE(2) | 0x8000, 2)
  echo.send(m, r.port, r.address)
})
await new Promise<void>((r) => echo.bind(eport, '127.0.0.1', r))
const server = new DnsServer({addr: '127.0.0.1', port: rport, ttl: 5, upstreams: [], names: () => table, log: () => undefined})
await server.start()
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
  const r: number[] = []
  const m: number[] = []
  const e: number[] = []
  for (let i = 0; i < RUNS; i++) {
    r.push(await dnsperf(rport, join(tmp, 'queries')))
    m.push(await dnsperf(mport, join(tmp, 'queries')))
    e.push(await dnsperf(eport, join(tmp, 'queries')))
    console.error(
      `[dns-loopback] run ${i + 1}: responder ${r[i]!.toFixed(0)} q/s, dnsmasq ${m[i]!.toFixed(0)} q/s, node echo ${e[i]!.toFixed(0)} q/s`,
    )
  }
  const f = (x: number) => x.toFixed(0)
  console.log(
    `responder ${fmtSpread(spread(r), f)} q/s; dnsmasq ${fmtSpread(spread(m), f)} q/s; node echo ${fmtSpread(spread(e), f)} q/s`,
  )
  console.log(
    `responder/dnsmasq ${(spread(r).median / spread(m).median).toFixed(2)}; responder/echo ${(spread(r).median / spread(e).median).toFixed(2)}`,
  )
} finally {
  server.stop()
  echo.close()
  dnsmasq.kill('SIGKILL')
  rmSync(tmp, {recursive: true, force: true})
}
