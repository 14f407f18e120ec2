// A file replaced whole, so that after a crash it is either the old one or the new one,
// and the new one once this returns: write a temp file, fsync it, rename it over the old,
// fsync the directory (the rename itself is durable only once its directory is).
import {closeSync, fsyncSync, openSync, renameSync, writeSync} from 'node:fs'
import {dirname} from 'node:path'

export function writeFileDurably(file: string, data: string | Buffer, mode = 0o600): void {
  const tmp = `${file}.tmp`
  const fd = openSync(tmp, 'w', mode)
  try {
    const bytes = typeof data === 'string' ? Buffer.from(data) : data
    for (let off = 0; off < bytes.length;) off += writeSync(fd, bytes, off, bytes.length - off)
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
  renameSync(tmp, file)
  syncDir(dirname(file))
}

export function syncDir(dir: string): void {
  const fd = openSync(dir, 'r')
  try {
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
}
