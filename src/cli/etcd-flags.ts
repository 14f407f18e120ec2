import {resolve} from 'node:path'
import {Flags} from '@oclif/core'
import {UserError} from '../model/errors.js'
import type {EtcdSettings} from '../manager/etcd-client.js'

/** Where a manager finds the cluster's desired state in etcd (init --store etcd, join --manager). */
export const etcdFlags = {
  'etcd-endpoints': Flags.string({description: 'etcd client URLs, comma-separated: https://10.0.0.1:2379,https://10.0.0.2:2379'}),
  'etcd-ca': Flags.string({description: 'PEM file: the CA that signed the etcd members’ certificates'}),
  'etcd-cert': Flags.string({description: 'PEM file: this manager’s client certificate for etcd'}),
  'etcd-key': Flags.string({description: 'PEM file: the key of --etcd-cert'}),
}

type EtcdFlagValues = {'etcd-endpoints'?: string; 'etcd-ca'?: string; 'etcd-cert'?: string; 'etcd-key'?: string}

/** The settings the flags give, or undefined when none was given. */
export function etcdFromFlags(f: EtcdFlagValues): Omit<EtcdSettings, 'prefix'> | undefined {
  const any = [f['etcd-endpoints'], f['etcd-ca'], f['etcd-cert'], f['etcd-key']].some((v) => v !== undefined)
  if (!any) return undefined
  if (f['etcd-endpoints'] === undefined) throw new UserError('--etcd-ca/--etcd-cert/--etcd-key need --etcd-endpoints')
  const endpoints = f['etcd-endpoints'].split(',').map((e) => e.trim())
  if (endpoints.some((e) => e === '')) throw new UserError(`--etcd-endpoints '${f['etcd-endpoints']}' has an empty entry`)
  // The agent reads the files later, from its own directory: keep them absolute.
  return {
    endpoints,
    ...(f['etcd-ca'] !== undefined ? {ca: resolve(f['etcd-ca'])} : {}),
    ...(f['etcd-cert'] !== undefined ? {cert: resolve(f['etcd-cert'])} : {}),
    ...(f['etcd-key'] !== undefined ? {key: resolve(f['etcd-key'])} : {}),
  }
}
