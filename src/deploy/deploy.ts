/**
 * Creates what a services file describes, through the agent API like `network create` and
 * `service create` would. Everything is checked first, against the file and then against the
 * cluster (names taken, networks that neither exist nor are declared); only then is anything
 * created, and if the agent still refuses something, what this run made is removed again.
 */
import {UserError} from '../model/errors.js'
import type {NetworkView, ServiceView} from '../agent/views.js'
import type {FileNetwork, FileService, ServicesFile} from './services-file.js'

/** The part of AgentClient a deploy uses. */
export interface DeployApi {
  get<T>(path: string): Promise<T>
  post<T>(path: string, body?: unknown): Promise<T>
  delete<T>(path: string): Promise<T>
}

export type DeployResult = {
  networks: {name: string; id: string; created: boolean}[]
  services: {name: string; id: string; mode: 'replicated' | 'global'; replicas?: number}[]
}

/** The checks against the cluster: a plan of which networks to create, or one line why not. */
export function planDeploy(file: string, spec: ServicesFile, nets: NetworkView[], svcs: ServiceView[]): FileNetwork[] {
  const byName = new Map(nets.map((n) => [n.name, n]))
  const toCreate: FileNetwork[] = []
  for (const want of spec.networks) {
    const have = byName.get(want.name)
    if (!have) {
      toCreate.push(want)
      continue
    }
    const differs =
      (want.subnet !== undefined && want.subnet !== have.subnet && 'subnet') ||
      (want.attachable !== have.attachable && 'attachable') ||
      (want.mtu !== undefined && want.mtu !== have.mtu && 'mtu')
    if (differs)
      throw new UserError(
        `${file}: networks.${want.name}: the network exists with a different ${differs} (${String(have[differs])}): remove it or match it`,
      )
  }
  const declared = new Set(spec.networks.map((n) => n.name))
  for (const s of spec.services) {
    if (svcs.some((x) => x.name === s.name))
      throw new UserError(`${file}: service '${s.name}': a service with this name already exists in the cluster`)
    for (const n of s.networks)
      if (!declared.has(n) && !byName.has(n))
        throw new UserError(
          `${file}: service '${s.name}': networks: network '${n}' does not exist: create it or declare it under networks`,
        )
  }
  return toCreate
}

function serviceBody(s: FileService): Record<string, unknown> {
  return {
    name: s.name,
    mode: s.mode,
    replicas: s.replicas,
    networks: s.networks,
    command: s.command,
    endpointMode: s.endpointMode,
    ...(s.ports.length > 0 ? {ports: s.ports} : {}),
    ...(s.user !== undefined ? {user: s.user} : {}),
    ...(s.limitMemory !== undefined ? {limitMemory: s.limitMemory} : {}),
    ...(s.limitCpu !== undefined ? {limitCpu: s.limitCpu} : {}),
  }
}

export async function deploy(
  api: DeployApi,
  file: string,
  spec: ServicesFile,
  progress: (line: string) => void = () => {},
): Promise<DeployResult> {
  const [nets, svcs] = await Promise.all([api.get<NetworkView[]>('/networks'), api.get<ServiceView[]>('/services')])
  const toCreate = planDeploy(file, spec, nets, svcs)
  const made: {kind: 'network' | 'service'; id: string}[] = []
  const result: DeployResult = {networks: [], services: []}
  let doing = ''
  try {
    for (const n of spec.networks) {
      if (!toCreate.includes(n)) {
        result.networks.push({name: n.name, id: nets.find((x) => x.name === n.name)!.id, created: false})
        continue
      }
      doing = `networks.${n.name}`
      const v = await api.post<NetworkView>('/networks', {
        name: n.name,
        driver: 'overlay',
        subnet: n.subnet,
        attachable: n.attachable,
        mtu: n.mtu,
      })
      made.push({kind: 'network', id: v.id})
      result.networks.push({name: n.name, id: v.id, created: true})
      progress(`network ${n.name} created (${v.subnet})`)
    }
    for (const s of spec.services) {
      doing = `service '${s.name}'`
      const v = await api.post<ServiceView>('/services', serviceBody(s))
      made.push({kind: 'service', id: v.id})
      result.services.push({
        name: s.name,
        id: v.id,
        mode: s.mode,
        ...(s.mode === 'replicated' ? {replicas: s.replicas} : {}),
      })
      progress(`service ${s.name} created (${s.mode === 'global' ? 'global' : `${s.replicas} replicas`})`)
    }
  } catch (e) {
    // Nothing half-made: what this run created goes again, services before their networks.
    const left: string[] = []
    for (const m of made.reverse()) {
      try {
        await api.delete(`/${m.kind}s/${encodeURIComponent(m.id)}`)
      } catch {
        left.push(`${m.kind} ${m.id}`)
      }
    }
    const tail =
      left.length > 0 ? `; could not remove again: ${left.join(', ')}` : made.length > 0 ? '; what it created was removed' : ''
    throw new UserError(`${file}: ${doing}: ${(e as Error).message}${tail}`)
  }
  return result
}

/** Waits until every task of the named services runs; one line naming the laggards when it does not. */
export async function waitRunning(api: DeployApi, file: string, names: string[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const svcs = await api.get<ServiceView[]>('/services')
    const behind = names
      .map((n) => svcs.find((s) => s.name === n))
      .filter((s): s is ServiceView => s !== undefined && s.running < s.desired)
    if (behind.length === 0) return
    if (Date.now() >= deadline)
      throw new UserError(
        `${file}: ${behind.map((s) => `service '${s.name}' has ${s.running} of ${s.desired} tasks running`).join(', ')} after ${Math.round(timeoutMs / 1000)} s`,
      )
    await new Promise((r) => setTimeout(r, 500))
  }
}
