// service create's container flags as the manager checks them, and the runtime configuration
// they become: Docker's syntax and defaults, one-line errors for what is refused.
import assert from 'node:assert/strict'
import {describe, test} from 'node:test'
import {containerProblem, containerSpec, parseEnvFile, parseMount} from '../../src/model/container.js'
import {updatedContainer} from '../../src/model/container-update.js'
import {parseImageRef} from '../../src/images/image.js'
import {DOCKER_CAPS, ociConfig, taskCaps} from '../../src/tasks/oci-spec.js'
import {defaultSeccomp} from '../../src/tasks/seccomp-default.js'
import {mergeEnv} from '../../src/tasks/container.js'

describe('container flags', () => {
  test('image references: the transports skopeo names offline, or a store name', () => {
    assert.deepEqual(parseImageRef('oci:/srv/img'), {kind: 'oci', dir: '/srv/img', tag: 'latest'})
    assert.deepEqual(parseImageRef('oci:/srv/img:busybox:1.0'), {kind: 'oci', dir: '/srv/img', tag: 'busybox:1.0'})
    assert.deepEqual(parseImageRef('docker-archive:/a.tar'), {kind: 'docker-archive', file: '/a.tar'})
    assert.deepEqual(parseImageRef('busybox'), {kind: 'store', name: 'busybox:latest'})
    assert.throws(() => parseImageRef('docker://busybox'), /docker: transport is not supported/)
    assert.throws(() => parseImageRef('Bad Name'), /not an image reference/)
  })

  test("--mount in the docker CLI's syntax", () => {
    assert.deepEqual(parseMount('type=bind,src=/srv,dst=/data,ro'), {
      type: 'bind',
      source: '/srv',
      target: '/data',
      readonly: true,
    })
    assert.deepEqual(parseMount('type=volume,source=db,target=/var/db'), {type: 'volume', source: 'db', target: '/var/db'})
    assert.deepEqual(parseMount('target=/cache'), {type: 'volume', target: '/cache'})
    assert.deepEqual(parseMount('type=tmpfs,target=/tmp,tmpfs-size=64m,tmpfs-mode=1770'), {
      type: 'tmpfs',
      target: '/tmp',
      sizeBytes: 64 * 1024 * 1024,
      mode: 0o1770,
    })
    assert.throws(
      () => parseMount('type=bind,target=/x'),
      /^UserError: invalid --mount 'type=bind,target=\/x': a bind mount needs source=\/PATH$/,
    )
    assert.throws(() => parseMount('type=nfs,target=/x'), /type=nfs: bind, volume or tmpfs/)
    assert.throws(() => parseMount('type=tmpfs,target=/x,readonly'), /a tmpfs cannot be read-only/)
    assert.throws(() => parseMount('type=bind,source=/a,target=../x'), /an absolute path without \.\./)
    assert.throws(() => parseMount('type=bind,source=/a,target=/x,propagation=shared'), /unknown key 'propagation'/)
  })

  test('the flags also go without --image (a command runs in the same runtime); each bad value in one line', () => {
    assert.deepEqual(containerSpec({}), {})
    assert.deepEqual(containerSpec({readOnly: true}), {container: {readOnly: true}})
    assert.deepEqual(containerSpec({env: ['A=1'], workdir: '/tmp', mounts: ['type=tmpfs,target=/scratch']}), {
      container: {env: ['A=1'], workdir: '/tmp', mounts: [{type: 'tmpfs', target: '/scratch'}]},
    })
    assert.throws(() => containerSpec({env: ['NOEQUALS']}), /invalid --env 'NOEQUALS'/)
    const img = 'oci:/srv/img'
    assert.throws(() => containerSpec({image: img, env: ['NOEQUALS']}), /invalid --env 'NOEQUALS'/)
    assert.throws(() => containerSpec({image: img, hostname: 'a_b'}), /invalid --hostname 'a_b'/)
    assert.throws(() => containerSpec({image: img, workdir: 'rel'}), /invalid --workdir 'rel'/)
    assert.throws(() => containerSpec({image: img, mounts: ['target=/a', 'type=tmpfs,target=/a']}), /two mounts at \/a/)
    assert.deepEqual(containerSpec({image: img, env: ['A=1'], capDrop: ['CAP_NET_RAW'], readOnly: true}), {
      container: {image: img, env: ['A=1'], capDrop: ['net_raw'], readOnly: true},
    })
  })

  test('--env-file as Docker reads it', () => {
    const text = '# comment\n\nA=1\n  B=two words\nFROM_ENV\nMISSING\n'
    assert.deepEqual(parseEnvFile(text, 'f', {FROM_ENV: 'x'}), ['A=1', 'B=two words', 'FROM_ENV=x'])
    assert.throws(() => parseEnvFile('1X=2\n', 'f', {}), /^UserError: invalid --env-file f: line 1: '1X' is not a variable name$/)
    assert.deepEqual(mergeEnv(['PATH=/bin', 'A=1'], ['A=2', 'B=3']), ['PATH=/bin', 'A=2', 'B=3'])
  })
})

describe('runtime configuration', () => {
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
    process: {capabilities: Record<string, string[]>}
    linux: {namespaces: {type: string; path?: string}[]; resources: {memory?: {limit: number}}}
  }

  test("Docker's default capabilities; --cap-add/--cap-drop; none effective for another user", () => {
    assert.deepEqual(taskCaps([], ['net_raw']).includes('net_raw'), false)
    assert.ok(taskCaps(['NET_ADMIN']).includes('net_admin'))
    assert.deepEqual(taskCaps(['chown'], ['ALL']), ['chown'])
    const root = ociConfig(base) as Cfg
    assert.equal(root.process.capabilities.effective!.length, 14)
    assert.ok(root.process.capabilities.bounding!.includes('CAP_MKNOD'))
    const user = ociConfig({...base, uid: 1000, gid: 1000}) as Cfg
    assert.deepEqual(user.process.capabilities.effective, [])
    assert.equal(user.process.capabilities.bounding!.length, 14)
  })

  test("--init: the node's tini bound read-only at /dev/init and run in front of the command", () => {
    type Full = {process: {args: string[]}; mounts: {destination: string; source?: string; options?: string[]}[]}
    const c = ociConfig({...base, args: ['sleep', '9'], init: '/usr/bin/tini-static'}) as Full
    assert.deepEqual(c.process.args, ['/dev/init', '--', 'sleep', '9'])
    const m = c.mounts.find((x) => x.destination === '/dev/init')!
    assert.equal(m.source, '/usr/bin/tini-static')
    assert.ok(m.options!.includes('ro'))
    const plain = ociConfig({...base, args: ['sleep', '9']}) as Full
    assert.deepEqual(plain.process.args, ['sleep', '9'])
    assert.ok(!plain.mounts.some((x) => x.destination === '/dev/init'))
  })

  test('--init in the spec: stored as true, set and unset by update, anything else from gossip refused', () => {
    assert.deepEqual(containerSpec({init: true}), {container: {init: true}})
    assert.deepEqual(containerSpec({init: false}), {})
    const on = updatedContainer('web', undefined, {init: true})
    assert.deepEqual(on, {init: true})
    assert.deepEqual(updatedContainer('web', {init: true, readOnly: true}, {init: false}), {readOnly: true})
    assert.equal(containerProblem({container: {init: 'yes'}}), "'container.init' is malformed")
    assert.equal(containerProblem({container: {init: true}}), undefined)
  })

  test("the task's network namespace is joined, not made; limits become resources", () => {
    const c = ociConfig({...base, limits: {memoryBytes: 64 << 20}}) as Cfg
    assert.deepEqual(
      c.linux.namespaces.find((n) => n.type === 'network'),
      {type: 'network', path: '/run/netns/x'},
    )
    assert.equal(c.linux.resources.memory?.limit, 64 << 20)
  })

  test("seccomp: an allow-list; namespaces and mounts only with CAP_SYS_ADMIN, as Docker's default", () => {
    const allowed = (caps: readonly string[]) =>
      new Set(
        defaultSeccomp(caps, 'x64')
          .syscalls.filter((s) => s.action === 'SCMP_ACT_ALLOW' && !s.args)
          .flatMap((s) => s.names),
      )
    const d = allowed(DOCKER_CAPS)
    assert.equal(defaultSeccomp(DOCKER_CAPS, 'x64').defaultAction, 'SCMP_ACT_ERRNO')
    for (const s of ['read', 'socket', 'execve', 'chroot', 'arch_prctl']) assert.ok(d.has(s), s)
    for (const s of ['mount', 'unshare', 'setns', 'bpf', 'init_module', 'reboot', 'kexec_load', 'open_by_handle_at', 'clone'])
      assert.ok(!d.has(s), s)
    const admin = allowed([...DOCKER_CAPS, 'sys_admin'])
    for (const s of ['mount', 'unshare', 'setns', 'clone']) assert.ok(admin.has(s), s)
  })
})
