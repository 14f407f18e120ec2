/** A value that survives JSON.stringify/parse unchanged. */
export type Json = null | boolean | number | string | Json[] | {[key: string]: Json}
