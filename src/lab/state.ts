/** The lab's state file: what `lab up` made, so `lab down` and `lab status` work from any process. */
import {existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync} from 'node:fs'
import {dirname} from 'node:path'
import {LAB_STATE_FILE} from './topology.js'
import type {LabEtcd} from './etcd.js'

export interface LabNode {
  name: string
  index: number
  netns: string
  address: string
  prefixLen: number
  underlayIf: string
  /** Its port on the switch bridge, in the switch namespace. */
  port: string
}

export interface LabState {
  version: 1
  createdAt: string
  subnet: string
  switch: {netns: string; bridge: string}
  client: {name: string; netns: string; address: string; port: string}
  nodes: LabNode[]
  /** lab up --store etcd: the members in the first nodes' namespaces and the managers' client files. */
  etcd?: LabEtcd
  /** How many of the first nodes are managers (1 unless on etcd). */
  managers?: number
}

export function readLabState(file = LAB_STATE_FILE): LabState | undefined {
  if (!existsSync(file)) return undefined
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as LabState
  } catch {
    return undefined // a torn file still means "down removes what it can find"
  }
}

/** Written via rename so a reader never sees half a file. */
export function writeLabState(state: LabState, file = LAB_STATE_FILE): void {
  mkdirSync(dirname(file), {recursive: true})
  writeFileSync(`${file}.tmp`, `${JSON.stringify(state, null, 2)}\n`)
  renameSync(`${file}.tmp`, file)
}

export function removeLabState(file = LAB_STATE_FILE): boolean {
  const had = existsSync(file)
  rmSync(file, {force: true})
  rmSync(`${file}.tmp`, {force: true})
  return had
}
