// BPF_PROG_TEST_RUN: run a loaded program on a crafted packet, in the
// kernel, without any device. The BPF tests (test/bpf/) are built on this.

import {BpfError, E, describeErrno, errnoError} from './errors.js'
import {type NativePtr, SIZEOF, allocNative, libbpf} from './libbpf.js'

export interface TestRunOptions {
  /** The packet, from the Ethernet header on. */
  data: Buffer
  /** Run this many times (the kernel reports the mean duration). */
  repeat?: number
  /**
   * Context passed to the program: for XDP a struct xdp_md, for tc a prefix
   * of struct __sk_buff (e.g. with ifindex set). Omit for the kernel default.
   */
  ctx?: Buffer
  /** Room for the output packet (programs may grow it); default input + 4 KiB. */
  dataOutSize?: number
  /**
   * XDP only (BPF_F_TEST_XDP_LIVE_FRAMES): every run gets a fresh copy of the
   * packet and its verdict is carried out for real (a redirect is transmitted).
   * No output packet or context comes back.
   */
  liveFrames?: boolean
}

export interface TestRunResult {
  /** The program's return value (XDP_PASS, TC_ACT_OK, ...). */
  retval: number
  /** The packet as the program left it. */
  data: Buffer
  /** The context as the program left it, when one was passed in. */
  ctx?: Buffer
  /** Mean time per run, in ns, as measured by the kernel. */
  durationNs: number
}

/** Larger than any program context struct (struct __sk_buff is ~200 bytes). */
const CTX_OUT_SIZE = 1024
const BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1

export function testRun(progFd: number, opts: TestRunOptions): TestRunResult {
  if (opts.data.length === 0) throw new BpfError('BAD_ARGUMENT', 'testRun: data must not be empty')
  // libbpf passes these pointers straight to the kernel; native memory keeps
  // them valid regardless of what the JS heap does meanwhile.
  const live = opts.liveFrames ?? false
  const outSize = live ? 0 : (opts.dataOutSize ?? opts.data.length + 4096)
  const dataIn = allocNative(opts.data.length)
  const dataOut = allocNative(Math.max(outSize, 1))
  const ctxIn = opts.ctx ? allocNative(opts.ctx.length) : undefined
  // The kernel fails with ENOSPC unless ctx_out fits its whole context
  // struct (e.g. all of __sk_buff), however short the ctx passed in.
  const ctxOutSize = opts.ctx && !live ? Math.max(opts.ctx.length, CTX_OUT_SIZE) : 0
  const ctxOut = opts.ctx && !live ? allocNative(ctxOutSize) : undefined
  try {
    dataIn.view.set(opts.data)
    if (opts.ctx && ctxIn) ctxIn.view.set(opts.ctx)
    const run = {
      sz: SIZEOF.bpf_test_run_opts,
      data_in: dataIn.ptr,
      data_out: live ? null : dataOut.ptr,
      data_size_in: opts.data.length,
      data_size_out: outSize,
      ctx_in: ctxIn?.ptr ?? null,
      ctx_out: ctxOut?.ptr ?? null,
      ctx_size_in: opts.ctx?.length ?? 0,
      ctx_size_out: ctxOutSize,
      retval: 0,
      repeat: opts.repeat ?? 1,
      duration: 0,
      flags: live ? BPF_F_TEST_XDP_LIVE_FRAMES : 0,
      cpu: 0,
      batch_size: 0,
    } satisfies Record<string, NativePtr | number | null>
    const rc = libbpf().bpf_prog_test_run_opts(progFd, run)
    if (rc < 0) {
      if (-rc === E.ENOSPC) {
        throw new BpfError('BAD_ARGUMENT', `testRun: output packet larger than dataOutSize (${outSize})`, {errno: -rc})
      }
      if (-rc === E.EINVAL) {
        throw new BpfError(
          'BAD_ARGUMENT',
          `testRun: ${describeErrno(-rc)}: packet too short or too long for this program type, or ctx fields the kernel does not accept`,
          {errno: -rc},
        )
      }
      throw errnoError('test run', rc)
    }
    return {
      retval: run.retval,
      data: Buffer.from(dataOut.view.subarray(0, Math.min(run.data_size_out, outSize))),
      ctx: ctxOut ? Buffer.from(ctxOut.view.subarray(0, Math.min(run.ctx_size_out, ctxOutSize))) : undefined,
      durationNs: run.duration,
    }
  } finally {
    dataIn.free()
    dataOut.free()
    ctxIn?.free()
    ctxOut?.free()
  }
}
