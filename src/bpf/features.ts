// What this kernel and libbpf can do, asked of the kernel itself (libbpf's
// probes load tiny programs/maps) rather than guessed from version numbers:
// distributions backport, and configs disable.

import fs from 'node:fs'
import os from 'node:os'
import {libbpf} from './libbpf.js'
import {isBpffsMounted} from './pins.js'

const PROG = {sched_cls: 3, xdp: 6} as const
const MAP = {hash: 1, percpu_array: 6, lru_hash: 9, hash_of_maps: 13} as const
// enum bpf_func_id; stable ABI numbers.
const HELPERS = [
  {name: 'bpf_redirect_neigh', id: 152, prog: 'sched_cls'},
  {name: 'bpf_skb_adjust_room', id: 50, prog: 'sched_cls'},
  {name: 'bpf_xdp_adjust_head', id: 44, prog: 'xdp'},
  {name: 'bpf_fib_lookup', id: 69, prog: 'xdp'},
  {name: 'bpf_fib_lookup', id: 69, prog: 'sched_cls'},
] as const

/** A probe's answer: true/false, or the error when the probe itself failed (e.g. EPERM). */
export type Probe = boolean | {error: number}

export interface Features {
  kernel: string
  libbpf: string
  progTypes: Record<keyof typeof PROG, Probe>
  mapTypes: Record<keyof typeof MAP, Probe>
  /** Keyed "helper/prog_type", e.g. "bpf_redirect_neigh/sched_cls". */
  helpers: Record<string, Probe>
  kernelBtf: boolean
  bpffsMounted: boolean
}

function probe(rc: number): Probe {
  return rc === 1 ? true : rc === 0 ? false : {error: -rc}
}

export function libbpfVersion(): string {
  const bpf = libbpf()
  return `${bpf.libbpf_major_version()}.${bpf.libbpf_minor_version()}`
}

export function probeFeatures(): Features {
  const bpf = libbpf()
  const progTypes = {} as Record<keyof typeof PROG, Probe>
  for (const [name, type] of Object.entries(PROG) as Array<[keyof typeof PROG, number]>) {
    progTypes[name] = probe(bpf.libbpf_probe_bpf_prog_type(type, null))
  }
  const mapTypes = {} as Record<keyof typeof MAP, Probe>
  for (const [name, type] of Object.entries(MAP) as Array<[keyof typeof MAP, number]>) {
    mapTypes[name] = probe(bpf.libbpf_probe_bpf_map_type(type, null))
  }
  const helpers: Record<string, Probe> = {}
  for (const h of HELPERS) {
    helpers[`${h.name}/${h.prog}`] = probe(bpf.libbpf_probe_bpf_helper(PROG[h.prog], h.id, null))
  }
  return {
    kernel: os.release(),
    libbpf: libbpfVersion(),
    progTypes,
    mapTypes,
    helpers,
    kernelBtf: fs.existsSync('/sys/kernel/btf/vmlinux'),
    bpffsMounted: isBpffsMounted(),
  }
}
