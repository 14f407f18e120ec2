// The etcd client a manager uses: the endpoints and TLS files given at init,
// and calls that give up quickly, so a request fails fast with one line when
// etcd cannot be reached instead of hanging the CLI.
import {readFileSync} from 'node:fs'
import {Etcd3} from 'etcd3'
import {UserError} from '../model/errors.js'

export type EtcdSettings = {
  endpoints: string[]
  /** PEM files: the CA that signed etcd's certificates, and this manager's client certificate and key. */
  ca?: string
  cert?: string
  key?: string
  /** Where the cluster's keys live in etcd; default /swarmnet/<cluster id>/. */
  prefix: string
}

/** The largest answer etcd may send a manager (its whole prefix in one read). */
export const MAX_RECEIVE_BYTES = 512 * 1024 * 1024

/** A unary call's deadline: long enough for a commit on a loaded lab, short enough to fail fast. */
export const CALL_DEADLINE_MS = 2500

/** Checks what a person typed: URLs with a scheme, host and port, TLS files that are all there. */
export function checkEtcdSettings(s: Omit<EtcdSettings, 'prefix'>): void {
  if (s.endpoints.length === 0) throw new UserError('--etcd-endpoints: give at least one URL, like https://10.0.0.1:2379')
  for (const e of s.endpoints) {
    let u: URL
    try {
      u = new URL(e)
    } catch {
      throw new UserError(`--etcd-endpoints: '${e}' is not a URL (like https://10.0.0.1:2379)`)
    }
    if ((u.protocol !== 'http:' && u.protocol !== 'https:') || !u.port || u.pathname !== '/' || u.search)
      throw new UserError(`--etcd-endpoints: '${e}' must be http(s)://HOST:PORT`)
  }
  const tls = [s.ca, s.cert, s.key].filter((f) => f !== undefined).length
  if (tls > 0 && s.ca === undefined) throw new UserError('--etcd-cert/--etcd-key need --etcd-ca too')
  if ((s.cert === undefined) !== (s.key === undefined)) throw new UserError('--etcd-cert and --etcd-key go together')
  for (const f of [s.ca, s.cert, s.key]) {
    if (f === undefined) continue
    try {
      readFileSync(f)
    } catch (e) {
      throw new UserError(`cannot read ${f}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
    }
  }
  const https = s.endpoints.filter((e) => e.startsWith('https:')).length
  if (https > 0 && https < s.endpoints.length) throw new UserError('--etcd-endpoints: use https for all or none')
  if (https > 0 && s.ca === undefined)
    throw new UserError('https endpoints need --etcd-ca (and --etcd-cert/--etcd-key when etcd asks for a client certificate)')
}

export function etcdClient(s: EtcdSettings): Etcd3 {
  return new Etcd3({
    hosts: s.endpoints,
    ...(s.ca
      ? {
          credentials: {
            rootCertificate: readFileSync(s.ca),
            ...(s.cert && s.key ? {certChain: readFileSync(s.cert), privateKey: readFileSync(s.key)} : {}),
          },
        }
      : {}),
    dialTimeout: CALL_DEADLINE_MS,
    // A manager reads its cluster's whole prefix in one range read (etcd-cache.ts): 10,000 services
    // of 3 tasks are ~30 MB, past grpc-js's default 4 MB for a message received.
    grpcOptions: {'grpc.max_receive_message_length': MAX_RECEIVE_BYTES},
    // Streams (watches, lease keep-alives) live on; single calls do not wait for long.
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : {deadline: Date.now() + CALL_DEADLINE_MS}),
  })
}
