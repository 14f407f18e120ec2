import {readFileSync} from 'node:fs'

/** State and start time (clock ticks since boot) from /proc/<pid>/stat, or undefined if gone. */
export function procStat(pid: number): {state: string; startTime: number} | undefined {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return undefined
  }
  // The command name may contain spaces and parentheses; fields resume after the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ')
  return {state: rest[0] ?? '?', startTime: Number(rest[19])}
}

/**
 * True while pid runs. A zombie counts as dead: after an agent restart nobody reaps its
 * old children until init does. startTime, when given, guards against a reused pid.
 */
export function isAlive(pid: number, startTime?: number): boolean {
  const st = procStat(pid)
  if (!st || st.state === 'Z' || st.state === 'X') return false
  return startTime === undefined || st.startTime === startTime
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

function signal(pid: number, sig: NodeJS.Signals): void {
  // Our tasks lead their own session (setsid), so the group takes helpers down too.
  try {
    process.kill(-pid, sig)
  } catch {
    try {
      process.kill(pid, sig)
    } catch {
      /* already gone */
    }
  }
}

/** SIGTERM, then SIGKILL after graceMs; resolves once the process is gone. */
export async function stopProcess(pid: number, graceMs = 3000): Promise<void> {
  if (!isAlive(pid)) return
  signal(pid, 'SIGTERM')
  const deadline = Date.now() + graceMs
  while (isAlive(pid) && Date.now() < deadline) await sleep(50)
  if (!isAlive(pid)) return
  signal(pid, 'SIGKILL')
  while (isAlive(pid)) await sleep(20)
}

/** SIGKILL every pid and wait (up to timeoutMs) until they are gone. */
export async function killAll(pids: readonly number[], timeoutMs = 3000): Promise<void> {
  for (const p of pids) {
    try {
      process.kill(p, 'SIGKILL')
    } catch {
      /* already gone */
    }
  }
  const deadline = Date.now() + timeoutMs
  while (pids.some((p) => isAlive(p)) && Date.now() < deadline) await sleep(20)
}
