import type {Task} from './types.js'

/**
 * The name `service ps` prints and every command that takes a task accepts:
 * SERVICE.SLOT for a replicated task, SERVICE.NODEID (its first 12
 * characters) for a global one, as Docker names them.
 */
export function taskName(t: Pick<Task, 'serviceName' | 'slot' | 'nodeId'>): string {
  return t.slot > 0 ? `${t.serviceName}.${t.slot}` : `${t.serviceName}.${t.nodeId.slice(0, 12)}`
}
