/**
 * Runs `work` over `items` with at most `limit` running at once; resolves when every one has
 * settled. A rejection is the item's own business: `work` is expected to catch what it can
 * handle, and anything it throws anyway is collected and thrown once all are done, so one
 * failure never leaves the others half-started.
 */
export async function forEachLimited<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  if (!Number.isInteger(limit) || limit < 1) throw new Error(`pool limit ${limit}: a whole number, 1 or more`)
  let next = 0
  const errors: unknown[] = []
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++]!
      try {
        await work(item)
      } catch (e) {
        errors.push(e)
      }
    }
  }
  await Promise.all(Array.from({length: Math.min(limit, items.length)}, worker))
  if (errors.length === 1) throw errors[0]
  if (errors.length > 1) throw new AggregateError(errors, `${errors.length} of ${items.length} failed`)
}
