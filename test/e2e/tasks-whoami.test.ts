/** The whoami workload, run as a task in a scratch namespace and asked from inside it. */
import assert from 'node:assert/strict'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {after, before, test} from 'node:test'
import {fileURLToPath} from 'node:url'
import {cgroup2Root, removeCgroupTree, removeIfEmpty} from '../../src/sys/cgroup.js'
import {setLinkUp} from '../../src/sys/link.js'
import {addNetns, execIn} from '../../src/sys/netns.js'
import {destroyTaskSandbox, startTaskProcess, stopTaskProcess} from '../../src/tasks/runner.js'
import {removeNodeContainers} from '../../src/tasks/container.js'

const NS = 'sn-ut-whoami'
// A node name no lab uses, so the task's cgroup (swarmnet/<node>/<id>) is this test's alone.
const NODE = 'ut-whoami'
const ID = '0123456789abcdef01234567'
const repo = fileURLToPath(new URL('../..', import.meta.url))
const dir = mkdtempSync(join(tmpdir(), 'sn-whoami-'))

before(async () => {
  await destroyTaskSandbox(NS, [])
  await addNetns(NS)
  await setLinkUp('lo', NS)
  const start = `import(${JSON.stringify(join(repo, 'src/whoami/server.ts'))}).then((m) => m.startWhoami({ port: 8080 }))`
  await startTaskProcess({
    node: NODE,
    taskId: ID,
    netns: NS,
    name: 'web.1',
    ips: [],
    // Tasks start in /, so tsx is named by its path, not looked up from the current directory.
    argv: [process.execPath, '--import', import.meta.resolve('tsx'), '--input-type=module', '-e', start],
    env: {SWARMNET_TASK_NAME: 'web.1.abc'},
    dir,
  })
})

after(async () => {
  await stopTaskProcess(NODE, ID, undefined, 0)
  // runc's state and the node's level of the v1 cgroup hierarchies it made.
  await removeNodeContainers(NODE)
  await destroyTaskSandbox(NS, [])
  removeCgroupTree(join(cgroup2Root(), 'swarmnet', NODE))
  removeIfEmpty(join(cgroup2Root(), 'swarmnet'))
  rmSync(dir, {recursive: true, force: true})
})

async function get(path: string): Promise<string> {
  const script = `
    for (let i = 0; i < 100; i++) {
      try { const r = await fetch('http://127.0.0.1:8080${path}', { headers: { 'X-Probe': 'yes' } }); process.stdout.write(await r.text()); process.exit(0); }
      catch { await new Promise((r) => setTimeout(r, 100)); }
    }
    process.exit(1);`
  return execIn(NS, [process.execPath, '--input-type=module', '-e', script], `GET ${path}`)
}

test('GET / answers like traefik/whoami', async () => {
  const text = await get('/')
  const lines = text.split('\n')
  assert.equal(lines[0], 'Hostname: web.1.abc')
  assert.ok(lines.includes('IP: 127.0.0.1'))
  assert.ok(lines.some((l) => /^RemoteAddr: 127\.0\.0\.1:\d+$/.test(l)))
  assert.ok(lines.includes('GET / HTTP/1.1'))
  assert.ok(lines.some((l) => /^x-probe: yes$/i.test(l)))
})

test('GET /json says the same as JSON', async () => {
  const j = JSON.parse(await get('/json')) as {hostname: string; ip: string[]; remoteAddr: string; method: string}
  assert.equal(j.hostname, 'web.1.abc')
  assert.ok(j.ip.includes('127.0.0.1'))
  assert.match(j.remoteAddr, /^127\.0\.0\.1:\d+$/)
  assert.equal(j.method, 'GET')
})
