/**
 * A task's output on its node: <state>/tasks/<task id>/log (stdout and stderr, appended), in
 * the task's directory that is removed with the task. Read by the agent for `task logs` and
 * `service logs`.
 */
import {closeSync, existsSync, fstatSync, openSync, readSync, statSync} from 'node:fs'
import {join} from 'node:path'
import {stateDir} from '../sys/node-paths.js'
import {checkTaskId} from '../model/ids.js'

export const tasksDir = (node: string) => join(stateDir(node), 'tasks')
export const taskDir = (node: string, taskId: string) => join(tasksDir(node), checkTaskId(taskId))
/** The log in a task's directory. */
export const taskLogFile = (dir: string) => join(dir, 'log')
export const taskLogPath = (node: string, taskId: string) => taskLogFile(taskDir(node, taskId))

/** Byte offset where the last n lines of the file begin (0 for the whole file). */
export function tailOffset(file: string, n: number | undefined): number {
  if (!existsSync(file)) return 0
  const fd = openSync(file, 'r')
  try {
    const size = fstatSync(fd).size
    if (n === undefined) return 0
    if (n <= 0) return size
    const chunk = Buffer.alloc(64 * 1024)
    let pos = size
    let newlines = 0
    // A last line without its newline still counts as a line.
    let skipFinal = true
    while (pos > 0) {
      const len = Math.min(chunk.length, pos)
      pos -= len
      readSync(fd, chunk, 0, len, pos)
      for (let i = len - 1; i >= 0; i--) {
        if (chunk[i] !== 0x0a) {
          skipFinal = false
          continue
        }
        if (skipFinal && pos + i === size - 1) continue
        if (++newlines === n) return pos + i + 1
      }
    }
    return 0
  } finally {
    closeSync(fd)
  }
}

export interface LogReader {
  /** Stops following. */
  close(): void
  /** Resolves when reading ended: at the end (without follow), on close, or when the log is removed. */
  done: Promise<void>
}

/**
 * Sends the log from offset to onData; with follow, keeps sending what is appended (checked a
 * few times a second) until closed or the file is removed with its task.
 */
export function readLog(file: string, offset: number, follow: boolean, onData: (b: Buffer) => void): LogReader {
  let pos = offset
  let closed = false
  let timer: NodeJS.Timeout | undefined
  let finish!: () => void
  const done = new Promise<void>((r) => (finish = r))
  const pump = (): boolean => {
    let size: number
    try {
      size = statSync(file).size
    } catch {
      return false // removed with its task
    }
    if (size < pos) pos = 0 // truncated
    if (size > pos) {
      const fd = openSync(file, 'r')
      try {
        const buf = Buffer.alloc(Math.min(size - pos, 1 << 20))
        const got = readSync(fd, buf, 0, buf.length, pos)
        pos += got
        if (got > 0) onData(buf.subarray(0, got))
      } finally {
        closeSync(fd)
      }
      if (size > pos) return pump()
    }
    return true
  }
  const tick = () => {
    if (closed) return
    const present = pump()
    if (!follow || !present) return close()
    timer = setTimeout(tick, 250)
  }
  const close = () => {
    closed = true
    if (timer) clearTimeout(timer)
    finish()
  }
  tick()
  return {close, done}
}
