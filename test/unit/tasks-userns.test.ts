// --userns remap: the flag as the manager checks it (create, update, a spec gossiped in), the
// runtime configuration it becomes (a user namespace with the node's mapping, the node's /sys
// bound instead of a sysfs), and the image's root unpacked once more with the mapping by umoci
// (real files, as root: owners shifted, modes and set-id bits kept, symlinks too), removed with
// the image.
import assert from 'node:assert/strict'
import {chmodSync, copyFileSync, lstatSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {after, describe, test} from 'node:test'
import {spawnSync} from 'node:child_process'

// The node's state (images) in a directory of the test's own: read by node-paths.ts at import.
const work = mkdtempSync(join(tmpdir(), 'sn-userns-'))
process.env.SWARMNET_STATE_DIR = join(work, 'state')
const {containerProblem, containerSpec} = await import('../../src/model/container.js')
const {updatedContainer} = await import('../../src/model/container-update.js')
const {DOCKER_CAPS, ociConfig} = await import('../../src/tasks/oci-spec.js')
const {nodeRemap, openPathTo, subordinateStart} = await import('../../src/tasks/userns.js')
const {copyIntoStore, imagesDir, resolveImage} = await import('../../src/images/image.js')
const {removeImage} = await import('../../src/images/store.js')
const {managerFixture, storeFiles} = await import('./manager-fixture.js')

after(() => rmSync(work, {recursive: true, force: true}))

const REMAP = {uid: {containerID: 0, hostID: 100000, size: 65536}, gid: {containerID: 0, hostID: 100000, size: 65536}}

describe('--userns in the spec', () => {
  test('remap is stored; host is the default and stores nothing; anything else is one line', () => {
    assert.deepEqual(containerSpec({image: 'busybox', userns: 'remap'}), {container: {image: 'busybox', userns: 'remap'}})
    assert.deepEqual(containerSpec({image: 'busybox', userns: 'host'}), {container: {image: 'busybox'}})
    assert.throws(() => containerSpec({image: 'busybox', userns: 'auto'}), /^UserError: invalid --userns 'auto': host or remap$/)
    // A command task runs the node's own files: refused, not half-made.
    assert.throws(() => containerSpec({userns: 'remap'}), /^UserError: --userns remap needs --image: a command task/)
    assert.deepEqual(containerSpec({userns: 'host'}), {})
  })

  test('update sets and unsets it; a spec gossiped in with a bad value is refused', () => {
    assert.deepEqual(updatedContainer('web', {image: 'busybox'}, {userns: 'remap'}), {image: 'busybox', userns: 'remap'})
    assert.deepEqual(updatedContainer('web', {image: 'busybox', userns: 'remap'}, {userns: 'host'}), {image: 'busybox'})
    assert.throws(() => updatedContainer('web', undefined, {userns: 'remap'}), /--userns remap needs --image/)
    assert.throws(() => updatedContainer('web', {image: 'busybox'}, {userns: 'nope'}), /invalid --userns 'nope'/)
    assert.equal(containerProblem({container: {image: 'busybox', userns: 'remap'}}), undefined)
    assert.equal(containerProblem({container: {image: 'busybox', userns: 'host'}}), "'container.userns' is malformed")
    assert.equal(containerProblem({container: {image: 'busybox', userns: 1}}), "'container.userns' is malformed")
    assert.match(containerProblem({container: {userns: 'remap'}}) ?? '', /--userns remap needs --image/)
  })

  test('with --health-cmd: refused in one line at create and at update, nothing written (the check could never run)', async () => {
    const {dir, store, m} = managerFixture('sn-userns-mgr-', [['a', '172.30.0.11']])
    // The files as they are once every write so far is on disk (commits land on libuv's threads,
    // so a read right after a write may or may not see it).
    const files = async () => (await store.sync(), storeFiles(dir))
    const base = {mode: 'replicated' as const, replicas: 1, networks: [], command: [], image: 'busybox'}
    const refusal = /^UserError: --userns remap and --health-cmd do not go together yet: /
    const before = await files()
    assert.throws(() => m.createService({...base, name: 'both', userns: 'remap', healthCmd: 'true'}), refusal)
    assert.equal(await files(), before)
    m.createService({...base, name: 'web', userns: 'remap'})
    const created = await files()
    assert.throws(() => m.updateService('web', {healthCmd: 'true'}), refusal)
    assert.equal(await files(), created)
    m.createService({...base, name: 'checked', healthCmd: 'true'})
    assert.throws(() => m.updateService('checked', {userns: 'remap'}), refusal)
    // Together with taking the check away, remap is taken.
    m.updateService('checked', {userns: 'remap', noHealthcheck: true})
  })

  test("the node's mapping: /etc/subuid's swarmnet range when it has 65536 ids, else 100000", () => {
    assert.equal(subordinateStart('alice:100000:65536\nswarmnet:231072:65536\n'), 231072)
    assert.equal(subordinateStart('swarmnet:231072:1000\n'), undefined)
    assert.equal(subordinateStart(''), undefined)
    const sub = join(work, 'subuid')
    writeFileSync(sub, 'swarmnet:300000:65536\n')
    const r = nodeRemap(sub, join(work, 'no-subgid'))
    assert.deepEqual(r.uid, {containerID: 0, hostID: 300000, size: 65536})
    assert.deepEqual(r.gid, {containerID: 0, hostID: 100000, size: 65536})
  })
})

describe('runtime configuration with a user namespace', () => {
  const base = {
    rootfs: '/r',
    readonlyRootfs: false,
    args: ['sh'],
    env: [],
    cwd: '/',
    uid: 0,
    gid: 0,
    hostname: 'web.1',
    caps: DOCKER_CAPS,
    netnsPath: '/run/netns/x',
    cgroupsPath: '/swarmnet/n1/t',
    files: {hosts: '/h', resolv: '/r', hostname: '/n'},
  }
  type Cfg = {
    mounts: {destination: string; type?: string; source?: string; options?: string[]}[]
    linux: {
      namespaces: {type: string; path?: string}[]
      uidMappings?: unknown[]
      gidMappings?: unknown[]
    }
  }

  test("a new user namespace with the mapping; the network namespace still joined; /sys the node's, bound read-only", () => {
    const c = ociConfig({...base, userns: REMAP}) as Cfg
    assert.deepEqual(
      c.linux.namespaces.map((n) => n.type),
      ['pid', 'ipc', 'uts', 'mount', 'cgroup', 'network', 'user'],
    )
    assert.equal(c.linux.namespaces.find((n) => n.type === 'network')?.path, '/run/netns/x')
    assert.equal(c.linux.namespaces.find((n) => n.type === 'user')?.path, undefined)
    assert.deepEqual(c.linux.uidMappings, [{containerID: 0, hostID: 100000, size: 65536}])
    assert.deepEqual(c.linux.gidMappings, [{containerID: 0, hostID: 100000, size: 65536}])
    const sys = c.mounts.filter((m) => m.destination === '/sys')
    assert.equal(sys.length, 1)
    assert.equal(sys[0]!.type, 'bind')
    assert.equal(sys[0]!.source, '/sys')
    assert.ok(sys[0]!.options!.includes('rbind') && sys[0]!.options!.includes('ro'))
  })

  test("without it: the node's ids, a sysfs of the task's own", () => {
    const c = ociConfig(base) as Cfg
    assert.ok(!c.linux.namespaces.some((n) => n.type === 'user'))
    assert.equal(c.linux.uidMappings, undefined)
    assert.equal(c.mounts.find((m) => m.destination === '/sys')?.type, 'sysfs')
  })
})

describe('the mapped copy of an image', () => {
  const node = 'nu1'
  const must = (argv: string[]) => {
    const r = spawnSync(argv[0]!, argv.slice(1), {encoding: 'utf8'})
    assert.equal(r.status, 0, `${argv.join(' ')}: ${r.stderr}`)
  }

  test('unpacked once with the owners shifted (modes, set-id bits, symlinks kept), beside the plain root, gone with image rm', async () => {
    const root = join(work, 'root')
    mkdirSync(join(root, 'bin'), {recursive: true})
    mkdirSync(join(root, 'home', 'u'), {recursive: true})
    mkdirSync(join(root, 'tmp'), {recursive: true})
    copyFileSync('/bin/busybox', join(root, 'bin', 'busybox'))
    chmodSync(join(root, 'bin', 'busybox'), 0o4755)
    chmodSync(join(root, 'tmp'), 0o1777)
    symlinkSync('busybox', join(root, 'bin', 'sh'))
    writeFileSync(join(root, 'home', 'u', 'f'), 'x')
    must(['chown', '-R', '1000:1001', join(root, 'home', 'u')])
    const layout = join(work, 'layout')
    must(['umoci', 'init', '--layout', layout])
    must(['umoci', 'new', '--image', `${layout}:t`])
    must(['umoci', 'insert', '--image', `${layout}:t`, root, '/'])
    await copyIntoStore(node, `oci:${layout}:t`, 'bb:1')

    const plain = await resolveImage(node, 'bb:1')
    const mapped = await resolveImage(node, 'bb:1', {remap: REMAP})
    assert.notEqual(mapped.rootfs, plain.rootfs)
    assert.equal(mapped.digest, plain.digest)
    const own = (p: string) => {
      const s = lstatSync(p)
      return [s.uid, s.gid, s.mode & 0o7777]
    }
    assert.deepEqual(own(join(plain.rootfs, 'bin', 'busybox')), [0, 0, 0o4755])
    assert.deepEqual(own(join(mapped.rootfs, 'bin', 'busybox')), [100000, 100000, 0o4755])
    assert.deepEqual(own(join(mapped.rootfs, 'tmp')), [100000, 100000, 0o1777])
    assert.deepEqual(own(join(mapped.rootfs, 'home', 'u', 'f')).slice(0, 2), [101000, 101001])
    assert.ok(lstatSync(join(mapped.rootfs, 'bin', 'sh')).isSymbolicLink())
    assert.deepEqual(own(join(mapped.rootfs, 'bin', 'sh')).slice(0, 2), [100000, 100000])
    assert.deepEqual(own(mapped.rootfs).slice(0, 2), [100000, 100000])

    // Once per image per mapping: the second start finds it.
    const before = statSync(join(mapped.rootfs, 'bin', 'busybox')).ino
    const again = await resolveImage(node, 'bb:1', {remap: REMAP})
    assert.equal(again.rootfs, mapped.rootfs)
    assert.equal(statSync(join(again.rootfs, 'bin', 'busybox')).ino, before)

    await removeImage(node, 'bb:1')
    const dir = join(imagesDir(node), 'rootfs', plain.digest.slice('sha256:'.length))
    assert.throws(() => statSync(dir), /ENOENT/)
  })

  test("the task's directory: the mapped root's group may search it, the ones above searchable, none listable", async () => {
    const top = join(work, 'top')
    const dir = join(top, 'n1', 'tasks', 't1')
    mkdirSync(dir, {recursive: true, mode: 0o700})
    chmodSync(top, 0o700)
    await openPathTo(dir, top, REMAP)
    const st = statSync(dir)
    assert.deepEqual([st.uid, st.gid, st.mode & 0o7777], [0, 100000, 0o710])
    for (const d of [top, join(top, 'n1'), join(top, 'n1', 'tasks')]) assert.equal(statSync(d).mode & 0o7777, 0o701)
    await assert.rejects(openPathTo('/etc', top, REMAP), /is not under/)
  })
})
