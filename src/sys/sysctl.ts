import {writeFileSync} from 'node:fs'
import {run} from './exec.js'
import {nsenterArgv} from './netns.js'

/**
 * Sets a sysctl such as net.ipv4.ip_forward. /proc/sys/net shows the namespace of whoever
 * opens it, so for another ns we open it from a process (tee) that nsenter put there.
 */
export async function setSysctl(key: string, value: string, ns?: string): Promise<void> {
  const path = `/proc/sys/${key.replaceAll('.', '/')}`
  if (ns === undefined) {
    writeFileSync(path, `${value}\n`)
    return
  }
  await run(nsenterArgv(ns, ['tee', path]), `setting ${key}=${value} in ${ns}`, {input: `${value}\n`})
}

export function enableIpForward(ns?: string): Promise<void> {
  return setSysctl('net.ipv4.ip_forward', '1', ns)
}
