// The kernel floor that README states is the one the prebuilt objects need: every
// helper, map type, hook and verifier feature found in bpf/dist is in the table of
// releases (src/bpf/kernel-floor.ts), and the latest of them is README's number.
import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {readFileSync, readdirSync, rmSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {after, describe, test} from 'node:test'
import {BpfObject} from '../../src/bpf/object.js'
import {floorOf, formatVersion, loadWithFloor, objectFloor, olderThanFloor, type ObjectFloor} from '../../src/bpf/kernel-floor.js'
import {clang, makeTmp, REPO} from '../fixtures/bpf/build.js'

const DIST = join(REPO, 'bpf', 'dist')
const floors = (): ObjectFloor[] =>
  readdirSync(DIST)
    .filter((f) => f.endsWith('.o'))
    .sort()
    .map((f) => objectFloor(join(DIST, f), f.replace(/\.o$/, '')))

const tmp = makeTmp('sn-kernel-floor')
after(() => rmSync(tmp, {recursive: true, force: true}))

/** A small XDP program compiled for the test: what the scan must find in it. */
function compile(name: string, body: string): string {
  const src = join(tmp, `${name}.c`)
  writeFileSync(
    src,
    `#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
${body}
char _license[] SEC("license") = "GPL";
`,
  )
  const out = join(tmp, `${name}.o`)
  execFileSync(clang(), [
    '-O2',
    '-g',
    '-target',
    'bpf',
    `-I/usr/include/${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu`,
    '-c',
    src,
    '-o',
    out,
  ])
  return out
}

describe('the kernel floor', () => {
  test('every object is read in full, and README states the floor they set', () => {
    const all = floors()
    for (const f of all) console.log(`${f.object}: Linux ${formatVersion(f.floor)} (${f.because.map((n) => n.what).join(', ')})`)
    const floor = formatVersion(floorOf(all))
    const readme = readFileSync(join(REPO, 'README.md'), 'utf8')
    const stated = /Linux (\d+\.\d+) or newer/.exec(readme)?.[1]
    assert.equal(stated, floor, `README says Linux ${stated} or newer; the objects need ${floor}`)
  })

  test('the scan finds helpers by program type, loops, global data, hooks and map types', () => {
    const o = compile(
      'scan',
      `struct { __uint(type, BPF_MAP_TYPE_LRU_HASH); __uint(max_entries, 4); __type(key, __u32); __type(value, __u32); } m SEC(".maps");
volatile const __u32 limit = 3;
SEC("xdp") int prog(struct xdp_md *ctx) {
  __u32 sum = 0;
  for (__u32 i = 0; i < limit; i++) sum += bpf_xdp_get_buff_len(ctx);
  __u32 k = 0; bpf_map_update_elem(&m, &k, &sum, 0);
  return sum > 1 ? XDP_PASS : XDP_DROP;
}`,
    )
    const f = objectFloor(o, 'scan')
    const what = f.needs.map((n) => n.what).sort()
    for (const w of [
      'attach xdp',
      'helper bpf_xdp_get_buff_len',
      'helper bpf_map_update_elem',
      'bounded loops',
      'global data (.rodata/.data/.bss)',
      'map lru_hash',
    ])
      assert.ok(what.includes(w), `missing ${w} in ${what.join(', ')}`)
    assert.deepEqual(f.floor, [5, 18])
    assert.deepEqual(
      f.because.map((n) => n.what),
      ['helper bpf_xdp_get_buff_len'],
    )
  })

  test('a helper the table does not know is an error, not a lower floor', () => {
    const o = compile(
      'unknown',
      `SEC("xdp") int prog(struct xdp_md *ctx) { return bpf_get_current_pid_tgid() ? XDP_PASS : XDP_DROP; }`,
    )
    assert.throws(() => objectFloor(o, 'unknown'), /unknown: the kernel-floor tables do not know helper #14/)
  })

  test('a kernel older than an object is named in one line; a newer or backported one is left to load', () => {
    const underlay = floors().find((f) => f.object === 'xdp_underlay')!
    assert.equal(
      olderThanFloor(underlay, '5.15.0-91-generic'),
      `xdp_underlay cannot load on Linux 5.15.0-91-generic: it needs helper bpf_xdp_get_buff_len (Linux 5.18 or newer)`,
    )
    assert.equal(olderThanFloor(underlay, '6.1.0-18-amd64'), undefined)
    assert.equal(olderThanFloor(underlay, 'weird'), undefined)
  })

  test('a load the kernel refuses is explained by the floor when the kernel is older', () => {
    // the kernel here is new enough, so the refusal is made real with a program the verifier rejects,
    // and the release is given as an older one: the message is the floor's, the verifier's log the cause
    const o = compile(
      'rejected',
      `SEC("xdp") int prog(struct xdp_md *ctx) { return *(volatile int *)0 + bpf_xdp_get_buff_len(ctx); }`,
    )
    const obj = BpfObject.open(o)
    try {
      assert.throws(
        () => loadWithFloor(obj, 'rejected', '5.10.0'),
        /^BpfError: rejected cannot load on Linux 5\.10\.0: it needs helper bpf_xdp_get_buff_len \(Linux 5\.18 or newer\)$/,
      )
    } finally {
      obj.close()
    }
    const again = BpfObject.open(o)
    try {
      assert.throws(
        () => loadWithFloor(again, 'rejected', '6.1.0'),
        (e: Error) => !/cannot load on Linux/.test(e.message),
      )
    } finally {
      again.close()
    }
  })
})
