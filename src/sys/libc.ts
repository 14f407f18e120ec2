// The libc calls swarmnet makes through koffi, declared in one place: sockets (the netns cookie,
// rtnetlink device pairs, batched UDP), flock, and what the BPF loader needs (if_nametoindex,
// mount, close, vsnprintf for libbpf's messages). Opened on first use, not on import, so code
// that imports a caller loads on a machine where koffi cannot open libc and fails only when a
// call is made, with one line. Per thread: koffi's functions belong to the thread that declared
// them, and a worker (dns/udp-batch-worker.ts) has its own copy of this module, so its own table.
import koffi from 'koffi'

/** The typed view of exactly the prototypes below (koffi's functions are untyped callables). */
export interface Libc {
  socket(domain: number, type: number, protocol: number): number
  bind(fd: number, addr: Buffer, len: number): number
  setsockopt(fd: number, level: number, name: number, value: Buffer, len: number): number
  getsockopt(fd: number, level: number, name: number, value: Buffer, len: Buffer): number
  shutdown(fd: number, how: number): number
  close(fd: number): number
  send(fd: number, buf: Buffer, len: number, flags: number): number
  recv(fd: number, buf: Buffer, len: number, flags: number): number
  sendto(fd: number, buf: Buffer, len: number, flags: number, addr: Buffer, alen: number): number
  /** `vec`: native memory holding `vlen` struct mmsghdr (an address from koffi.alloc). */
  recvmmsg(fd: number, vec: unknown, vlen: number, flags: number, timeout: null): number
  sendmmsg(fd: number, vec: unknown, vlen: number, flags: number): number
  flock(fd: number, operation: number): number
  if_nametoindex(name: string): number
  mount(source: string, target: string, fstype: string, flags: number, data: string | null): number
  /** `fmt`, `ap`: the pointers libbpf's print callback is given (va_list travels as a pointer on LP64). */
  vsnprintf(buf: Buffer, size: number, fmt: unknown, ap: unknown): number
}

const PROTOTYPES = [
  'int socket(int domain, int type, int protocol)',
  'int bind(int fd, const void *addr, uint32_t len)',
  'int setsockopt(int fd, int level, int name, const void *value, uint32_t len)',
  'int getsockopt(int fd, int level, int name, void *value, uint32_t *len)',
  'int shutdown(int fd, int how)',
  'int close(int fd)',
  'long send(int fd, const void *buf, size_t len, int flags)',
  'long recv(int fd, void *buf, size_t len, int flags)',
  'long sendto(int fd, const void *buf, size_t len, int flags, const void *addr, uint32_t alen)',
  'int recvmmsg(int fd, void *vec, unsigned int vlen, int flags, void *timeout)',
  'int sendmmsg(int fd, void *vec, unsigned int vlen, int flags)',
  'int flock(int fd, int operation)',
  'unsigned int if_nametoindex(const char *ifname)',
  'int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const char *data)',
  'int vsnprintf(void *buf, size_t size, void *fmt, void *ap)',
]

const LIBC_SONAME = 'libc.so.6'

let table: Libc | undefined

/** libc's functions, loaded on first call; throws one line when koffi cannot open libc. */
export function libc(): Libc {
  if (table) return table
  let lib: koffi.IKoffiLib
  try {
    lib = koffi.load(LIBC_SONAME)
  } catch (e) {
    throw new Error(`cannot load ${LIBC_SONAME} through koffi: ${String((e as Error).message).split('\n')[0]}`, {cause: e})
  }
  const fns: Record<string, koffi.KoffiFunction> = {}
  for (const proto of PROTOTYPES) {
    const fn = lib.func(proto)
    fns[fn.info.name] = fn
  }
  // koffi functions are untyped callables; Libc is the typed view of exactly these prototypes.
  table = fns as unknown as Libc
  return table
}

/** errno of the last native call on this thread. */
export function errno(): number {
  return koffi.errno()
}
