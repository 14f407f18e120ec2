// What the kernel says about a BPF object (a map, a program, a link) by its fd: struct
// bpf_{map,prog,link}_info, zeroed and of the size libbpf 1.1 knows, filled by
// bpf_obj_get_info_by_fd. Each caller reads the fields it needs at their offsets.
import {errnoError} from './errors.js'
import {SIZEOF, bpfCallAsync, libbpf} from './libbpf.js'

export type InfoStruct = 'bpf_map_info' | 'bpf_prog_info' | 'bpf_link_info'

/** The info struct of the object behind fd; a refusal is thrown as the errno of `what`. */
export function objInfoByFd(fd: number, struct: InfoStruct, what: string): Buffer {
  const info = Buffer.alloc(SIZEOF[struct])
  const len = Buffer.alloc(4)
  len.writeUInt32LE(info.length)
  const rc = libbpf().bpf_obj_get_info_by_fd(fd, info, len)
  if (rc < 0) throw errnoError(what, rc)
  return info
}

/** objInfoByFd with the syscall on libuv's thread pool (the drift check's link reads). */
export async function objInfoByFdAsync(fd: number, struct: InfoStruct, what: string): Promise<Buffer> {
  const info = Buffer.alloc(SIZEOF[struct])
  const len = Buffer.alloc(4)
  len.writeUInt32LE(info.length)
  const rc = await bpfCallAsync('bpf_obj_get_info_by_fd', fd, info, len)
  if (rc < 0) throw errnoError(what, rc)
  return info
}
