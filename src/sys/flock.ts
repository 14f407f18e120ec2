// flock(2) on an open file: a lock the kernel drops when its holder dies (even by kill -9),
// so a stale lock cannot outlive its process the way a pid file does.
import koffi from 'koffi'

const LOCK_EX = 2
const LOCK_NB = 4

let flock: ((fd: number, op: number) => number) | undefined

/** Takes an exclusive lock on fd without waiting: false if another open file description holds it. */
export function tryLockExclusive(fd: number): boolean {
  flock ??= koffi.load('libc.so.6').func('int flock(int fd, int operation)') as (fd: number, op: number) => number
  return flock(fd, LOCK_EX | LOCK_NB) === 0
}
