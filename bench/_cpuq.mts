// temp: CPU time per query of the responder (this process) and dnsmasq on loopback
import {spawn, spawnSync} from 'node:child_process'
import {readFileSync, writeFileSync, mkdtempSync} from 'node:fs'
import {join} from 'node:path'
import {tmpdir} from 'node:os'
import {DnsServer} from '../src/dns/server.ts'
const ASKER = '127.0.0.1'
const table: any = {networks: new Map([['front', {id: 'front', name: 'front', a: new Map([['web', {ips: ['10.0.1.2'], rotate: false, kind: 'service'}]]), ptr: new Map(), srv: new Map()}]]), scopes: new Map([[ASKER, ['front']]]), known: new Set(['web']), askers: new Map([[ASKER, 't']])}
const cpu = (pid: number | string) => { const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' '); return (Number(f[11]) + Number(f[12])) * 10 } // ms
const tmp = mkdtempSync(join(tmpdir(), 'cpuq-'))
writeFileSync(join(tmp, 'q'), 'web A\n'); writeFileSync(join(tmp, 'h'), '10.0.1.2 web\n')
const s = new DnsServer({addr: '127.0.0.1', port: 15401, ttl: 5, upstreams: [], names: () => table, log: console.log})
await s.start()
const dm = spawn('dnsmasq', ['--keep-in-foreground', '--no-resolv', '--no-hosts', `--addn-hosts=${join(tmp, 'h')}`, '--bind-interfaces', '--listen-address=127.0.0.1', '--port=15402', '--user=root', '--pid-file=', '--local-ttl=5'], {stdio: 'ignore'})
await new Promise((r) => setTimeout(r, 500))
const perf = (port: number) => new Promise<number>((res) => { const c = spawn('dnsperf', ['-s', '127.0.0.1', '-p', String(port), '-d', join(tmp, 'q'), '-l', '3', '-q', '64']); let o = ''; c.stdout.on('data', (d) => (o += d)); c.on('close', () => res(Number(/Queries completed:\s+(\d+)/.exec(o)?.[1]))) })
for (let i = 0; i < Number(process.argv[2] ?? 3); i++) {
  for (const [name, port, pid] of [['responder', 15401, process.pid], ['dnsmasq', 15402, dm.pid!]] as const) {
    const c0 = cpu(pid); const n = await perf(port); const c1 = cpu(pid)
    console.log(`${name}: ${(n / 3 / 1000).toFixed(1)}k q/s, ${(((c1 - c0) * 1000) / n).toFixed(2)} us CPU/query`)
  }
}
dm.kill(); await s.stop()
