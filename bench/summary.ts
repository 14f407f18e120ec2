// What `npm run bench` is asked for and what it hands back in one JSON object: the command line
// (--only, --runs, --json), the median of a set of runs with its spread, and the ratios a check
// reads. Pure functions, so a unit test holds their shape without running a lab.

/** The sections --only names: the lab's, and scale (the control plane at scale, no lab: bench/scale.ts). */
export const SECTIONS = ['overlay', 'vip', 'mesh', 'dns', 'tasks', 'scale'] as const
export type Section = (typeof SECTIONS)[number]

export interface BenchArgs {
  /** The sections to run; every one when --only is not given. */
  only: Set<Section>
  /** Whether --only was given: then the other in-process sections (programs, store...) are skipped. */
  partial: boolean
  /** Runs per path in each lab section (alternating paths within a run). */
  runs: number
  /** Seconds per iperf3 measurement. */
  seconds: number
  json: boolean
  /** The old switch: the in-process sections only, no lab. */
  programsOnly: boolean
}

export const DEFAULT_RUNS = 5

/** Parses the bench's arguments; a bad one throws an Error with a one-line message. */
export function parseBenchArgs(argv: string[]): BenchArgs {
  const out: BenchArgs = {
    only: new Set(SECTIONS),
    partial: false,
    runs: DEFAULT_RUNS,
    seconds: 5,
    json: false,
    programsOnly: false,
  }
  const value = (i: number, flag: string): string => {
    const v = argv[i + 1]
    if (v === undefined || v.startsWith('--')) throw new Error(`${flag} needs a value`)
    return v
  }
  const count = (v: string, flag: string): number => {
    const n = Number(v)
    if (!Number.isInteger(n) || n < 1 || n > 100) throw new Error(`${flag} ${v}: not a whole number from 1 to 100`)
    return n
  }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    if (a === '--json') out.json = true
    else if (a === '--programs-only') out.programsOnly = true
    else if (a === '--runs') out.runs = count(value(i++, a), a)
    else if (a === '--seconds') out.seconds = count(value(i++, a), a)
    else if (a === '--only') {
      const names = value(i++, a)
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '')
      if (names.length === 0) throw new Error('--only needs a section name')
      const bad = names.filter((n) => !(SECTIONS as readonly string[]).includes(n))
      if (bad.length > 0) throw new Error(`--only ${bad.join(',')}: unknown section (sections: ${SECTIONS.join(', ')})`)
      out.only = new Set(names as Section[])
      out.partial = true
    } else throw new Error(`unknown argument ${a} (known: --only ${SECTIONS.join(',')}, --runs N, --seconds S, --json)`)
  }
  if (out.programsOnly && out.partial) throw new Error('--programs-only and --only exclude each other')
  return out
}

export interface Spread {
  median: number
  min: number
  max: number
  /** Runs that gave a number (failed runs are NaN and left out). */
  n: number
}

/** Median, min and max of the runs that gave a number; NaN for all when none did. */
export function spread(xs: number[]): Spread {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (s.length === 0) return {median: NaN, min: NaN, max: NaN, n: 0}
  const m = s.length >> 1
  return {median: s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2, min: s[0]!, max: s[s.length - 1]!, n: s.length}
}

/** "1.23 (1.01-1.40, n=5)": the median and its spread, in one formatter's units. */
export function fmtSpread(s: Spread, f: (x: number) => string): string {
  if (s.n === 0) return 'no run succeeded'
  return `${f(s.median)} (${f(s.min)}-${f(s.max)}, n=${s.n})`
}

/** The runs of each path of each section, as the sections measured them (absent: not run). */
export interface BenchRuns {
  overlay?: {udp: {swarmnet: number[]; bare: number[]}; tcp: {swarmnet: number[]; bare: number[]}}
  vip?: {udp: {vip: number[]; direct: number[]}; tcp: {vip: number[]; direct: number[]}}
  mesh?: {udp: {swarmnet: number[]; kernel: number[]}; tcp: {swarmnet: number[]; kernel: number[]}}
  /**
   * dnsmasqForResponder: dnsmasq asked what the responder was asked, when that differs from the
   * fast path's question (kxdpgun's long name); client: who asked (the printout names it).
   */
  dns?: {fast: number[]; responder: number[]; dnsmasq: number[]; dnsmasqForResponder?: number[]; client?: string}
}

export const RATIO_KEYS = [
  'overlayUdpVsBare',
  'overlayTcpVsBare',
  'vipUdpVsDirect',
  'vipTcpVsDirect',
  'meshUdpVsNft',
  'meshTcpVsNft',
  'dnsFastVsDnsmasq',
  'dnsResponderVsDnsmasq',
] as const
export type RatioKey = (typeof RATIO_KEYS)[number]

/** Each ratio: median of the one path over median of the other, or null (section not run, or no number). */
export type BenchRatios = Record<RatioKey, number | null>

/** The JSON object the bench ends with: every key present, a number or null. */
export function benchRatios(r: BenchRuns): BenchRatios {
  const ratio = (a: number[] | undefined, b: number[] | undefined): number | null => {
    if (!a || !b) return null
    const q = spread(a).median / spread(b).median
    // Rounded: a check compares them with goals; more digits than the noise would only mislead.
    return Number.isFinite(q) ? Math.round(q * 1000) / 1000 : null
  }
  return {
    overlayUdpVsBare: ratio(r.overlay?.udp.swarmnet, r.overlay?.udp.bare),
    overlayTcpVsBare: ratio(r.overlay?.tcp.swarmnet, r.overlay?.tcp.bare),
    vipUdpVsDirect: ratio(r.vip?.udp.vip, r.vip?.udp.direct),
    vipTcpVsDirect: ratio(r.vip?.tcp.vip, r.vip?.tcp.direct),
    meshUdpVsNft: ratio(r.mesh?.udp.swarmnet, r.mesh?.udp.kernel),
    meshTcpVsNft: ratio(r.mesh?.tcp.swarmnet, r.mesh?.tcp.kernel),
    dnsFastVsDnsmasq: ratio(r.dns?.fast, r.dns?.dnsmasq),
    dnsResponderVsDnsmasq: ratio(r.dns?.responder, r.dns?.dnsmasqForResponder ?? r.dns?.dnsmasq),
  }
}
