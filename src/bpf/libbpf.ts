// The koffi declarations over the system libbpf (libbpf.so.1); the few libc
// calls the loader needs are in sys/libc.ts. Nothing here interprets results:
// callers get libbpf's raw return values (negative errno in libbpf 1.x) and
// turn them into BpfErrors themselves.
//
// The library is opened on first use, not on import, so that the CLI (and
// the unit tests of pure code) can import src/bpf on a machine without
// libbpf and only fail when a BPF operation is actually attempted.

import koffi from 'koffi'
import {libc, type Libc} from '../sys/libc.js'
import {BpfError} from './errors.js'

/** An opaque native pointer handed out by koffi (struct bpf_object *, ...). */
export type NativePtr = {readonly __nativePtr: unique symbol}

// Map/program handles are only ever passed back into libbpf, so one opaque
// type for all of them is enough; the wrapper classes keep them apart.
type P = NativePtr
type Mem = Buffer | NativePtr | null

// Layouts of the option structs, checked against the C headers by
// test/unit/bpf-libbpf.test.ts. Field names follow libbpf.
export interface OpenOpts {
  sz: number
  object_name: string | null
  relaxed_maps: boolean
  pin_root_path: string | null
  kconfig: string | null
  btf_custom_path: string | null
  kernel_log_buf: NativePtr | null
  kernel_log_size: number
  kernel_log_level: number
}

export interface TestRunOpts {
  sz: number
  data_in: NativePtr | null
  data_out: NativePtr | null
  data_size_in: number
  data_size_out: number
  ctx_in: NativePtr | null
  ctx_out: NativePtr | null
  ctx_size_in: number
  ctx_size_out: number
  retval: number
  repeat: number
  duration: number
  flags: number
  cpu: number
  batch_size: number
}

export interface Libbpf {
  libbpf_major_version(): number
  libbpf_minor_version(): number
  libbpf_strerror(err: number, buf: Buffer, size: number): number
  libbpf_get_error(ptr: P | null): number

  bpf_object__open_file(path: string, opts: OpenOpts): P | null
  bpf_object__load(obj: P): number
  bpf_object__close(obj: P): void
  bpf_object__find_program_by_name(obj: P, name: string): P | null
  bpf_object__find_map_by_name(obj: P, name: string): P | null
  bpf_object__next_map(obj: P, prev: P | null): P | null
  bpf_object__next_program(obj: P, prev: P | null): P | null

  bpf_program__fd(prog: P): number
  bpf_program__name(prog: P): string
  bpf_program__type(prog: P): number
  bpf_program__set_log_buf(prog: P, buf: NativePtr | null, size: number): number
  bpf_program__set_log_level(prog: P, level: number): number

  bpf_map__fd(map: P): number
  bpf_map__name(map: P): string
  bpf_map__type(map: P): number
  bpf_map__key_size(map: P): number
  bpf_map__value_size(map: P): number
  bpf_map__max_entries(map: P): number
  bpf_map__map_flags(map: P): number
  bpf_map__pin_path(map: P): string | null
  bpf_map__set_pin_path(map: P, path: string | null): number

  bpf_obj_get(path: string): number
  bpf_obj_pin(fd: number, path: string): number
  bpf_obj_get_info_by_fd(fd: number, info: Buffer, infoLen: Buffer): number

  bpf_map_lookup_elem(fd: number, key: Mem, value: Buffer): number
  bpf_map_update_elem(fd: number, key: Mem, value: Buffer, flags: bigint | number): number
  bpf_map_delete_elem(fd: number, key: Mem): number
  bpf_map_get_next_key(fd: number, key: Mem, next: Buffer): number
  bpf_map_lookup_batch(
    fd: number,
    inBatch: Buffer | null,
    outBatch: Buffer,
    keys: Buffer,
    values: Buffer,
    count: Buffer,
    opts: Buffer | null,
  ): number
  bpf_map_update_batch(fd: number, keys: Buffer, values: Buffer, count: Buffer, opts: Buffer | null): number
  bpf_map_delete_batch(fd: number, keys: Buffer, count: Buffer, opts: Buffer | null): number

  bpf_xdp_attach(ifindex: number, progFd: number, flags: number, opts: Buffer | null): number
  bpf_xdp_detach(ifindex: number, flags: number, opts: Buffer | null): number
  bpf_xdp_query_id(ifindex: number, flags: number, progId: Buffer): number
  bpf_xdp_query(ifindex: number, flags: number, opts: Buffer): number

  bpf_link_create(progFd: number, targetFd: number, attachType: number, opts: Buffer | null): number
  bpf_link_update(linkFd: number, newProgFd: number, opts: Buffer | null): number
  bpf_link_detach(linkFd: number): number
  bpf_prog_get_fd_by_id(id: number): number
  /** Turns on the kernel's run-time statistics of every program while the returned fd is open. */
  bpf_enable_stats(type: number): number

  bpf_tc_hook_create(hook: Buffer): number
  bpf_tc_hook_destroy(hook: Buffer): number
  bpf_tc_attach(hook: Buffer, opts: Buffer): number
  bpf_tc_detach(hook: Buffer, opts: Buffer): number
  bpf_tc_query(hook: Buffer, opts: Buffer): number

  bpf_prog_test_run_opts(progFd: number, opts: TestRunOpts): number

  libbpf_probe_bpf_prog_type(progType: number, opts: null): number
  libbpf_probe_bpf_map_type(mapType: number, opts: null): number
  libbpf_probe_bpf_helper(progType: number, helperId: number, opts: null): number

  btf__parse(path: string, ext: null): P | null
  btf__free(btf: P): void
  btf__find_by_name_kind(btf: P, name: string, kind: number): number
  btf__type_by_id(btf: P, id: number): P | null
  btf__name_by_offset(btf: P, offset: number): string | null
  btf__resolve_size(btf: P, id: number): number
  btf__type_cnt(btf: P): number
}

// Byte sizes of the opts structs in libbpf 1.1 (x86_64/aarch64 LP64); the
// libbpf test compares them with sizeof() from the installed headers.
export const SIZEOF = {
  bpf_object_open_opts: 80,
  bpf_map_info: 88,
  bpf_map_batch_opts: 24,
  bpf_test_run_opts: 80,
  bpf_tc_hook: 24,
  bpf_tc_opts: 32,
  bpf_xdp_query_opts: 32,
  bpf_link_create_opts: 64,
  bpf_link_update_opts: 16,
  bpf_link_info: 48,
  bpf_prog_info: 232,
} as const

let loaded: {bpf: Libbpf; log: LibbpfLog} | undefined

/** libbpf's own diagnostics (its print callback), kept so errors can quote them. */
export interface LibbpfLog {
  /** Messages since the last `take()`, oldest first. */
  take(): string[]
}

const LIBBPF_SONAME = 'libbpf.so.1'

function load(): {bpf: Libbpf; log: LibbpfLog} {
  if (loaded) return loaded
  let lib: koffi.IKoffiLib
  try {
    lib = koffi.load(LIBBPF_SONAME)
  } catch (e) {
    throw new BpfError(
      'NO_LIBBPF',
      `cannot load ${LIBBPF_SONAME}: install libbpf 1.x (Debian/Ubuntu: apt-get install libbpf1) (${(e as Error).message})`,
      {cause: e},
    )
  }
  // libbpf's messages are formatted by libc (installPrintCallback): opened with it.
  const {vsnprintf} = libc()

  koffi.opaque('bpf_object')
  koffi.opaque('bpf_program')
  koffi.opaque('bpf_map')
  koffi.opaque('btf')
  koffi.opaque('btf_type')
  koffi.struct('bpf_object_open_opts', {
    sz: 'size_t',
    object_name: 'const char *',
    relaxed_maps: 'bool',
    pin_root_path: 'const char *',
    _stub_attach_prog_fd: 'uint32_t',
    kconfig: 'const char *',
    btf_custom_path: 'const char *',
    kernel_log_buf: 'void *',
    kernel_log_size: 'size_t',
    kernel_log_level: 'uint32_t',
    _tail: 'uint32_t', // the header's `size_t :0`, made explicit
  })
  koffi.struct('bpf_test_run_opts', {
    sz: 'size_t',
    data_in: 'void *',
    data_out: 'void *',
    data_size_in: 'uint32_t',
    data_size_out: 'uint32_t',
    ctx_in: 'void *',
    ctx_out: 'void *',
    ctx_size_in: 'uint32_t',
    ctx_size_out: 'uint32_t',
    retval: 'uint32_t',
    repeat: 'int',
    duration: 'uint32_t',
    flags: 'uint32_t',
    cpu: 'uint32_t',
    batch_size: 'uint32_t',
  })

  const decl = <T>(l: koffi.IKoffiLib, protos: string[]): T => {
    const out: Record<string, koffi.KoffiFunction> = {}
    for (const proto of protos) {
      const fn = l.func(proto)
      out[fn.info.name] = fn
    }
    // koffi functions are untyped variadic callables; the interface above
    // is the typed view of exactly these prototypes.
    return out as unknown as T
  }

  const bpf = decl<Libbpf>(lib, [
    'uint32_t libbpf_major_version()',
    'uint32_t libbpf_minor_version()',
    'int libbpf_strerror(int err, void *buf, size_t size)',
    'long libbpf_get_error(const void *ptr)',

    'bpf_object *bpf_object__open_file(const char *path, const bpf_object_open_opts *opts)',
    'int bpf_object__load(bpf_object *obj)',
    'void bpf_object__close(bpf_object *obj)',
    'bpf_program *bpf_object__find_program_by_name(const bpf_object *obj, const char *name)',
    'bpf_map *bpf_object__find_map_by_name(const bpf_object *obj, const char *name)',
    'bpf_map *bpf_object__next_map(const bpf_object *obj, const bpf_map *prev)',
    'bpf_program *bpf_object__next_program(const bpf_object *obj, bpf_program *prev)',

    'int bpf_program__fd(const bpf_program *prog)',
    'const char *bpf_program__name(const bpf_program *prog)',
    'int bpf_program__type(const bpf_program *prog)',
    'int bpf_program__set_log_buf(bpf_program *prog, void *log_buf, size_t log_size)',
    'int bpf_program__set_log_level(bpf_program *prog, uint32_t log_level)',

    'int bpf_map__fd(const bpf_map *map)',
    'const char *bpf_map__name(const bpf_map *map)',
    'int bpf_map__type(const bpf_map *map)',
    'uint32_t bpf_map__key_size(const bpf_map *map)',
    'uint32_t bpf_map__value_size(const bpf_map *map)',
    'uint32_t bpf_map__max_entries(const bpf_map *map)',
    'uint32_t bpf_map__map_flags(const bpf_map *map)',
    'const char *bpf_map__pin_path(const bpf_map *map)',
    'int bpf_map__set_pin_path(bpf_map *map, const char *path)',

    'int bpf_obj_get(const char *pathname)',
    'int bpf_obj_pin(int fd, const char *pathname)',
    'int bpf_obj_get_info_by_fd(int bpf_fd, void *info, void *info_len)',

    'int bpf_map_lookup_elem(int fd, const void *key, void *value)',
    'int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags)',
    'int bpf_map_delete_elem(int fd, const void *key)',
    'int bpf_map_get_next_key(int fd, const void *key, void *next_key)',
    'int bpf_map_lookup_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values, void *count, const void *opts)',
    'int bpf_map_update_batch(int fd, const void *keys, const void *values, void *count, const void *opts)',
    'int bpf_map_delete_batch(int fd, const void *keys, void *count, const void *opts)',

    'int bpf_xdp_attach(int ifindex, int prog_fd, uint32_t flags, const void *opts)',
    'int bpf_xdp_detach(int ifindex, uint32_t flags, const void *opts)',
    'int bpf_xdp_query_id(int ifindex, int flags, void *prog_id)',
    'int bpf_xdp_query(int ifindex, int flags, void *opts)',

    'int bpf_link_create(int prog_fd, int target_fd, int attach_type, const void *opts)',
    'int bpf_link_update(int link_fd, int new_prog_fd, const void *opts)',
    'int bpf_link_detach(int link_fd)',
    'int bpf_prog_get_fd_by_id(uint32_t id)',
    'int bpf_enable_stats(int type)',

    'int bpf_tc_hook_create(void *hook)',
    'int bpf_tc_hook_destroy(void *hook)',
    'int bpf_tc_attach(const void *hook, void *opts)',
    'int bpf_tc_detach(const void *hook, const void *opts)',
    'int bpf_tc_query(const void *hook, void *opts)',

    'int bpf_prog_test_run_opts(int prog_fd, _Inout_ bpf_test_run_opts *opts)',

    'int libbpf_probe_bpf_prog_type(int prog_type, const void *opts)',
    'int libbpf_probe_bpf_map_type(int map_type, const void *opts)',
    'int libbpf_probe_bpf_helper(int prog_type, int helper_id, const void *opts)',

    'btf *btf__parse(const char *path, void *btf_ext)',
    'void btf__free(btf *btf)',
    'int32_t btf__find_by_name_kind(const btf *btf, const char *type_name, uint32_t kind)',
    'const btf_type *btf__type_by_id(const btf *btf, uint32_t id)',
    'const char *btf__name_by_offset(const btf *btf, uint32_t offset)',
    'int64_t btf__resolve_size(const btf *btf, uint32_t type_id)',
    'uint32_t btf__type_cnt(const btf *btf)',
  ])

  loaded = {bpf, log: installPrintCallback(lib, vsnprintf)}
  return loaded
}

// libbpf reports *why* something failed (e.g. "couldn't reuse pinned map:
// parameter mismatch") only through its print callback, which by default
// writes to stderr. We format each message with vsnprintf (va_list is passed
// as a pointer on LP64 ABIs, so it can travel as void *) and keep the recent
// ones so errors can quote them; SWARMNET_LIBBPF_DEBUG=1 also echoes them.
function installPrintCallback(lib: koffi.IKoffiLib, vsnprintf: Libc['vsnprintf']): LibbpfLog {
  const messages: string[] = []
  const printFn = koffi.proto('int libbpf_print_fn_t(int level, void *fmt, void *ap)')
  const setPrint = lib.func('void *libbpf_set_print(libbpf_print_fn_t *fn)')
  const echo = process.env.SWARMNET_LIBBPF_DEBUG === '1'
  const buf = Buffer.alloc(4096)
  const cb = koffi.register((level: number, fmt: unknown, ap: unknown): number => {
    const n = vsnprintf(buf, buf.length, fmt, ap)
    const text = buf.subarray(0, Math.max(0, Math.min(n, buf.length - 1))).toString('utf8')
    if (echo) process.stderr.write(text)
    // LIBBPF_DEBUG (2) is chatty and never explains a failure.
    if (level < 2) {
      messages.push(text.trimEnd())
      if (messages.length > 200) messages.splice(0, messages.length - 200)
    }
    return 0
  }, koffi.pointer(printFn))
  setPrint(cb)
  return {
    take(): string[] {
      return messages.splice(0, messages.length)
    },
  }
}

/** The libbpf function table; loads libbpf.so.1 on first call. */
export function libbpf(): Libbpf {
  return load().bpf
}

/**
 * bpf_link_create on libuv's thread pool (koffi's async call): the same return value, without
 * holding the event loop while the kernel attaches.
 */
export function linkCreateAsync(progFd: number, targetFd: number, attachType: number, opts: Buffer | null): Promise<number> {
  const fn = load().bpf.bpf_link_create as unknown as koffi.KoffiFunction
  return new Promise((resolve, reject) =>
    fn.async(progFd, targetFd, attachType, opts, (err: unknown, fd: number) => (err ? reject(err as Error) : resolve(fd))),
  )
}

/** bpf_xdp_attach on libuv's thread pool: on a veth it waits for the kernel to set up NAPI. */
export function xdpAttachAsync(ifindex: number, progFd: number, flags: number): Promise<number> {
  const fn = load().bpf.bpf_xdp_attach as unknown as koffi.KoffiFunction
  return new Promise((resolve, reject) =>
    fn.async(ifindex, progFd, flags, null, (err: unknown, rc: number) => (err ? reject(err as Error) : resolve(rc))),
  )
}

/**
 * bpf_link_detach on libuv's thread pool: detaching a tc link waits for an RCU grace period,
 * tens of ms on a loaded host, and a node whose tasks all leave detaches hundreds.
 */
export function linkDetachAsync(linkFd: number): Promise<number> {
  const fn = load().bpf.bpf_link_detach as unknown as koffi.KoffiFunction
  return new Promise((resolve, reject) =>
    fn.async(linkFd, (err: unknown, rc: number) => (err ? reject(err as Error) : resolve(rc))),
  )
}

/** The libbpf calls the drift check makes on libuv's thread pool (bpfCallAsync). */
export type AsyncBpfCall = 'bpf_obj_get' | 'bpf_obj_get_info_by_fd' | 'bpf_map_lookup_batch'

/**
 * One libbpf call on libuv's thread pool, for the drift check's reads (a pin opened, a link's
 * info, a map read back in batches): the same return value as the synchronous call. The
 * arguments (Buffers the kernel writes into) stay referenced by this closure until the call is
 * back, so the collector cannot free them under the native call.
 */
export function bpfCallAsync<K extends AsyncBpfCall>(name: K, ...args: Parameters<Libbpf[K]>): Promise<number> {
  const fn = load().bpf[name] as unknown as koffi.KoffiFunction
  return new Promise((resolve, reject) =>
    fn.async(...args, (err: unknown, rc: number) => {
      void args // held to here: the native call writes into them
      if (err) reject(err as Error)
      else resolve(rc)
    }),
  )
}

export function libbpfLog(): LibbpfLog {
  return load().log
}

/** errno of the last native call on this thread (for NULL-returning libbpf calls). */
export function lastErrno(): number {
  return koffi.errno()
}

/** Native memory that stays put (log buffers libbpf keeps a pointer to). */
export function allocNative(size: number): {ptr: NativePtr; view: Uint8Array; free(): void} {
  const ptr = koffi.alloc('uint8_t', size) as NativePtr
  const view = new Uint8Array(koffi.view(ptr, size))
  view.fill(0)
  return {ptr, view, free: () => koffi.free(ptr)}
}

export function libbpfStrerror(err: number): string {
  const buf = Buffer.alloc(256)
  libbpf().libbpf_strerror(err < 0 ? err : -err, buf, buf.length)
  const end = buf.indexOf(0)
  return buf.subarray(0, end < 0 ? buf.length : end).toString('utf8')
}

/** Copy `len` bytes from native memory (e.g. a struct btf_type *) into a Buffer. */
export function readNative(ptr: NativePtr, len: number): Buffer {
  return Buffer.from(koffi.view(ptr, len).slice(0))
}
