// The sections of a BPF object file (ELF64, little-endian: what clang -target bpf
// writes on x86 and arm64), by name. Enough ELF to read our own objects without
// libbpf: their instructions (kernel-floor.ts) and their bytes (the rebuild check).
import {readFileSync} from 'node:fs'

export interface ElfSection {
  name: string
  /** SHF_EXECINSTR: a program's instructions. */
  exec: boolean
  data: Buffer
}

const SHT_NOBITS = 8
const SHF_EXECINSTR = 4

export function elfSections(file: string): ElfSection[] {
  const b = readFileSync(file)
  if (b.length < 0x40 || b.readUInt32BE(0) !== 0x7f454c46) throw new Error(`${file}: not an ELF object`)
  if (b[4] !== 2 || b[5] !== 1) throw new Error(`${file}: not ELF64 little-endian`)
  const shoff = Number(b.readBigUInt64LE(0x28))
  const shentsize = b.readUInt16LE(0x3a)
  const shnum = b.readUInt16LE(0x3c)
  const shstrndx = b.readUInt16LE(0x3e)
  const header = (i: number) => {
    const at = shoff + i * shentsize
    return {
      name: b.readUInt32LE(at),
      type: b.readUInt32LE(at + 4),
      flags: Number(b.readBigUInt64LE(at + 8)),
      offset: Number(b.readBigUInt64LE(at + 0x18)),
      size: Number(b.readBigUInt64LE(at + 0x20)),
    }
  }
  const strtab = header(shstrndx)
  const out: ElfSection[] = []
  for (let i = 1; i < shnum; i++) {
    const h = header(i)
    const name = b.subarray(strtab.offset + h.name, b.indexOf(0, strtab.offset + h.name)).toString('utf8')
    const data = h.type === SHT_NOBITS ? Buffer.alloc(0) : b.subarray(h.offset, h.offset + h.size)
    out.push({name, exec: (h.flags & SHF_EXECINSTR) !== 0, data})
  }
  return out
}
