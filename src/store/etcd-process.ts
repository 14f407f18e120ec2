// One etcd member as a child process (Debian's etcd-server): what the tests,
// the benchmark and the lab start. swarmnet itself only ever talks to an etcd
// it is given (--etcd-endpoints); starting one is for a lab or a test.
import {spawn, type ChildProcess} from 'node:child_process'
import {mkdirSync, openSync, closeSync, readFileSync} from 'node:fs'
import {createServer} from 'node:net'
import {join} from 'node:path'
import {nsenterArgv} from '../sys/netns.js'

export type EtcdTls = {ca: string; cert: string; key: string}

export type EtcdMemberSpec = {
  name: string
  dataDir: string
  /** Where clients and peers reach it (one address; scheme follows tls). */
  host: string
  clientPort: number
  peerPort: number
  /** name=peerURL for every member of the cluster (this one included). */
  initialCluster: string
  /** Same for every member of one cluster. */
  clusterToken: string
  /** Server and peer certificates (client certificates are then required too). */
  tls?: EtcdTls
  /** Run inside this network namespace (ip netns exec). */
  netns?: string
  /** The binary; default etcd from PATH. */
  binary?: string
  /** Outlives the process that starts it (the lab): not waited for, not killed with it. */
  detached?: boolean
}

export type EtcdMember = {
  spec: EtcdMemberSpec
  clientUrl: string
  proc: ChildProcess
  /** stdout and stderr go here (the member's data dir). */
  logFile: string
}

export const scheme = (tls: EtcdTls | undefined) => (tls ? 'https' : 'http')
export const peerUrl = (s: Pick<EtcdMemberSpec, 'host' | 'peerPort' | 'tls'>) => `${scheme(s.tls)}://${s.host}:${s.peerPort}`
export const clientUrl = (s: Pick<EtcdMemberSpec, 'host' | 'clientPort' | 'tls'>) =>
  `${scheme(s.tls)}://${s.host}:${s.clientPort}`

export function etcdArgs(s: EtcdMemberSpec): string[] {
  const args = [
    '--name',
    s.name,
    '--data-dir',
    s.dataDir,
    '--listen-client-urls',
    clientUrl(s),
    '--advertise-client-urls',
    clientUrl(s),
    '--listen-peer-urls',
    peerUrl(s),
    '--initial-advertise-peer-urls',
    peerUrl(s),
    '--initial-cluster',
    s.initialCluster,
    '--initial-cluster-token',
    s.clusterToken,
    '--initial-cluster-state',
    'new',
    // Small and quick: a lab's members share two cores with everything else.
    '--heartbeat-interval',
    '100',
    '--election-timeout',
    '1000',
    '--quota-backend-bytes',
    String(256 << 20),
    // A placement pass is one transaction: its tasks and their addresses (etcd's default is 128).
    '--max-txn-ops',
    '8192',
    '--logger',
    'zap',
    '--log-outputs',
    'stderr',
  ]
  if (s.tls) {
    args.push('--cert-file', s.tls.cert, '--key-file', s.tls.key, '--trusted-ca-file', s.tls.ca, '--client-cert-auth')
    args.push('--peer-cert-file', s.tls.cert, '--peer-key-file', s.tls.key, '--peer-trusted-ca-file', s.tls.ca)
    args.push('--peer-client-cert-auth')
  }
  return args
}

/** Starts the member; it is up once a client can reach it (see the callers' wait). */
export function startEtcdMember(spec: EtcdMemberSpec): EtcdMember {
  mkdirSync(spec.dataDir, {recursive: true, mode: 0o700})
  const logFile = join(spec.dataDir, 'etcd.log')
  const fd = openSync(logFile, 'a')
  const bin = spec.binary ?? 'etcd'
  const argv = spec.netns ? nsenterArgv(spec.netns, [bin, ...etcdArgs(spec)]) : [bin, ...etcdArgs(spec)]
  const proc = spawn(argv[0]!, argv.slice(1), {stdio: ['ignore', fd, fd], detached: true})
  closeSync(fd)
  if (spec.detached) proc.unref()
  // A member that cannot start says why in its log; keep the error event from crashing the caller.
  proc.on('error', () => undefined)
  return {spec, clientUrl: clientUrl(spec), proc, logFile}
}

/** The last lines of the member's log: what to show when it does not come up. */
export function etcdLogTail(m: EtcdMember, lines = 5): string {
  try {
    return readFileSync(m.logFile, 'utf8').trim().split('\n').slice(-lines).join('\n')
  } catch {
    return ''
  }
}

/** Stops the member for good (SIGKILL after graceMs) and waits for it. */
export async function stopEtcdMember(m: EtcdMember, graceMs = 2000): Promise<void> {
  if (m.proc.exitCode !== null || m.proc.signalCode !== null) return
  const gone = new Promise<void>((r) => m.proc.once('exit', () => r()))
  m.proc.kill('SIGTERM')
  const t = setTimeout(() => m.proc.kill('SIGKILL'), graceMs)
  await gone
  clearTimeout(t)
}

/** A TCP port free on 127.0.0.1 right now (the kernel's pick). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const a = s.address()
      const port = typeof a === 'object' && a ? a.port : 0
      s.close(() => resolve(port))
    })
  })
}
