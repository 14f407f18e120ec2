// Prometheus text exposition (version 0.0.4), read back: what `swarmnet top` shows and what the
// tests check the endpoint against. Only what the format allows; a line that is not is an error.

export interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

export interface Exposition {
  /** name -> counter, gauge, histogram, summary, untyped */
  types: Map<string, string>
  help: Map<string, string>
  samples: Sample[]
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*'
const SAMPLE = new RegExp(`^(${NAME})(?:\\{(.*)\\})?\\s+(\\S+)(?:\\s+-?\\d+)?$`)
const LABEL = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)/y

export function parseExposition(text: string): Exposition {
  const out: Exposition = {types: new Map(), help: new Map(), samples: []}
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim()
    if (line === '') continue
    if (line.startsWith('#')) {
      const m = new RegExp(`^#\\s+(TYPE|HELP)\\s+(${NAME})\\s*(.*)$`).exec(line)
      if (m?.[1] === 'TYPE') out.types.set(m[2]!, m[3]!)
      else if (m?.[1] === 'HELP') out.help.set(m[2]!, m[3]!)
      continue
    }
    const m = SAMPLE.exec(line)
    if (!m) throw new Error(`line ${i + 1} is not a sample: ${line}`)
    const labels: Record<string, string> = {}
    if (m[2]) {
      LABEL.lastIndex = 0
      while (LABEL.lastIndex < m[2].length) {
        const at = LABEL.lastIndex
        const l = LABEL.exec(m[2])
        if (!l || LABEL.lastIndex === at) throw new Error(`line ${i + 1}: malformed labels: ${m[2]}`)
        labels[l[1]!] = l[2]!.replace(/\\n/g, '\n').replace(/\\(["\\])/g, '$1')
      }
    }
    const v = m[3]!
    const value = v === '+Inf' ? Infinity : v === '-Inf' ? -Infinity : v === 'NaN' ? NaN : Number(v)
    if (Number.isNaN(value) && v !== 'NaN') throw new Error(`line ${i + 1}: '${v}' is not a number`)
    out.samples.push({name: m[1]!, labels, value})
  }
  return out
}

/** The sum of a metric's samples whose labels include `match`. */
export function sumOf(e: Exposition, name: string, match: Record<string, string> = {}): number {
  return e.samples
    .filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v))
    .reduce((a, s) => a + s.value, 0)
}
