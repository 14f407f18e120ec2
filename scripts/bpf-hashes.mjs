#!/usr/bin/env node
// The prebuilt objects in bpf/dist/ carry the hash of the sources they were
// built from (every program plus every shared header). `check` exits non-zero
// and names the stale objects when a source changed without a rebuild.
import {createHash} from 'node:crypto'
import {readFileSync, readdirSync, writeFileSync, existsSync} from 'node:fs'
import {join, dirname} from 'node:path'
import {fileURLToPath} from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const bpf = join(root, 'bpf')
const manifest = join(bpf, 'dist', 'sources.json')

export function sourceHash(program) {
  const h = createHash('sha256')
  const headers = readdirSync(join(bpf, 'include'))
    .filter((f) => f.endsWith('.h'))
    .sort()
  for (const f of [`${program}.c`, ...headers.map((x) => join('include', x))]) {
    h.update(f + '\0')
    h.update(readFileSync(join(bpf, f)))
    h.update('\0')
  }
  return h.digest('hex')
}

export function programs() {
  return readdirSync(bpf)
    .filter((f) => f.endsWith('.c'))
    .map((f) => f.slice(0, -2))
    .sort()
}

export function staleObjects() {
  const recorded = existsSync(manifest) ? JSON.parse(readFileSync(manifest, 'utf8')) : {}
  return programs().filter((p) => !existsSync(join(bpf, 'dist', `${p}.o`)) || recorded[p] !== sourceHash(p))
}

const mode = process.argv[2]
if (mode === 'write') {
  const out = Object.fromEntries(programs().map((p) => [p, sourceHash(p)]))
  writeFileSync(manifest, JSON.stringify(out, null, 2) + '\n')
} else if (mode === 'check') {
  const stale = staleObjects()
  if (stale.length > 0) {
    console.error(`stale BPF objects: ${stale.join(', ')}: run 'npm run build:bpf' and commit bpf/dist`)
    process.exit(1)
  }
}
