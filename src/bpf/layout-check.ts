// Holds the TypeScript codecs to the C structs: the compiler's BTF is the
// truth about sizes and offsets, and any disagreement is a bug that would
// silently corrupt map entries.

import {BpfError} from './errors.js'
import {Btf} from './btf.js'
import {type MapCodecShape, type StructCodec, mapCodecs} from './codecs.js'
import {BpfObject} from './object.js'

/** Differences between a struct codec and the struct in objPath's BTF; empty when they agree. */
export function checkStructLayout(codec: StructCodec<unknown>, btf: Btf): string[] {
  const s = codec.structName
  let layout
  try {
    layout = btf.structLayout(s)
  } catch (e) {
    if (e instanceof BpfError) return [`struct ${s}: not in the BTF of ${btf.path}`]
    throw e
  }
  const out: string[] = []
  if (layout.size !== codec.size) out.push(`struct ${s}: size is ${layout.size} in C, ${codec.size} in the codec`)
  const cMembers = new Map(layout.members.map((m) => [m.name, m]))
  const tsFields = new Map(codec.fields.map((f) => [f.name, f]))
  for (const m of layout.members) {
    const f = tsFields.get(m.name)
    if (!f) {
      out.push(`struct ${s}: member ${m.name} (offset ${m.offset}, size ${m.size}) is missing from the codec`)
      continue
    }
    if (m.bitSize) out.push(`struct ${s}.${m.name}: is a bitfield, which codecs do not support`)
    if (f.offset !== m.offset) out.push(`struct ${s}.${m.name}: offset is ${m.offset} in C, ${f.offset} in the codec`)
    if (f.size !== m.size) out.push(`struct ${s}.${m.name}: size is ${m.size} in C, ${f.size} in the codec`)
  }
  for (const f of codec.fields) {
    if (!cMembers.has(f.name)) out.push(`struct ${s}: codec field ${f.name} does not exist in C`)
  }
  return out
}

/**
 * Check every codec of `codecs` against objPath: struct layouts from BTF,
 * and key/value sizes of each registered map the object declares.
 */
export function checkCodecs(
  objPath: string,
  opts: {structs: ReadonlyArray<StructCodec<unknown>>; maps?: Record<string, MapCodecShape>},
): string[] {
  const out: string[] = []
  const btf = Btf.parse(objPath)
  try {
    for (const c of opts.structs) out.push(...checkStructLayout(c, btf))
  } finally {
    btf.close()
  }
  const maps: Record<string, MapCodecShape | undefined> = opts.maps ?? mapCodecs
  const obj = BpfObject.open(objPath)
  try {
    for (const spec of obj.mapSpecs()) {
      const mc = maps[spec.name]
      if (!mc) continue
      if (spec.keySize !== mc.key.size)
        out.push(`map ${spec.name}: key is ${spec.keySize} bytes in C, ${mc.key.size} (${mc.key.cType}) in the codec`)
      if (spec.valueSize !== mc.value.size)
        out.push(`map ${spec.name}: value is ${spec.valueSize} bytes in C, ${mc.value.size} (${mc.value.cType}) in the codec`)
    }
  } finally {
    obj.close()
  }
  return out
}
