/**
 * A manager's etcd client TLS files (--etcd-ca, --etcd-cert, --etcd-key) are the keys to the
 * cluster's desired state. They are copied at init, join, promote and migrate-store into the
 * node's state directory (etcd/, 0700; each file 0600, root), which no task ever sees, and used
 * from there: wherever the user kept them, and whether or not they are removed afterwards.
 */
import {chmodSync, mkdirSync, readFileSync, rmSync} from 'node:fs'
import {writeFileDurably} from '../sys/durable-file.js'
import {join} from 'node:path'
import {stateDir} from './paths.js'

type Tls = {ca?: string; cert?: string; key?: string}

/** Where the node keeps its copy of each file. */
export const etcdFilesDir = (node: string) => join(stateDir(node), 'etcd')

/** settings with each TLS file copied under the node's state directory and named there. Throws one line if a file cannot be read. */
export function keepEtcdFiles<T extends Tls>(node: string, settings: T): T {
  const dir = etcdFilesDir(node)
  const out: T = {...settings}
  for (const k of ['ca', 'cert', 'key'] as const) {
    const src = settings[k]
    if (src === undefined) continue
    const dst = join(dir, `${k}.pem`)
    if (src === dst) continue
    let data: Buffer
    try {
      data = readFileSync(src)
    } catch (e) {
      throw new Error(`--etcd-${k} ${src}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
    }
    mkdirSync(dir, {recursive: true, mode: 0o700})
    chmodSync(dir, 0o700)
    // Whole or not at all: a reader never sees half a key, a crash leaves the old copy.
    writeFileDurably(dst, data, 0o600)
    out[k] = dst
  }
  return out
}

/** Whether settings name a TLS file outside the node's copy (a config from before the copies). */
export const etcdFilesOutside = (node: string, settings: Tls) =>
  (['ca', 'cert', 'key'] as const).some((k) => settings[k] !== undefined && settings[k] !== join(etcdFilesDir(node), `${k}.pem`))

/** The paths as given, for node promote's defaults (they are the same on every host by convention, unlike the copies). */
export function givenEtcdPaths(settings: Tls): Tls {
  return {
    ...(settings.ca !== undefined ? {ca: settings.ca} : {}),
    ...(settings.cert !== undefined ? {cert: settings.cert} : {}),
    ...(settings.key !== undefined ? {key: settings.key} : {}),
  }
}

/** A node that is no longer a manager keeps no copy. */
export function forgetEtcdFiles(node: string): void {
  rmSync(etcdFilesDir(node), {recursive: true, force: true})
}
