// SWARMNET_AGENT_CPU_PROF=<dir>: the agent profiles its own main thread (V8's sampling CPU
// profiler, through node:inspector) and writes <dir>/<node>.cpuprofile when it stops, for
// bench/cpuprofile-top.ts or Chrome's DevTools. Started by the agent itself once its BPF programs
// are loaded: under `node --cpu-prof` from the first instruction the verifier rejected
// xdp_underlay (the profiler's overhead, most likely, on a loaded machine). For measuring only.
import {mkdirSync, writeFileSync} from 'node:fs'
import {Session} from 'node:inspector'
import {join} from 'node:path'

export const CPU_PROF_ENV = 'SWARMNET_AGENT_CPU_PROF'

export interface CpuProfile {
  /** Where the profile goes. */
  readonly file: string
  /** Stops the profiler and writes the profile; a second call does nothing. */
  stop(): Promise<void>
}

/** Starts profiling when the environment asks for it; undefined when it does not. */
export async function startCpuProfile(node: string, env: NodeJS.ProcessEnv = process.env): Promise<CpuProfile | undefined> {
  const dir = env[CPU_PROF_ENV]
  if (!dir) return undefined
  mkdirSync(dir, {recursive: true})
  const file = join(dir, `${node}.cpuprofile`)
  const session = new Session()
  session.connect()
  const post = (method: string, params?: object) =>
    new Promise<unknown>((resolve, reject) =>
      session.post(method, params ?? {}, (err: Error | null, result?: unknown) => (err ? reject(err) : resolve(result))),
    )
  await post('Profiler.enable')
  // 1 ms: fine enough to see a 20 ms stretch, coarse enough not to be the load.
  await post('Profiler.setSamplingInterval', {interval: 1000})
  await post('Profiler.start')
  let stopped: Promise<void> | undefined
  return {
    file,
    stop: () =>
      (stopped ??= (async () => {
        const {profile} = (await post('Profiler.stop')) as {profile: unknown}
        writeFileSync(file, JSON.stringify(profile))
        session.disconnect()
      })()),
  }
}
