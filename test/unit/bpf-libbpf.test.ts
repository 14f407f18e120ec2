import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {after, describe, it} from 'node:test'
import koffi from 'koffi'
import {SIZEOF, libbpf, libbpfStrerror} from '../../src/bpf/libbpf.js'
import {clang, fixture, makeTmp} from '../fixtures/bpf/build.js'

// src/bpf lays out libbpf's option structs by hand (koffi structs or fixed
// offsets); the installed headers are the truth.
describe('libbpf binding', () => {
  const tmp = makeTmp('sn-bpf-sizes')
  after(() => fs.rmSync(tmp, {recursive: true, force: true}))

  it('struct layouts match /usr/include/bpf', () => {
    const exe = path.join(tmp, 'sizes')
    execFileSync(clang(), ['-o', exe, fixture('sizes.c')])
    const c = JSON.parse(execFileSync(exe, {encoding: 'utf8'})) as Record<string, number>
    for (const [name, size] of Object.entries(SIZEOF)) assert.equal(size, c[name], `sizeof(struct ${name})`)

    libbpf() // registers the koffi struct types
    for (const t of ['bpf_object_open_opts', 'bpf_test_run_opts']) {
      assert.equal(koffi.sizeof(t), c[t], `koffi sizeof ${t}`)
      for (const [key, off] of Object.entries(c)) {
        const [struct, field] = key.split('.')
        if (struct === t && field) assert.equal(koffi.offsetof(t, field), off, key)
      }
    }
    // The offsets attach.ts and map.ts write by hand.
    assert.deepEqual(
      [
        c['bpf_tc_hook.ifindex'],
        c['bpf_tc_hook.attach_point'],
        c['bpf_tc_opts.prog_fd'],
        c['bpf_tc_opts.flags'],
        c['bpf_tc_opts.prog_id'],
        c['bpf_tc_opts.handle'],
        c['bpf_tc_opts.priority'],
      ],
      [8, 12, 8, 12, 16, 20, 24],
    )
    assert.deepEqual(
      [
        c['bpf_xdp_query_opts.prog_id'],
        c['bpf_xdp_query_opts.drv_prog_id'],
        c['bpf_xdp_query_opts.skb_prog_id'],
        c['bpf_xdp_query_opts.attach_mode'],
      ],
      [8, 12, 20, 24],
    )
    assert.deepEqual(
      [c['bpf_map_info.key_size'], c['bpf_map_info.max_entries'], c['bpf_map_info.map_flags'], c['bpf_map_info.name']],
      [8, 16, 20, 24],
    )
    // The offsets links.ts reads and writes by hand.
    assert.deepEqual(
      [
        c['bpf_link_create_opts.flags'],
        c['bpf_link_info.prog_id'],
        c['bpf_link_info.xdp.ifindex'],
        c['bpf_prog_info.id'],
        c['bpf_prog_info.name'],
      ],
      [8, 8, 16, 4, 64],
    )
  })

  it('reports its version and error strings', () => {
    assert.equal(libbpf().libbpf_major_version(), 1)
    assert.match(libbpfStrerror(-2), /No such file/)
  })
})
