/** How long ago, for a human: "now", "850ms ago", "12s ago", "3m ago"; "-" for never. */
export function ago(ms: number | undefined): string {
  if (ms === undefined) return '-'
  if (ms < 100) return 'now'
  if (ms < 1000) return `${ms}ms ago`
  if (ms < 120_000) return `${Math.floor(ms / 1000)}s ago`
  if (ms < 7_200_000) return `${Math.floor(ms / 60_000)}m ago`
  return `${Math.floor(ms / 3_600_000)}h ago`
}
