// A compiled BPF ELF object: open (parse, no kernel involvement), load
// (create or reuse maps, verify programs), then hand out programs and maps.
// Pinning is declarative: maps with `pinning = LIBBPF_PIN_BY_NAME` in the C
// source are created under pinRoot, or reused from there when already pinned.

import fs from 'node:fs'
import path from 'node:path'
import {BpfError, E, describeErrno, errnoError, logTail} from './errors.js'
import {type NativePtr, allocNative, lastErrno, libbpf, libbpfLog, SIZEOF} from './libbpf.js'
import {BpfMap, mapTypeName} from './map.js'
import {bpffsHint, isOnBpffs} from './pins.js'

export interface OpenOptions {
  /**
   * Folder for maps declared LIBBPF_PIN_BY_NAME (created on load). Without
   * it nothing is pinned: every map is private to this load.
   */
  pinRoot?: string
}

export interface BpfProgram {
  name: string
  fd: number
  /** enum bpf_prog_type */
  type: number
}

/** Per-program verifier log buffer; the tail is what explains a rejection. */
const LOG_SIZE = 1 << 20

/** A map as the object declares it (known after open, before load). */
export interface MapSpec {
  name: string
  type: number
  keySize: number
  valueSize: number
  maxEntries: number
  flags: number
  pinPath: string | null
}

export class BpfObject {
  #obj: NativePtr | null
  #loaded = false
  readonly #maps = new Map<string, BpfMap>()

  private constructor(
    obj: NativePtr,
    readonly path: string,
    readonly pinRoot: string | undefined,
  ) {
    this.#obj = obj
  }

  static open(objPath: string, opts: OpenOptions = {}): BpfObject {
    if (!fs.existsSync(objPath)) {
      throw new BpfError('NO_OBJECT', `BPF object not found: ${objPath} (build it with \`npm run build:bpf\`)`, {
        errno: E.ENOENT,
      })
    }
    const bpf = libbpf()
    libbpfLog().take()
    const obj = bpf.bpf_object__open_file(objPath, {
      sz: SIZEOF.bpf_object_open_opts,
      object_name: null,
      relaxed_maps: false,
      pin_root_path: opts.pinRoot ?? null,
      kconfig: null,
      btf_custom_path: null,
      kernel_log_buf: null,
      kernel_log_size: 0,
      kernel_log_level: 0,
    })
    if (!obj) {
      const errno = lastErrno()
      const log = libbpfLog().take()
      throw new BpfError(
        'NO_OBJECT',
        `cannot open BPF object ${objPath}: ${describeErrno(errno)}${log.length ? ` (${lastLine(log)})` : ''}`,
        {errno, libbpfLog: log},
      )
    }
    if (opts.pinRoot === undefined) {
      // libbpf's default pin root is /sys/fs/bpf itself: a test or a one-off
      // load would leave pins there and silently share maps with the next.
      for (let m = bpf.bpf_object__next_map(obj, null); m; m = bpf.bpf_object__next_map(obj, m)) {
        if (bpf.bpf_map__pin_path(m)) bpf.bpf_map__set_pin_path(m, null)
      }
    }
    return new BpfObject(obj, objPath, opts.pinRoot)
  }

  get loaded(): boolean {
    return this.#loaded
  }

  /**
   * Create (or reuse pinned) maps and load every program. On failure the
   * object is still open and must be closed by the caller.
   */
  load(): void {
    const obj = this.#handle()
    if (this.#loaded) return
    const bpf = libbpf()
    const decls = this.#mapDecls()
    if (decls.some((d) => d.pinPath)) this.#preparePins(decls)

    // Each program gets its own log buffer, so a rejection names the program
    // and its log is not overwritten by the next program's load.
    const logs: Array<{name: string; buf: ReturnType<typeof allocNative>}> = []
    for (let p = bpf.bpf_object__next_program(obj, null); p; p = bpf.bpf_object__next_program(obj, p)) {
      const buf = allocNative(LOG_SIZE)
      bpf.bpf_program__set_log_buf(p, buf.ptr, LOG_SIZE)
      logs.push({name: bpf.bpf_program__name(p), buf})
    }
    libbpfLog().take()
    try {
      const rc = bpf.bpf_object__load(obj)
      const messages = libbpfLog().take()
      if (rc < 0) {
        const rejected = logs.find((l) => l.buf.view[0] !== 0)
        if (rejected) {
          const log = cString(rejected.buf.view)
          throw new BpfError(
            'VERIFIER',
            `verifier rejected program ${rejected.name} in ${this.path}: ${logTail(log, 3).replace(/\n/g, ' | ')}`,
            {errno: -rc, verifierLog: log, libbpfLog: messages},
          )
        }
        throw this.#loadError(rc, messages)
      }
      this.#loaded = true
    } finally {
      // libbpf keeps the pointer; detach it before the memory goes away.
      for (let p = bpf.bpf_object__next_program(obj, null); p; p = bpf.bpf_object__next_program(obj, p)) {
        bpf.bpf_program__set_log_buf(p, null, 0)
      }
      for (const l of logs) l.buf.free()
    }
  }

  program(name: string): BpfProgram {
    const bpf = libbpf()
    const p = bpf.bpf_object__find_program_by_name(this.#handle(), name)
    if (!p) {
      const names = this.programs().map((x) => x.name)
      throw new BpfError('NO_PROGRAM', `no program ${name} in ${this.path} (programs: ${names.join(', ') || 'none'})`)
    }
    return this.#program(p)
  }

  programs(): BpfProgram[] {
    const bpf = libbpf()
    const obj = this.#handle()
    const out: BpfProgram[] = []
    for (let p = bpf.bpf_object__next_program(obj, null); p; p = bpf.bpf_object__next_program(obj, p)) {
      out.push(this.#program(p))
    }
    return out
  }

  /** A loaded map by its name in the C source. */
  map(name: string): BpfMap {
    const cached = this.#maps.get(name)
    if (cached) return cached
    const bpf = libbpf()
    const m = bpf.bpf_object__find_map_by_name(this.#handle(), name)
    if (!m) {
      const names = this.mapNames()
      throw new BpfError('NO_MAP', `no map ${name} in ${this.path} (maps: ${names.join(', ') || 'none'})`)
    }
    this.#requireLoaded(`map ${name}`)
    const map = new BpfMap(bpf.bpf_map__fd(m), {owned: false, name})
    this.#maps.set(name, map)
    return map
  }

  /** Every map of the object, including internal ones (.bss, .rodata...). */
  maps(): BpfMap[] {
    return this.mapNames().map((n) => this.map(n))
  }

  mapNames(): string[] {
    return this.#mapDecls().map((d) => d.name)
  }

  /** Every map's declared type, sizes and pin path; available before load. */
  mapSpecs(): MapSpec[] {
    return this.#mapDecls()
  }

  /** Where each pinned map lives (after open, before or after load). */
  pinPaths(): Record<string, string> {
    const out: Record<string, string> = {}
    for (const d of this.#mapDecls()) if (d.pinPath) out[d.name] = d.pinPath
    return out
  }

  /** Closes program and map fds. Pins and attachments stay. */
  close(): void {
    if (!this.#obj) return
    for (const m of this.#maps.values()) m.close()
    this.#maps.clear()
    libbpf().bpf_object__close(this.#obj)
    this.#obj = null
  }

  #handle(): NativePtr {
    if (!this.#obj) throw new BpfError('BAD_ARGUMENT', `BPF object ${this.path} is closed`)
    return this.#obj
  }

  #requireLoaded(what: string): void {
    if (!this.#loaded) throw new BpfError('BAD_ARGUMENT', `${what}: ${this.path} is not loaded yet (call load())`)
  }

  #program(p: NativePtr): BpfProgram {
    const bpf = libbpf()
    const name = bpf.bpf_program__name(p)
    this.#requireLoaded(`program ${name}`)
    return {name, fd: bpf.bpf_program__fd(p), type: bpf.bpf_program__type(p)}
  }

  #mapDecls(): MapSpec[] {
    const bpf = libbpf()
    const obj = this.#handle()
    const out: MapSpec[] = []
    for (let m = bpf.bpf_object__next_map(obj, null); m; m = bpf.bpf_object__next_map(obj, m)) {
      out.push({
        name: bpf.bpf_map__name(m),
        type: bpf.bpf_map__type(m),
        keySize: bpf.bpf_map__key_size(m),
        valueSize: bpf.bpf_map__value_size(m),
        maxEntries: bpf.bpf_map__max_entries(m),
        flags: bpf.bpf_map__map_flags(m),
        pinPath: bpf.bpf_map__pin_path(m),
      })
    }
    return out
  }

  // libbpf would fail these cases with a bare EINVAL/ENOENT and a message on
  // its log; checking first lets us say which map, why, and what to do.
  #preparePins(decls: MapSpec[]): void {
    for (const d of decls) {
      if (!d.pinPath) continue
      const dir = path.dirname(d.pinPath)
      if (!isOnBpffs(dir)) throw new BpfError('NO_BPFFS', bpffsHint(dir))
      fs.mkdirSync(dir, {recursive: true})
      if (!fs.existsSync(d.pinPath)) continue
      let pinned: BpfMap
      try {
        pinned = BpfMap.openPinned(d.pinPath)
      } catch (e) {
        if (e instanceof BpfError && e.code === 'NO_MAP') continue
        throw e
      }
      try {
        const diffs: string[] = []
        const cmp = (what: string, have: number | string, want: number | string): void => {
          if (have !== want) diffs.push(`${what} ${have} (pinned) vs ${want} (object)`)
        }
        cmp('type', mapTypeName(pinned.type), mapTypeName(d.type))
        cmp('key size', pinned.keySize, d.keySize)
        cmp('value size', pinned.valueSize, d.valueSize)
        cmp('max entries', pinned.maxEntries, d.maxEntries)
        cmp('flags', pinned.flags, d.flags)
        if (diffs.length) {
          throw new BpfError(
            'PIN_MISMATCH',
            `pinned map ${d.name} at ${d.pinPath} does not match ${this.path}: ${diffs.join(', ')}; ` +
              `a layout change needs a new SN_LAYOUT_VERSION (bpf/include/layout.h), whose maps are pinned apart`,
          )
        }
      } finally {
        pinned.close()
      }
    }
  }

  #loadError(rc: number, messages: string[]): BpfError {
    const errno = -rc
    const hint = messages.length ? ` (libbpf: ${lastLine(messages)})` : ''
    const details = {libbpfLog: messages}
    if (errno === E.EPERM) return errnoError(`load ${this.path}`, rc, details)
    const pinMsg = messages.find((m) => /pinned map/.test(m))
    if (pinMsg) {
      return new BpfError('PIN_MISMATCH', `load ${this.path}: ${pinMsg.replace(/^libbpf:\s*/, '')}`, {
        ...details,
        errno,
      })
    }
    return new BpfError('SYSCALL', `load ${this.path}: ${describeErrno(errno)}${hint}`, {...details, errno})
  }
}

function cString(bytes: Uint8Array): string {
  const end = bytes.indexOf(0)
  return Buffer.from(bytes.buffer, bytes.byteOffset, end < 0 ? bytes.length : end).toString('utf8')
}

function lastLine(messages: string[]): string {
  return (
    (messages[messages.length - 1] ?? '')
      .replace(/^libbpf:\s*/, '')
      .split('\n')
      .pop() ?? ''
  )
}
