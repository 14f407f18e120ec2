// The index (state-index.ts) a manager on etcd answers requests from (issue 24): one, shared by
// all its requests, over the watch-fed copy of etcd (etcd-cache.ts) for desired state and the
// node's gossip store for the rest (nodes, statuses). Built once from both, then kept by their
// changes: each record the watch brings, each non-desired key the store changes. Rebuilt when
// the copy is read whole again (its watch dropped) or the store reopened.
//
// A request (or a batch of them, etcd-pipeline.ts) runs the manager's logic synchronously over it,
// its writes applied on top as it makes them (the logic reads its own writes through the index, as over the embedded store),
// then taken off again before anything else runs (lend): the index holds the copy's state
// whenever no request is deciding, and a request's commit comes back into it by the watch.
// Nothing depends on the index being fresh: the transaction compares what it relied on with
// etcd's revisions (etcd-transaction.ts), so a stale index costs a retry, never a duplicate.
import type {Json} from '../store/json.js'
import type {Store} from '../store/store.js'
import {isDesiredKey} from './backend.js'
import type {EtcdCache} from './etcd-cache.js'
import {StateIndex} from '../store/state-index.js'

export class EtcdIndex {
  private ix: StateIndex | undefined
  /** What the index was built from: the copy's whole reads and the store's loads at the time. */
  private builtListings = -1
  private builtEpoch = -1
  /** How many times the index was built from scratch (for the tests). */
  builds = 0
  private lent = false
  private readonly unsubscribe: (() => void)[]

  constructor(
    private readonly cache: EtcdCache,
    private readonly local: Store,
  ) {
    this.unsubscribe = [
      cache.onRecord((k, v, o) => this.ix?.apply(k, v, o)),
      // First: whatever the store's other listeners do after a change, the index has it.
      local.onChange(
        (k, v, o) => {
          // Desired keys in the store are copies of etcd's (the index has them from the copy).
          if (!isDesiredKey(k)) this.ix?.apply(k, v, o)
        },
        {first: true},
      ),
    ]
  }

  /**
   * The index over the copy's records (as its snapshot() gave them, caught up) and the store.
   * Shared: change it only through lend().
   */
  current(records: ReadonlyMap<string, Json>): StateIndex {
    if (this.ix === undefined || this.builtListings !== this.cache.listings || this.builtEpoch !== this.local.epoch) {
      const entries: {key: string; value: Json | null}[] = this.local.list('').filter((e) => !isDesiredKey(e.key))
      for (const [key, value] of records) entries.push({key, value})
      this.ix = StateIndex.build(entries)
      this.builtListings = this.cache.listings
      this.builtEpoch = this.local.epoch
      this.builds++
    }
    return this.ix
  }

  /**
   * Runs fn (synchronous: nothing else may see the index meanwhile) with a way to apply
   * requests' writes to the index; every one is taken off again, in reverse order, before
   * lend returns or throws. A batch of requests decides one after another within one lend, each
   * over the writes of those before it; mark() gives a way to take off only what was written
   * since (a request refused, or left for the next batch).
   */
  lend<T>(records: ReadonlyMap<string, Json>, fn: (ix: StateIndex, write: Write, mark: () => () => void) => T): T {
    if (this.lent) throw new Error('internal: the etcd index is lent to two requests at once')
    const ix = this.current(records)
    const done: [string, Json | undefined, Json | undefined][] = []
    const undoTo = (n: number) => {
      while (done.length > n) {
        const [key, value, old] = done.pop()!
        ix.apply(key, old, value)
      }
    }
    this.lent = true
    try {
      return fn(
        ix,
        (key, value, old) => {
          ix.apply(key, value, old)
          done.push([key, value, old])
        },
        () => {
          const at = done.length
          return () => undoTo(at)
        },
      )
    } finally {
      undoTo(0)
      this.lent = false
    }
  }

  close(): void {
    for (const u of this.unsubscribe) u()
  }
}

/** A request's write of a desired key, as the index applies it. */
export type Write = (key: string, value: Json | undefined, old: Json | undefined) => void
