// Encoded map entries by what they are made of, from one call to the next: the reconciler
// encodes the whole desired state (every map's entries, the DNS fast path's) twice per pass, many
// passes a second while tasks start, and from one pass to the next almost every entry is the
// same. An entry is kept for the next call only when this call used it, so the cache holds one
// call's entries at most. The buffers it returns are shared between calls: nobody writes into them.

/** An encoded entry as Entries hold it: key's hex, [key, value]. */
export type Entry = [string, [Buffer, Buffer]]

export class EntryCache {
  private prev = new Map<string, Entry | null>()
  private next = new Map<string, Entry | null>()

  /** The entry `make` gives for these inputs (`key` names every one of them); null: none. */
  get(key: string, make: () => Entry | null): Entry | null {
    let e = this.next.get(key)
    if (e !== undefined) return e
    e = this.prev.get(key)
    if (e === undefined) e = make()
    this.next.set(key, e)
    return e
  }

  /** A call is over: what it did not use is forgotten. */
  turn(): void {
    this.prev = this.next
    this.next = new Map()
  }
}

/** No cache: every entry made anew. */
export const NO_CACHE: Pick<EntryCache, 'get'> = {get: (_key, make) => make()}
