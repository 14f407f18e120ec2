// `swarmnet autocomplete` (@oclif/plugin-autocomplete): the bash and zsh completion it writes,
// loaded into a real bash the way its setup line does, completing command names and flags.
// A private cache directory, so nothing of the user's is touched.
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {existsSync, mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {after, describe, test} from 'node:test'
import {fileURLToPath} from 'node:url'

const BIN = join(fileURLToPath(import.meta.url), '..', '..', '..', 'bin', 'run.js')
const cache = mkdtempSync(join(tmpdir(), 'sn-ac-'))
const env = {...process.env, XDG_CACHE_HOME: cache, NO_COLOR: '1'}

function swarmnet(args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], {env, encoding: 'utf8', timeout: 60_000})
  assert.equal(r.status, 0, r.stderr)
  return r.stdout
}

/** What bash completes for the words typed so far (the last one being completed). */
function complete(setup: string, words: string[]): string[] {
  // The completion function is whatever `complete -p swarmnet` names: the one bash would call.
  const script = `${setup}
spec="$(complete -p swarmnet)" || exit 3
fn="$(printf '%s' "$spec" | sed -n 's/.*-F \\([^ ]*\\).*/\\1/p')"
COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')})
COMP_CWORD=${words.length - 1}
COMP_LINE="${words.join(' ')}"
"$fn" swarmnet "${words.at(-1)}" "${words.at(-2) ?? ''}"
printf '%s\\n' "\${COMPREPLY[@]}"`
  const r = spawnSync('bash', ['--noprofile', '--norc', '-c', script], {env, encoding: 'utf8', timeout: 30_000})
  assert.equal(r.status, 0, r.stderr)
  return [...new Set(r.stdout.split('\n').filter(Boolean))].sort()
}

describe('swarmnet autocomplete', () => {
  after(() => rmSync(cache, {recursive: true, force: true}))

  test('bash: the setup line sources a generated script that completes commands, subcommands and flags', () => {
    assert.match(swarmnet(['autocomplete', 'bash']), /swarmnet autocomplete script bash/)
    const setup = swarmnet(['autocomplete', 'script', 'bash']).trim()
    assert.match(setup, new RegExp(`^SWARMNET_AC_BASH_SETUP_PATH=${cache}/swarmnet/autocomplete/bash_setup `))
    assert.ok(existsSync(join(cache, 'swarmnet', 'autocomplete', 'functions', 'bash', 'swarmnet.bash')))
    assert.deepEqual(complete(setup, ['swarmnet', 'serv']), ['service'])
    assert.deepEqual(complete(setup, ['swarmnet', 'service', 'dep']), ['deploy'])
    assert.deepEqual(complete(setup, ['swarmnet', 'lab', 'd']), ['demo', 'down'])
    assert.deepEqual(complete(setup, ['swarmnet', 'service', 'deploy', '--f']), ['--file'])
    const top = complete(setup, ['swarmnet', ''])
    for (const c of ['autocomplete', 'init', 'join', 'lab', 'network', 'service', 'top']) assert.ok(top.includes(c), c)
  })

  test('zsh: a completion function naming every topic', () => {
    swarmnet(['autocomplete', 'zsh'])
    const f = readFileSync(join(cache, 'swarmnet', 'autocomplete', 'functions', 'zsh', '_swarmnet'), 'utf8')
    assert.match(f, /^#compdef swarmnet/)
    for (const c of ['service', 'network', 'lab', 'deploy']) assert.match(f, new RegExp(`\\b${c}\\b`), c)
  })
})
