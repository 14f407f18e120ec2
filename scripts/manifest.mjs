// Writes oclif.manifest.json (every command's id, flags, args, description) at pack time, so the
// installed CLI answers --help and finds a command without importing every command module.
// What `oclif manifest` does, with @oclif/core alone (the oclif CLI is a large dev dependency).
// `node scripts/manifest.mjs --remove` takes it away again (after pack: in the clone, a stale
// manifest would hide commands added since).
import {rmSync, writeFileSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {Plugin} from '@oclif/core'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const file = join(root, 'oclif.manifest.json')
rmSync(file, {force: true})
if (!process.argv.includes('--remove')) {
  const plugin = new Plugin({root, type: 'core', ignoreManifest: true, errorOnManifestCreate: true})
  await plugin.load()
  writeFileSync(file, `${JSON.stringify(plugin.manifest)}\n`)
  console.log(`oclif.manifest.json: ${Object.keys(plugin.manifest.commands).length} commands`)
}
