// The agent's side of the spawner (the program is spawner-child.ts): the agent forks once, at
// its start, a small Node process that then starts every command the agent runs (exec.ts routes
// run() and the background launches to it), so the agent's event loop is not held by fork()
// copying its page tables for each `ip`, `runc` or health check. Each request is plain data
// (start-process.ts) over the IPC channel; the answer is the process's pid once it runs, then
// its end. The spawner exits when the channel closes, so it never outlives the agent, however the
// agent ends (SIGKILL included: the kernel closes the socket).
import {spawn, type ChildProcess} from 'node:child_process'
import {dirname, join} from 'node:path'
import {createRequire} from 'node:module'
import {fileURLToPath, pathToFileURL} from 'node:url'
import type {SpawnerReply, SpawnerRequest} from './spawner-child.js'
import type {ProcessRequest, ProcessResult} from './start-process.js'

interface Pending {
  onPid?: (pid: number) => void
  resolve: (r: ProcessResult) => void
}

/** Its heap: it holds only the requests under way and their output. */
const SPAWNER_HEAP_MB = 64

/** node and the arguments that run spawner-child: compiled (dist), or from source under tsx (tests). */
function childArgv(): string[] {
  const here = fileURLToPath(import.meta.url)
  const fromSource = here.endsWith('.ts')
  const script = join(dirname(here), fromSource ? 'spawner-child.ts' : 'spawner-child.js')
  // tsx from this package's own node_modules, whatever the cwd (createRequire: also under tsx's CJS mode).
  const loader = fromSource ? ['--import', pathToFileURL(createRequire(here).resolve('tsx')).href] : []
  return [process.execPath, `--max-old-space-size=${SPAWNER_HEAP_MB}`, ...loader, script]
}

export class Spawner {
  private child: ChildProcess | undefined
  private next = 1
  private readonly pending = new Map<number, Pending>()
  /** How many spawners this one started (1 unless one died and was replaced). */
  starts = 0

  constructor(private readonly log: (m: string) => void = () => undefined) {}

  /** The spawner's pid (it is started on first use if not yet). */
  get pid(): number | undefined {
    return this.running()?.pid
  }

  /** Runs req in the spawner; onPid hears the pid once the process runs. Never rejects. */
  request(req: ProcessRequest, onPid?: (pid: number) => void): Promise<ProcessResult> {
    const child = this.running()
    const id = this.next++
    return new Promise<ProcessResult>((resolve) => {
      this.pending.set(id, {resolve, ...(onPid ? {onPid} : {})})
      // Held open only while an answer is awaited: an idle spawner never keeps its owner running.
      child.channel?.ref()
      child.send({id, req} satisfies SpawnerRequest, (err) => {
        if (err)
          this.settle(id, {code: null, signal: null, stdout: '', stderr: '', error: {message: `the spawner: ${err.message}`}})
      })
    })
  }

  /** Stops the spawner (it exits as its channel closes); what is under way ends as failed. */
  close(): void {
    const c = this.child
    this.child = undefined
    if (c?.connected) c.disconnect()
    this.failAll('the spawner was stopped')
  }

  private running(): ChildProcess {
    if (this.child?.connected) return this.child
    const [cmd, ...args] = childArgv()
    const child = spawn(cmd!, args, {stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: process.env})
    this.starts++
    this.child = child
    child.on('message', (m: SpawnerReply) => {
      if ('pid' in m) this.pending.get(m.id)?.onPid?.(m.pid)
      else this.settle(m.id, m.result)
    })
    child.on('error', (e) => this.log(`spawner: ${e.message}`))
    // Died (killed, out of memory): what it had under way failed; the next request starts another.
    // Its channel closing says so first (and is what holds the owner's loop while it waits).
    child.on('disconnect', () => {
      if (this.child !== child) return
      this.child = undefined
      this.failAll('the spawner exited')
    })
    child.on('exit', (code, signal) => {
      if (this.child === undefined || this.child === child) this.log(`spawner: exited (${signal ?? `code ${code}`})`)
    })
    child.unref()
    child.channel?.unref()
    return child
  }

  private settle(id: number, r: ProcessResult): void {
    const p = this.pending.get(id)
    if (!p) return
    this.pending.delete(id)
    if (this.pending.size === 0) this.child?.channel?.unref()
    p.resolve(r)
  }

  private failAll(why: string): void {
    for (const id of [...this.pending.keys()])
      this.settle(id, {code: null, signal: null, stdout: '', stderr: '', error: {message: why}})
  }
}
