// The systemd unit that runs a node's agent (`swarmnet agent --install-unit`): the one the
// README shows, with ExecStart naming this very installation, so the unit runs what was installed.
import {existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {UserError} from '../model/errors.js'
import {selfArgv} from '../util/root.js'

export const DEFAULT_UNIT_DIR = '/etc/systemd/system'
export const UNIT_NAME = 'swarmnet.service'
/** The first line of every unit we write: a file without it is someone else's, never overwritten. */
const MARK = '# Written by `swarmnet agent --install-unit`; `swarmnet agent --remove-unit` removes it.'

export function unitText(opts: {node?: string; metricsAddr?: string} = {}): string {
  const quote = (a: string) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(a) ? a : `"${a.replace(/(["\\])/g, '\\$1')}"`)
  const argv = [
    ...selfArgv(),
    'agent',
    ...(opts.node ? ['--node', opts.node] : []),
    ...(opts.metricsAddr !== undefined ? ['--metrics-addr', opts.metricsAddr] : []),
  ]
  return [
    MARK,
    '[Unit]',
    'Description=swarmnet agent',
    'After=network-online.target',
    'Wants=network-online.target',
    '[Service]',
    `ExecStart=${argv.map(quote).join(' ')}`,
    // SIGTERM only to the agent: its tasks run in their own cgroups and outlive it, as with `kill`.
    'KillMode=process',
    'Restart=always',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ].join('\n')
}

const ours = (file: string) => readFileSync(file, 'utf8').startsWith(MARK)

/** Writes the unit (atomically); refuses to overwrite a file swarmnet did not write. Returns its path. */
export function installUnit(dir: string, text: string): string {
  const file = join(dir, UNIT_NAME)
  if (existsSync(file) && !ours(file)) throw new UserError(`${file} exists and was not written by swarmnet: not overwritten`)
  mkdirSync(dir, {recursive: true})
  writeFileSync(`${file}.tmp`, text, {mode: 0o644})
  renameSync(`${file}.tmp`, file)
  return file
}

/** Removes the unit if it is ours; false when there is none. */
export function removeUnit(dir: string): boolean {
  const file = join(dir, UNIT_NAME)
  if (!existsSync(file)) return false
  if (!ours(file)) throw new UserError(`${file} was not written by swarmnet: not removed`)
  rmSync(file)
  return true
}
