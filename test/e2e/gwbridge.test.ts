// The gateway bridge keeps its MAC whatever ports come and go, also a bridge an older agent made
// (its MAC never set, so Linux moved it to its lowest port's): the agent pins the MAC it has, the
// one its running tasks know. ensureGwBridge works on the current namespace, so this file runs
// itself a second time inside a namespace of its own (SN_GWPIN_INNER=1).
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {after, before, test} from 'node:test'
import {fileURLToPath} from 'node:url'
import {addNetns, delNetns, netnsExists, nsenterArgv} from '../../src/sys/netns.js'
import {run} from '../../src/sys/exec.js'
import {getLink} from '../../src/sys/link.js'
import {ensureGwBridge, GWBRIDGE_IF} from '../../src/tasks/gwbridge.js'

const NS = 'sn-gwpin'
const self = fileURLToPath(import.meta.url)

async function inner(): Promise<void> {
  const mac = async () => (await getLink(GWBRIDGE_IF))!.address
  const veth = (name: string, address: string) =>
    run(['ip', 'link', 'add', name, 'address', address, 'type', 'veth', 'peer', 'name', `${name}p`], `adding ${name}`)
  const enslave = (name: string) => run(['ip', 'link', 'set', name, 'master', GWBRIDGE_IF, 'up'], `enslaving ${name}`)
  // What an older agent left: a bridge made without a MAC, which took its one port's.
  await run(['ip', 'link', 'add', GWBRIDGE_IF, 'type', 'bridge'], 'adding an unpinned bridge')
  await veth('sn-gwa', '02:42:ac:12:00:09')
  await enslave('sn-gwa')
  assert.equal(await mac(), '02:42:ac:12:00:09', 'an unpinned bridge takes its lowest port MAC')
  await ensureGwBridge()
  assert.equal(await mac(), '02:42:ac:12:00:09', 'ensureGwBridge kept the MAC the tasks know')
  await veth('sn-gwlow', '00:00:00:00:00:01')
  await enslave('sn-gwlow')
  assert.equal(await mac(), '02:42:ac:12:00:09', 'a lower port took the pinned bridge its MAC')
  await run(['ip', 'link', 'del', 'sn-gwa'], 'removing the first port')
  assert.equal(await mac(), '02:42:ac:12:00:09', 'removing the port whose MAC it was moved it')
  console.log('gwpin: ok')
}

if (process.env.SN_GWPIN_INNER === '1') {
  await inner()
} else {
  before(async () => {
    assert.equal(netnsExists(NS), false, `${NS} exists: left by an earlier run`)
    await addNetns(NS)
  })
  after(async () => {
    // Deleting the namespace deletes everything the inner run made in it.
    await delNetns(NS)
  })
  test('the gateway bridge an older agent made keeps its MAC once the agent starts, as ports come and go', () => {
    const argv = nsenterArgv(NS, [process.execPath, '--import', 'tsx', self])
    const {NODE_TEST_CONTEXT: _, ...env} = process.env
    const r = spawnSync(argv[0]!, argv.slice(1), {encoding: 'utf8', env: {...env, SN_GWPIN_INNER: '1'}, timeout: 60_000})
    assert.equal(r.status, 0, `inner run failed:\n${r.stdout}${r.stderr}`)
    assert.match(r.stdout, /^gwpin: ok$/m)
  })
}
