// How commands speak to a person or a script: a plain table, JSON, colour
// only where a person reads it.
import chalk from 'chalk'

/** Colour is off with NO_COLOR (any value) or when stdout is not a terminal. */
export function colourOn(): boolean {
  return !('NO_COLOR' in process.env) && Boolean(process.stdout.isTTY)
}

export function paint(): typeof chalk {
  chalk.level = colourOn() ? chalk.level || 1 : 0
  return chalk
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n')
}

/** A table in docker's style: upper-case headers, columns padded with spaces. */
export function renderTable(headers: string[], rows: (string | number | undefined)[][]): string {
  const cells = rows.map((r) => r.map((c) => (c === undefined ? '' : String(c))))
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? '').length)))
  const line = (r: string[]) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('   ')
      .trimEnd()
  const c = paint()
  return [c.bold(line(headers.map((h) => h.toUpperCase()))), ...cells.map(line)].join('\n') + '\n'
}

export function printTable(headers: string[], rows: (string | number | undefined)[][]): void {
  process.stdout.write(renderTable(headers, rows))
}
