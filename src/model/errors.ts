/**
 * An error the user caused and can fix. The CLI prints `message` alone (one
 * line, no stack): anything else that escapes is a bug and deserves its stack.
 */
export class UserError extends Error {
  override readonly name = 'UserError'

  constructor(message: string) {
    super(message)
  }
}

export function isUserError(e: unknown): e is UserError {
  return e instanceof UserError
}
