/**
 * The one rule for task ids: 24 hex digits, as the manager makes them (newId,
 * 12 random bytes). A task id becomes a directory (the task's state, its log),
 * a cgroup and part of a namespace's and an interface's name on every node, so
 * nothing else is a task id, wherever it comes from: a task record from gossip
 * with the id `.` or `..` would otherwise name the tasks directory or the
 * node's own cgroup, and removing the task would remove those.
 */
export const TASK_ID = /^[0-9a-f]{24}$/

export function isTaskId(id: string): boolean {
  return TASK_ID.test(id)
}

/** The id, when it is a task id; throws otherwise (a path is never made of anything else). */
export function checkTaskId(id: string): string {
  if (!isTaskId(id)) throw new Error(`'${id.slice(0, 64)}' is not a task id (24 hex digits)`)
  return id
}
