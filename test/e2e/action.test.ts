// The composite action (action.yml), its steps run here the way a runner runs them: each `run`
// as a script file under `bash --noprofile --norc -eo pipefail`, `${{ inputs.* }}` filled from
// the inputs and their defaults, GITHUB_ACTION_PATH, GITHUB_OUTPUT and GITHUB_PATH files between
// steps. `version` is a tarball packed here, installed into a temporary npm prefix.
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {after, before, describe, test} from 'node:test'
import {parse} from 'yaml'
import {ROOT, leftovers, sh} from './helpers.js'

interface Step {
  id?: string
  name?: string
  shell?: string
  env?: Record<string, string>
  run?: string
  uses?: string
}
interface Action {
  inputs: Record<string, {default?: string}>
  outputs: Record<string, {value: string}>
  runs: {using: string; steps: Step[]}
}

const tmp = mkdtempSync(join(tmpdir(), 'sn-action-'))
const action = parse(readFileSync(join(ROOT, 'action.yml'), 'utf8')) as Action

/** Only the expressions a runner would fill here; anything else is a mistake in action.yml. */
function fill(text: string, ctx: {inputs: Record<string, string>; steps: Record<string, Record<string, string>>}): string {
  return text.replace(/\$\{\{\s*([^}]+?)\s*\}\}/g, (_m, expr: string) => {
    let m = /^inputs\.([A-Za-z0-9_-]+)$/.exec(expr)
    if (m) return ctx.inputs[m[1]!] ?? ''
    m = /^steps\.([A-Za-z0-9_-]+)\.outputs\.([A-Za-z0-9_-]+)$/.exec(expr)
    if (m) return ctx.steps[m[1]!]?.[m[2]!] ?? ''
    if (expr === 'github.action_path') return ROOT
    throw new Error(`action.yml uses an expression this test does not know: ${expr}`)
  })
}

/** Runs the action's steps; returns its outputs, or the failing step and its output. */
function runAction(with_: Record<string, string>, prefix: string) {
  const inputs = Object.fromEntries(Object.entries(action.inputs).map(([k, v]) => [k, with_[k] ?? v.default ?? '']))
  const ctx = {inputs, steps: {} as Record<string, Record<string, string>>}
  const paths: string[] = []
  for (const [i, step] of action.runs.steps.entries()) {
    assert.equal(step.shell, 'bash', `step ${i} names its shell, as composite steps must`)
    const script = join(tmp, `step-${i}.sh`)
    const output = join(tmp, `output-${i}`)
    const pathFile = join(tmp, `path-${i}`)
    writeFileSync(script, fill(step.run!, ctx))
    writeFileSync(output, '')
    writeFileSync(pathFile, '')
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      ...Object.fromEntries(Object.entries(step.env ?? {}).map(([k, v]) => [k, fill(String(v), ctx)])),
      PATH: [...paths, process.env.PATH].join(':'),
      GITHUB_ACTION_PATH: ROOT,
      GITHUB_OUTPUT: output,
      GITHUB_PATH: pathFile,
      npm_config_prefix: prefix,
      NO_COLOR: '1',
    }
    delete env.SWARMNET_HOST
    const r = spawnSync('bash', ['--noprofile', '--norc', '-eo', 'pipefail', script], {
      cwd: tmp,
      env,
      encoding: 'utf8',
      timeout: 300_000,
    })
    if (r.status !== 0) return {failed: step.name ?? String(i), out: `${r.stdout}${r.stderr}`}
    paths.unshift(...readFileSync(pathFile, 'utf8').split('\n').filter(Boolean).reverse())
    if (step.id)
      ctx.steps[step.id] = Object.fromEntries(
        readFileSync(output, 'utf8')
          .split('\n')
          .filter((l) => l.includes('='))
          .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
      )
  }
  return {outputs: Object.fromEntries(Object.entries(action.outputs).map(([k, v]) => [k, fill(v.value, ctx)])), paths}
}

describe('the GitHub Action, its steps run as a runner runs them', {timeout: 600_000}, () => {
  let tarball: string

  before(() => {
    const up = sh(['ip', 'netns', 'list']).stdout
    assert.ok(!/sn-lab-/.test(up), 'a lab is already up on this machine: `swarmnet lab down` first')
    const pack = spawnSync('npm', ['pack', '--json', '--pack-destination', tmp], {cwd: ROOT, encoding: 'utf8', timeout: 300_000})
    assert.equal(pack.status, 0, pack.stderr)
    tarball = join(tmp, (JSON.parse(pack.stdout.slice(pack.stdout.indexOf('['))) as {filename: string}[])[0]!.filename)
  })

  after(() => {
    sh([process.execPath, join(ROOT, 'bin', 'run.js'), 'lab', 'down'])
    rmSync(tmp, {recursive: true, force: true})
    assert.deepEqual(leftovers(), [], 'lab down must leave nothing behind')
  })

  test('the workflow uses the action from this repository', () => {
    const wf = parse(readFileSync(join(ROOT, '.github', 'workflows', 'lab.yml'), 'utf8')) as {
      jobs: Record<string, {steps: Step[]}>
    }
    const steps = Object.values(wf.jobs).flatMap((j) => j.steps)
    assert.ok(steps.some((s) => s.uses === './'))
    assert.ok(
      steps.some((s) => /swarmnet lab down/.test(s.run ?? '')),
      'and tears the lab down',
    )
    assert.equal(action.runs.using, 'composite')
  })

  test("a bad 'nodes' fails the step and makes nothing", () => {
    const r = runAction({nodes: 'x', version: tarball}, join(tmp, 'prefix-bad'))
    assert.equal(r.failed, 'Bring the lab up')
    assert.match(r.out ?? '', /nodes must be 1-9/)
    assert.ok(!/sn-lab-/.test(sh(['ip', 'netns', 'list']).stdout))
  })

  test("a bad 'services' file fails its check before the lab comes up", () => {
    const file = join(tmp, 'bad-services.yml')
    writeFileSync(file, 'services:\n  - name: web\n    publish: ["80:99999"]\n')
    const r = runAction({nodes: '2', version: tarball, services: file}, join(tmp, 'prefix-bad-services'))
    assert.equal(r.failed, 'Check the services file')
    assert.match(r.out ?? '', /bad-services\.yml: service 'web': publish\[0\]: invalid target port '99999': must be 1-65535/)
    assert.ok(!/sn-lab-/.test(sh(['ip', 'netns', 'list']).stdout))
  })

  test('nodes: 2 and a services file: a lab with the installed package, its services running, outputs its nodes and addresses; lab down removes it', () => {
    const prefix = join(tmp, 'prefix')
    const r = runAction({nodes: '2', version: tarball, services: join(ROOT, '.github', 'lab-services.yml')}, prefix)
    assert.equal(r.failed, undefined, r.out)
    assert.equal(r.outputs!.nodes, 'n1 n2')
    const status = JSON.parse(sh([process.execPath, join(ROOT, 'bin', 'run.js'), 'lab', 'status', '--json']).stdout) as {
      nodes: {address: string; agentPid: number}[]
    }
    assert.equal(r.outputs!.addresses, status.nodes.map((n) => n.address).join(' '))
    assert.match(r.outputs!.addresses!, /^\d+\.\d+\.\d+\.\d+ \d+\.\d+\.\d+\.\d+$/)
    // The agents are the installed copy's, found through GITHUB_PATH.
    for (const n of status.nodes)
      assert.ok(readFileSync(`/proc/${n.agentPid}/cmdline`, 'utf8').includes(prefix), 'agent from the installed package')
    // The workflow's services file, deployed and running when the action's last step ended.
    const ls = spawnSync(join(prefix, 'bin', 'swarmnet'), ['service', 'ls', '--host', 'n1', '--json'], {encoding: 'utf8'})
    const svcs = JSON.parse(ls.stdout) as {name: string; mode: string; running: number; networks: string[]}[]
    assert.deepEqual(
      svcs.map((s) => [s.name, s.mode, s.running, s.networks]),
      [['whoami', 'global', 2, ['web']]],
    )
    const down = spawnSync(join(prefix, 'bin', 'swarmnet'), ['lab', 'down'], {encoding: 'utf8'})
    assert.equal(down.status, 0, down.stderr)
    assert.deepEqual(leftovers(), [])
  })
})
