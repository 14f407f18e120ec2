// `swarmnet agent --install-unit` / `--remove-unit`, into a temporary directory standing for
// /etc/systemd/system: the unit runs this installation's agent, is replaced by a second
// install, never overwrites or removes a file swarmnet did not write.
import assert from 'node:assert/strict'
import {existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {after, test} from 'node:test'
import {BIN, cli} from './helpers.js'

const dir = mkdtempSync(join(tmpdir(), 'sn-unit-'))
const unit = join(dir, 'swarmnet.service')
after(() => rmSync(dir, {recursive: true, force: true}))

test('install-unit writes the unit, remove-unit removes it, a foreign file is left alone', () => {
  const w = cli(undefined, ['agent', '--install-unit', '--unit-dir', dir, '--node', 'n7', '--metrics-addr', ''])
  assert.equal(w.code, 0, w.stderr)
  assert.match(w.stdout, /swarmnet\.service written/)
  const text = readFileSync(unit, 'utf8')
  const line = (k: string) =>
    text
      .split('\n')
      .find((l) => l.startsWith(`${k}=`))
      ?.slice(k.length + 1)
  assert.equal(line('ExecStart'), `${process.execPath} ${BIN} agent --node n7 --metrics-addr ""`)
  assert.equal(line('Restart'), 'always')
  assert.equal(line('WantedBy'), 'multi-user.target')
  assert.match(text, /^\[Unit\]$/m)
  assert.match(text, /^\[Service\]$/m)
  // Again, without --node: replaced, and the agent then runs as the host's node.
  assert.equal(cli(undefined, ['agent', '--install-unit', '--unit-dir', dir]).code, 0)
  assert.equal(
    readFileSync(unit, 'utf8')
      .split('\n')
      .find((l) => l.startsWith('ExecStart=')),
    `ExecStart=${process.execPath} ${BIN} agent`,
  )

  const rm = cli(undefined, ['agent', '--remove-unit', '--unit-dir', dir])
  assert.equal(rm.code, 0, rm.stderr)
  assert.ok(!existsSync(unit))
  assert.match(cli(undefined, ['agent', '--remove-unit', '--unit-dir', dir]).stdout, /no unit at/)

  writeFileSync(unit, '[Service]\nExecStart=/bin/true\n')
  for (const flag of ['--install-unit', '--remove-unit']) {
    const r = cli(undefined, ['agent', flag, '--unit-dir', dir])
    assert.notEqual(r.code, 0)
    assert.match(r.stderr.trim(), /^swarmnet: .*not written by swarmnet[^\n]*$/)
  }
  assert.equal(readFileSync(unit, 'utf8'), '[Service]\nExecStart=/bin/true\n')
  assert.notEqual(cli(undefined, ['agent', '--install-unit', '--remove-unit', '--unit-dir', dir]).code, 0)
})
