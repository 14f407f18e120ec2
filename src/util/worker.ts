// A worker thread started from a module that sits next to its caller, compiled or not.
import {Worker, type WorkerOptions} from 'node:worker_threads'

/**
 * Starts the thread module `name` (no extension) found next to the caller's module `from`
 * (its import.meta.url): the compiled .js when the caller is compiled; under tsx (tests, bench)
 * the .ts source, through tsx's loader registered in the thread first, since a worker does not
 * inherit its parent's loaders.
 */
export function startWorker(from: string, name: string, options: WorkerOptions): Worker {
  if (!from.endsWith('.ts')) return new Worker(new URL(`./${name}.js`, from), options)
  const api = import.meta.resolve('tsx/esm/api')
  const src = new URL(`./${name}.ts`, from).href
  const boot = `import(${JSON.stringify(api)}).then((t) => (t.register(), import(${JSON.stringify(src)})))`
  return new Worker(boot, {...options, eval: true})
}
