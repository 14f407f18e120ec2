// An agent upgrade to a version whose map layout differs, under load (issue 21). The next version
// is made here as a release would make it: this package copied, its programs built with
// SN_LAYOUT_TEST_NEXT (layout 7: sn_ct and sn_mesh_ct values with a field in front, as
// test/bpf/upgrade-next.test.ts plays it on crafted packets) and its upgrade table given the step
// to 7 with the converters of those maps. In a 2-node lab, with a task on n2 asking the service's
// VIP 10 times a second and the lab's client asking the port published on n2 as often, each on a
// new connection and on one kept-alive connection: `swarmnet agent --replace` of the next version
// takes n2 over. No request fails, both kept-alive connections are the ones from before (their
// tracked flows were carried into the new layout, not picked again: a mesh segment of no known
// flow would be answered by the kernel with a RST), n2's maps are pinned as layout 7 only, and the
// agent's log says what it carried over.
import assert from 'node:assert/strict'
import {cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {after, before, describe, test} from 'node:test'
import {BpfMap} from '../../src/bpf/map.js'
import {compileBpf, makeTmp} from '../fixtures/bpf/build.js'
import {BIN, eventually, json, ok, ROOT, sh} from './helpers.js'
import {withLab} from './lab.js'
import {Load} from './load.js'
import {allRunning} from './service-tasks.js'

interface Task {
  id: string
  node: string
  desiredState: string
  state: string
  netns: string
}

const N2 = '172.30.0.12'
const PINS = '/sys/fs/bpf/swarmnet/n2'
const next = makeTmp('sn-next')
const ps = (svc: string) => json<Task[]>('n1', ['service', 'ps', svc]).filter((t) => t.desiredState === 'running')
const agentPid = () => Number(readFileSync('/run/swarmnet/n2.pid', 'utf8').trim())
const alive = (pid: number) => sh(['kill', '-0', String(pid)]).code === 0
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** The next release: this package with layout 7's programs and the upgrade step that leads to it. */
function buildNext(): void {
  for (const d of ['dist', 'bin']) cpSync(path.join(ROOT, d), path.join(next, d), {recursive: true})
  cpSync(path.join(ROOT, 'package.json'), path.join(next, 'package.json'))
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(next, 'node_modules'))
  mkdirSync(path.join(next, 'bpf', 'dist'), {recursive: true})
  for (const src of readdirSync(path.join(ROOT, 'bpf')).filter((f) => f.endsWith('.c')))
    compileBpf(path.join(ROOT, 'bpf', src), path.join(next, 'bpf', 'dist', src.replace(/\.c$/, '.o')), {
      defines: ['SN_LAYOUT_TEST_NEXT'],
    })
  const file = path.join(next, 'dist', 'src', 'bpf', 'upgrade.js')
  const js = readFileSync(file, 'utf8')
  const version = 'export const LAYOUT_VERSION = 6;'
  const steps = 'export const LAYOUT_STEPS = {'
  assert.ok(js.includes(version) && js.includes(steps), `${file} no longer reads as this test expects`)
  // The step a release with this layout would carry: the field in front, zero, then the old value.
  const shift = '(k, v) => [k, Buffer.concat([Buffer.alloc(8), v])]'
  writeFileSync(
    file,
    js
      .replace(version, 'export const LAYOUT_VERSION = 7;')
      .replace(
        steps,
        `${steps}\n    7: {recorded: true, changed: {sn_ct: ${shift}, sn_mesh_ct: ${shift}, sn_mesh_syn: ${shift}}},`,
      ),
  )
}

describe('an agent upgrade to a new map layout, under load', {timeout: 600_000}, () => {
  const loads: Load[] = []
  withLab(['--nodes', '2'], {beforeDown: () => loads.forEach((l) => l.stop())})
  before(buildNext)
  after(() => rmSync(next, {recursive: true, force: true}))

  test('agent --replace of the next version on n2: no request fails, kept-alive flows live on, maps in layout 7', async () => {
    ok('n1', ['network', 'create', 'up'])
    ok('n1', ['service', 'create', '--name', 'web', '--mode', 'global', '--network', 'up', '--publish', '8080:80'])
    const web = await allRunning('web', 2, ps, 60_000)
    const onN2 = web.find((t) => t.node === 'n2')!
    const vip = json<{vips: {ip: string}[]}>('n1', ['service', 'inspect', 'web']).vips[0]!.ip
    const size = (map: string, layout: number) => {
      const m = BpfMap.openPinned(`${PINS}/v${layout}/${map}`)
      try {
        return m.valueSize
      } finally {
        m.close()
      }
    }
    const before = {ct: size('sn_ct', 6), meshCt: size('sn_mesh_ct', 6)}

    const paths = {
      'VIP from n2': new Load(onN2.netns, `http://${vip}/`),
      'VIP from n2, kept alive': new Load(onN2.netns, `http://${vip}/`, {keepAlive: true}),
      'port on n2': new Load('sn-lab-client', `http://${N2}:8080/`),
      'port on n2, kept alive': new Load('sn-lab-client', `http://${N2}:8080/`, {keepAlive: true}),
    }
    loads.push(...Object.values(paths))
    await eventually('every path answers', () => Object.values(paths).every((l) => l.take().sent > 0), 30_000)
    await sleep(1000)
    for (const l of Object.values(paths)) l.take()

    const old = agentPid()
    const r = sh(
      [
        process.execPath,
        BIN,
        'lab',
        'exec',
        'n2',
        '--',
        process.execPath,
        path.join(next, 'bin', 'run.js'),
        'agent',
        '--node',
        'n2',
        '--replace',
        '--detach',
      ],
      {},
      120_000,
    )
    assert.equal(r.code, 0, r.stderr)
    await eventually('the old agent exits', () => !alive(old), 30_000)
    await eventually('the next agent answers', () => json<{pid: number}>('n2', ['info']).pid !== old, 30_000)
    await sleep(3000)

    const seen = Object.entries(paths).map(([name, l]) => ({name, ...l.take()}))
    console.log(`# through the upgrade: ${seen.map((s) => `${s.name} ${s.sent} sent ${s.failed.length} failed`).join('; ')}`)
    for (const s of seen) {
      assert.ok(s.sent > 20, `${s.name}: only ${s.sent} requests`)
      assert.deepEqual(s.failed, [], `${s.name}: no request fails`)
      assert.equal(s.connections, 0, `${s.name}: no new connection`)
    }
    // Layout 7 only, its flow maps one field wider; what the agent carried over is in its log.
    assert.ok(!existsSync(`${PINS}/v6`), 'the old layout pins are gone')
    assert.deepEqual({ct: size('sn_ct', 7), meshCt: size('sn_mesh_ct', 7)}, {ct: before.ct + 8, meshCt: before.meshCt + 8})
    const line = readFileSync('/var/lib/swarmnet/n2/agent.log', 'utf8')
      .split('\n')
      .find((l) => l.includes('data plane upgraded from layout 6 to 7'))
    assert.ok(line, 'the upgrade is in the agent log')
    assert.match(line, /carried over [^;]*\bsn_ct\b[^;]*\bsn_mesh_ct\b/)
    assert.match(line, /dropped none/)
    console.log(`# ${line.trim()}`)
  })
})
