// etcd's own failures, said in one line: a request that meets one changed nothing.
import {UserError, isUserError} from '../model/errors.js'

/** etcd could not be reached or answered with an error: the request changed nothing. */
export class EtcdUnavailableError extends UserError {}

/**
 * Runs one call to etcd: its failures become one line naming the endpoints (what: read or
 * write); the request's own refusals pass through.
 */
export async function etcdCall<T>(endpoints: readonly string[], what: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call()
  } catch (e) {
    if (isUserError(e as Error)) throw e
    const raw = ((e as Error).message ?? String(e)).split('\n')[0]!
    // etcd3 stops calling hosts that keep failing (its circuit breaker): say what that means.
    const msg = /circuit breaker/i.test(raw)
      ? 'no member answers (calls suspended after repeated failures)'
      : /ECONNREFUSED/.test(raw)
        ? 'no member answers (connection refused)'
        : /UNAVAILABLE|No connection established/.test(raw)
          ? 'no member answers'
          : /DEADLINE_EXCEEDED|deadline/i.test(raw)
            ? 'no answer in time'
            : raw
    throw new EtcdUnavailableError(`etcd at ${endpoints.join(',')} cannot ${what} the cluster state: ${msg}`)
  }
}
