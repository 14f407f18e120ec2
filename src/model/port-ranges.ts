// Port ranges as Docker's -p takes them (docker/go-connections nat.ParsePortSpec and the CLI's
// ConvertPortToPortConfig): `8000-8010:80-90` pairs the ports one to one, `8000-8010:80`
// publishes each of 8000..8010 to target 80, `80-90` publishes each target on an allocated port;
// ranges of different sizes (or one published port for a target range) are refused. Pure.

/** The most ports one range may stand for: a mistyped range must not publish half the port space. */
export const MAX_RANGE_PORTS = 1024

/** start..end inclusive; a single port is a range of one. */
export type PortRange = {start: number; end: number}

const size = (r: PortRange) => r.end - r.start + 1
const show = (r: PortRange) => (r.start === r.end ? `${r.start}` : `${r.start}-${r.end}`)

/**
 * One port or a range START-END, each only digits, 1-65535, START <= END. `port` checks one
 * number (the caller's, so its refusals read the same for ports and ranges).
 */
export function parsePortRange(
  name: string,
  text: string,
  port: (name: string, text: string) => number,
  fail: (why: string) => never,
): PortRange {
  // Only digits then a dash make a range: '-80' stays a bad port number, as before ranges existed.
  const dash = /^[0-9]+-/.test(text) ? text.indexOf('-') : -1
  if (dash < 0) {
    const p = port(name, text)
    return {start: p, end: p}
  }
  const start = port(`${name} range start`, text.slice(0, dash))
  const end = port(`${name} range end`, text.slice(dash + 1))
  if (end < start) fail(`${name} range '${text}' ends before it starts`)
  const r = {start, end}
  if (size(r) > MAX_RANGE_PORTS) fail(`${name} range '${text}' has ${size(r)} ports: at most ${MAX_RANGE_PORTS} in one range`)
  return r
}

/** The (published, target) pairs a published range (absent: allocate) and a target range stand for, in order. */
export function expandPortRanges(
  published: PortRange | undefined,
  target: PortRange,
  fail: (why: string) => never,
): {published?: number; target: number}[] {
  const out: {published?: number; target: number}[] = []
  if (published === undefined) {
    for (let t = target.start; t <= target.end; t++) out.push({target: t})
    return out
  }
  if (size(target) === 1) {
    // Docker: a published range with one target publishes every port of the range to it.
    for (let p = published.start; p <= published.end; p++) out.push({published: p, target: target.start})
    return out
  }
  if (size(published) !== size(target))
    fail(
      `published ${show(published)} (${size(published)} port${size(published) > 1 ? 's' : ''}) and target ${show(target)} ` +
        `(${size(target)} ports) differ in size: give ranges of one size, or a single target port`,
    )
  for (let i = 0; i < size(target); i++) out.push({published: published.start + i, target: target.start + i})
  return out
}
