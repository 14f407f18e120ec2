// The lab's etcd (lab up --store etcd): one member in each of the first
// `members` nodes' namespaces, on the node's lab address (2379 for clients,
// 2380 for peers), with TLS for clients and peers from a CA the lab makes with
// openssl. The managers reach it with a client certificate; workers never do.
// Everything lives under one directory that lab down removes; the members run
// in the lab's namespaces, so lab down's process sweep ends them too.
import {existsSync, mkdirSync, rmSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {STATE_ROOT} from '../sys/node-paths.js'
import {run} from '../sys/exec.js'
import {execIn} from '../sys/netns.js'
import {isAlive, readPidFile} from '../sys/proc.js'
import {clientUrl, peerUrl, startEtcdMember, type EtcdMemberSpec} from '../store/etcd-process.js'
import type {LabNode} from './state.js'

export const LAB_ETCD_DIR = join(STATE_ROOT, 'lab-etcd')
export const ETCD_CLIENT_PORT = 2379
export const ETCD_PEER_PORT = 2380

export type LabEtcd = {
  dir: string
  members: EtcdMemberSpec[]
  endpoints: string[]
  /** What a manager passes as --etcd-ca / --etcd-cert / --etcd-key. */
  client: {ca: string; cert: string; key: string}
}

export function planLabEtcd(nodes: LabNode[], members: number): LabEtcd {
  if (!Number.isInteger(members) || members < 1 || members > nodes.length)
    throw new Error(`lab up: etcd needs 1..${nodes.length} members (one per node), not ${members}`)
  const pki = join(LAB_ETCD_DIR, 'pki')
  const hosts = nodes.slice(0, members)
  const specs = hosts.map((n): EtcdMemberSpec => ({
    name: `etcd-${n.name}`,
    dataDir: join(LAB_ETCD_DIR, n.name),
    host: n.address,
    clientPort: ETCD_CLIENT_PORT,
    peerPort: ETCD_PEER_PORT,
    initialCluster: '',
    clusterToken: 'swarmnet-lab',
    tls: {ca: join(pki, 'ca.pem'), cert: join(pki, `${n.name}.pem`), key: join(pki, `${n.name}-key.pem`)},
    netns: n.netns,
    detached: true,
  }))
  const initialCluster = specs.map((s) => `${s.name}=${peerUrl(s)}`).join(',')
  for (const s of specs) s.initialCluster = initialCluster
  return {
    dir: LAB_ETCD_DIR,
    members: specs,
    endpoints: specs.map(clientUrl),
    client: {ca: join(pki, 'ca.pem'), cert: join(pki, 'manager.pem'), key: join(pki, 'manager-key.pem')},
  }
}

const openssl = (args: string[], doing: string) => run(['openssl', ...args], doing)

/** A CA, a certificate per member (server and peer, for its address) and one client certificate for the managers. */
export async function makeLabPki(e: LabEtcd): Promise<void> {
  const pki = join(e.dir, 'pki')
  mkdirSync(pki, {recursive: true, mode: 0o700})
  const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  const ca = join(pki, 'ca.pem')
  const caKey = join(pki, 'ca-key.pem')
  await openssl(
    ['req', '-x509', ...key, '-keyout', caKey, '-out', ca, '-days', '30', '-subj', '/CN=swarmnet lab etcd CA'],
    'making the lab etcd CA',
  )
  const issue = async (name: string, cert: string, certKey: string, ext: string) => {
    const csr = join(pki, `${name}.csr`)
    const extFile = join(pki, `${name}.ext`)
    writeFileSync(extFile, ext)
    await openssl(['req', ...key, '-keyout', certKey, '-out', csr, '-subj', `/CN=${name}`], `making a key for ${name}`)
    await openssl(
      [
        'x509',
        '-req',
        '-in',
        csr,
        '-CA',
        ca,
        '-CAkey',
        caKey,
        '-CAcreateserial',
        '-out',
        cert,
        '-days',
        '30',
        '-extfile',
        extFile,
      ],
      `signing the certificate of ${name}`,
    )
    rmSync(csr, {force: true})
  }
  for (const m of e.members)
    await issue(
      m.name,
      m.tls!.cert,
      m.tls!.key,
      `subjectAltName=IP:${m.host},IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n`,
    )
  await issue('swarmnet-manager', e.client.cert, e.client.key, 'extendedKeyUsage=clientAuth\n')
}

const pidFile = (m: EtcdMemberSpec) => `${m.dataDir}.pid`

/** Starts every member and waits until the cluster answers (through etcdctl, in the first member's namespace). */
export async function startLabEtcd(e: LabEtcd, timeoutMs = 30_000): Promise<void> {
  for (const m of e.members) {
    const started = startEtcdMember(m)
    writeFileSync(pidFile(m), `${started.proc.pid}\n`)
  }
  await waitLabEtcd(e, timeoutMs)
}

export async function waitLabEtcd(e: LabEtcd, timeoutMs = 30_000): Promise<void> {
  const t0 = Date.now()
  for (;;) {
    try {
      await etcdctl(e, ['endpoint', 'health', '--cluster'])
      return
    } catch (err) {
      if (Date.now() - t0 > timeoutMs) throw new Error(`the lab's etcd did not become healthy: ${(err as Error).message}`)
      await new Promise((r) => setTimeout(r, 300))
    }
  }
}

/** etcdctl as a manager, from the first member's namespace. */
export function etcdctl(e: LabEtcd, args: string[]): Promise<string> {
  return execIn(
    e.members[0]!.netns!,
    [
      'etcdctl',
      '--endpoints',
      e.endpoints.join(','),
      '--cacert',
      e.client.ca,
      '--cert',
      e.client.cert,
      '--key',
      e.client.key,
      '--dial-timeout',
      '2s',
      '--command-timeout',
      '3s',
      ...args,
    ],
    `etcdctl ${args.join(' ')}`,
    {env: {...process.env, ETCDCTL_API: '3'}, timeoutMs: 10_000},
  )
}

/** Stops every member (SIGKILL: as a crash would) and waits until they are gone. */
export async function stopLabEtcd(e: LabEtcd): Promise<void> {
  for (const m of e.members) {
    const pid = readPidFile(pidFile(m))
    if (pid === undefined || !isAlive(pid)) continue
    process.kill(pid, 'SIGKILL')
    for (let i = 0; i < 100 && isAlive(pid); i++) await new Promise((r) => setTimeout(r, 50))
  }
}

/** What lab down removes (the processes are gone with the lab's namespaces by then). */
export function removeLabEtcd(removed: string[]): void {
  if (!existsSync(LAB_ETCD_DIR)) return
  rmSync(LAB_ETCD_DIR, {recursive: true, force: true})
  removed.push(LAB_ETCD_DIR)
}
