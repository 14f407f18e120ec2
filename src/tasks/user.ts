/** The user a command task runs as (--user), resolved on its node from the node's user database. */
import {run} from '../sys/exec.js'

export interface TaskUser {
  uid: number
  gid: number
  /** Supplementary groups: a named user's from the node's group database (as Docker does), else none. */
  groups?: number[]
}

/** --user as written (UID[:GID] or NAME[:GROUP]) to ids, from the node's user database. */
export async function resolveUser(spec: string): Promise<TaskUser> {
  const [u, g] = spec.split(':') as [string, string | undefined]
  const entry = async (db: string, key: string) => {
    const out = await run(['getent', db, key], `looking up ${db} ${key}`).catch(() => '')
    return out.split('\n')[0]?.split(':')
  }
  let uid: number
  let gid: number | undefined
  let named = false
  if (/^\d+$/.test(u)) {
    uid = Number(u)
    const pw = await entry('passwd', u)
    if (pw && pw[3]) gid = Number(pw[3])
  } else {
    const pw = await entry('passwd', u)
    if (!pw || pw[2] === undefined) throw new Error(`user ${u} does not exist on this node`)
    uid = Number(pw[2])
    gid = Number(pw[3])
    named = true
  }
  if (g !== undefined) {
    if (/^\d+$/.test(g)) gid = Number(g)
    else {
      const gr = await entry('group', g)
      if (!gr || gr[2] === undefined) throw new Error(`group ${g} does not exist on this node`)
      gid = Number(gr[2])
    }
  }
  // A uid with no entry and no group given: its own number as gid rather than root's group.
  const primary = gid ?? uid
  // As Docker: a named user without a group given keeps the groups the node lists it in.
  const groups =
    named && g === undefined
      ? (await run(['id', '-G', u], `looking up the groups of ${u}`).catch(() => ''))
          .trim()
          .split(/\s+/)
          .filter(Boolean)
          .map(Number)
          .filter((x) => Number.isInteger(x) && x !== primary)
      : []
  return {uid, gid: primary, ...(groups.length ? {groups} : {})}
}
