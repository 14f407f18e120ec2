// A real etcd for unit tests: one member on 127.0.0.1, random ports, a temp
// data dir; stopped and removed by stop(), also when the test fails (call it
// from after()). No fixed names: safe to run without the lab lock.
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {after, before} from 'node:test'
import {Etcd3} from 'etcd3'
import {etcdLogTail, freePort, startEtcdMember, stopEtcdMember, type EtcdMember} from '../../src/store/etcd-process.js'

export type TestEtcd = {endpoint: string; member: EtcdMember; stop(): Promise<void>}

export async function startTestEtcd(): Promise<TestEtcd> {
  const dir = mkdtempSync(join(tmpdir(), 'sn-etcd-'))
  const [clientPort, peerPort] = [await freePort(), await freePort()]
  const member = startEtcdMember({
    name: 'test',
    dataDir: join(dir, 'data'),
    host: '127.0.0.1',
    clientPort,
    peerPort,
    initialCluster: `test=http://127.0.0.1:${peerPort}`,
    clusterToken: 'sn-test',
  })
  const stop = async () => {
    await stopEtcdMember(member)
    rmSync(dir, {recursive: true, force: true})
  }
  const client = new Etcd3({hosts: member.clientUrl})
  try {
    for (let i = 0; ; i++) {
      try {
        await client.get('sn-probe').string()
        break
      } catch (e) {
        if (i >= 100 || member.proc.exitCode !== null)
          throw new Error(`etcd did not come up: ${(e as Error).message}\n${etcdLogTail(member)}`)
        await new Promise((r) => setTimeout(r, 100))
      }
    }
  } catch (e) {
    await stop()
    throw e
  } finally {
    client.close()
  }
  return {endpoint: member.clientUrl, member, stop}
}

/**
 * One etcd for a test file, started before its tests and stopped after them, with what the tests
 * open on it: temp dirs removed and kept things (backends, clients, stores) closed, the newest
 * first, so a backend goes before the client and store it was built on.
 */
export function etcdSuite() {
  let etcd: TestEtcd | undefined
  const dirs: string[] = []
  const kept: {close(): void}[] = []
  before(async () => {
    etcd = await startTestEtcd()
  })
  after(async () => {
    for (const k of kept.reverse()) k.close()
    await etcd?.stop()
    for (const d of dirs) rmSync(d, {recursive: true, force: true})
  })
  return {
    get endpoint(): string {
      if (!etcd) throw new Error('etcd is started before the tests')
      return etcd.endpoint
    },
    /** A temp dir removed after the tests. */
    dir(prefix: string): string {
      const d = mkdtempSync(join(tmpdir(), prefix))
      dirs.push(d)
      return d
    },
    /** `x`, closed after the tests. */
    keep<T extends {close(): void}>(x: T): T {
      kept.push(x)
      return x
    },
  }
}
