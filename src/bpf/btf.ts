// Reading type information (BTF) from a compiled object: the compiler's
// own account of struct layouts, which the codec layout test holds the
// TypeScript codecs to.

import fs from 'node:fs'
import {BpfError, describeErrno} from './errors.js'
import {type NativePtr, lastErrno, libbpf, readNative} from './libbpf.js'

/** BTF_KIND_* from linux/btf.h. */
export const BtfKind = {
  INT: 1,
  PTR: 2,
  ARRAY: 3,
  STRUCT: 4,
  UNION: 5,
  ENUM: 6,
  FWD: 7,
  TYPEDEF: 8,
  VOLATILE: 9,
  CONST: 10,
  RESTRICT: 11,
  FUNC: 12,
  FUNC_PROTO: 13,
  VAR: 14,
  DATASEC: 15,
  FLOAT: 16,
  DECL_TAG: 17,
  TYPE_TAG: 18,
  ENUM64: 19,
} as const

const BTF_TYPE_SIZE = 12 // struct btf_type: name_off, info, size/type

export interface MemberLayout {
  name: string
  /** Byte offset in the struct. */
  offset: number
  /** Byte size, after resolving typedefs, modifiers, arrays and enums. */
  size: number
  /** Only for bitfields. */
  bitOffset?: number
  bitSize?: number
}

export interface StructLayout {
  name: string
  size: number
  members: MemberLayout[]
}

interface RawType {
  name: string
  kind: number
  vlen: number
  kindFlag: boolean
  /** size for STRUCT/UNION/ENUM/INT, referenced type id for the others. */
  sizeOrType: number
  ptr: NativePtr
}

/** The BTF of one ELF file; free it with close(). */
export class Btf {
  #btf: NativePtr | null

  private constructor(
    btf: NativePtr,
    readonly path: string,
  ) {
    this.#btf = btf
  }

  static parse(objPath: string): Btf {
    if (!fs.existsSync(objPath)) throw new BpfError('NO_OBJECT', `BPF object not found: ${objPath}`)
    const btf = libbpf().btf__parse(objPath, null)
    if (!btf) {
      const errno = lastErrno()
      throw new BpfError('NO_OBJECT', `no BTF in ${objPath} (${describeErrno(errno)}): compile it with \`clang -g\``, {errno})
    }
    return new Btf(btf, objPath)
  }

  close(): void {
    if (this.#btf) libbpf().btf__free(this.#btf)
    this.#btf = null
  }

  /** Type id of a named type of one of `kinds`, or undefined. */
  findId(name: string, ...kinds: number[]): number | undefined {
    for (const kind of kinds) {
      const id = libbpf().btf__find_by_name_kind(this.#handle(), name, kind)
      if (id > 0) return id
    }
    return undefined
  }

  structLayout(name: string): StructLayout {
    let id = this.findId(name, BtfKind.STRUCT, BtfKind.UNION, BtfKind.TYPEDEF)
    if (id === undefined) throw new BpfError('BAD_ARGUMENT', `no struct ${name} in the BTF of ${this.path}`)
    id = this.#skipTypedefs(id)
    const t = this.#type(id)
    if (t.kind !== BtfKind.STRUCT && t.kind !== BtfKind.UNION) {
      throw new BpfError('BAD_ARGUMENT', `${name} in ${this.path} is not a struct or union`)
    }
    const raw = readNative(t.ptr, BTF_TYPE_SIZE + t.vlen * 12)
    const members: MemberLayout[] = []
    for (let i = 0; i < t.vlen; i++) {
      const at = BTF_TYPE_SIZE + i * 12
      const memberName = this.#name(raw.readUInt32LE(at))
      const type = raw.readUInt32LE(at + 4)
      const off = raw.readUInt32LE(at + 8)
      // With kind_flag set, `offset` packs a bitfield size into its top byte.
      const bitOffset = t.kindFlag ? off & 0xffffff : off
      const bitSize = t.kindFlag ? off >>> 24 : 0
      if (bitSize) {
        members.push({name: memberName, offset: Math.floor(bitOffset / 8), size: Math.ceil(bitSize / 8), bitOffset, bitSize})
      } else {
        members.push({name: memberName, offset: bitOffset / 8, size: this.sizeOf(type)})
      }
    }
    return {name, size: t.sizeOrType, members}
  }

  enumValues(name: string): Map<string, number> {
    let id = this.findId(name, BtfKind.ENUM, BtfKind.ENUM64, BtfKind.TYPEDEF)
    if (id === undefined) throw new BpfError('BAD_ARGUMENT', `no enum ${name} in the BTF of ${this.path}`)
    id = this.#skipTypedefs(id)
    const t = this.#type(id)
    const out = new Map<string, number>()
    if (t.kind === BtfKind.ENUM) {
      const raw = readNative(t.ptr, BTF_TYPE_SIZE + t.vlen * 8)
      for (let i = 0; i < t.vlen; i++) {
        const at = BTF_TYPE_SIZE + i * 8
        // kind_flag marks a signed enum.
        const v = t.kindFlag ? raw.readInt32LE(at + 4) : raw.readUInt32LE(at + 4)
        out.set(this.#name(raw.readUInt32LE(at)), v)
      }
    } else if (t.kind === BtfKind.ENUM64) {
      const raw = readNative(t.ptr, BTF_TYPE_SIZE + t.vlen * 12)
      for (let i = 0; i < t.vlen; i++) {
        const at = BTF_TYPE_SIZE + i * 12
        const big = (BigInt(raw.readUInt32LE(at + 8)) << 32n) | BigInt(raw.readUInt32LE(at + 4))
        out.set(this.#name(raw.readUInt32LE(at)), Number(t.kindFlag ? BigInt.asIntN(64, big) : big))
      }
    } else {
      throw new BpfError('BAD_ARGUMENT', `${name} in ${this.path} is not an enum`)
    }
    return out
  }

  /** Byte size of any type id (typedefs, modifiers and arrays resolved). */
  sizeOf(id: number): number {
    const n = Number(libbpf().btf__resolve_size(this.#handle(), id))
    if (n < 0) throw new BpfError('BAD_ARGUMENT', `cannot size BTF type ${id} in ${this.path}`)
    return n
  }

  #handle(): NativePtr {
    if (!this.#btf) throw new BpfError('BAD_ARGUMENT', `BTF of ${this.path} is closed`)
    return this.#btf
  }

  #name(off: number): string {
    return libbpf().btf__name_by_offset(this.#handle(), off) ?? ''
  }

  #type(id: number): RawType {
    const ptr = libbpf().btf__type_by_id(this.#handle(), id)
    if (!ptr) throw new BpfError('BAD_ARGUMENT', `no BTF type ${id} in ${this.path}`)
    const raw = readNative(ptr, BTF_TYPE_SIZE)
    const info = raw.readUInt32LE(4)
    return {
      name: this.#name(raw.readUInt32LE(0)),
      kind: (info >>> 24) & 0x1f,
      vlen: info & 0xffff,
      kindFlag: info >>> 31 === 1,
      sizeOrType: raw.readUInt32LE(8),
      ptr,
    }
  }

  #skipTypedefs(id: number): number {
    let t = this.#type(id)
    const mods = new Set<number>([BtfKind.TYPEDEF, BtfKind.CONST, BtfKind.VOLATILE, BtfKind.RESTRICT, BtfKind.TYPE_TAG])
    while (mods.has(t.kind)) {
      id = t.sizeOrType
      t = this.#type(id)
    }
    return id
  }
}

function withBtf<T>(objPath: string, fn: (btf: Btf) => T): T {
  const btf = Btf.parse(objPath)
  try {
    return fn(btf)
  } finally {
    btf.close()
  }
}

/** Layout of `struct name` as compiled into objPath. */
export function structLayout(objPath: string, name: string): StructLayout {
  return withBtf(objPath, (b) => b.structLayout(name))
}

/** Values of `enum name` as compiled into objPath. */
export function enumValues(objPath: string, name: string): Map<string, number> {
  return withBtf(objPath, (b) => b.enumValues(name))
}
