// flock(2) on an open file: a lock the kernel drops when its holder dies (even by kill -9),
// so a stale lock cannot outlive its process the way a pid file does.
import {libc} from './libc.js'

const LOCK_EX = 2
const LOCK_NB = 4

/** Takes an exclusive lock on fd without waiting: false if another open file description holds it. */
export function tryLockExclusive(fd: number): boolean {
  return libc().flock(fd, LOCK_EX | LOCK_NB) === 0
}
