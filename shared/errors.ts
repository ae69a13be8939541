/**
 * Base errors. Every error we raise on purpose says what is wrong (`message`) and how to fix it
 * (`hint`); entry points print `formatError(e)` as one line instead of a stack trace.
 */

/** An error the user can fix: bad flag, bad file, bad environment. */
export class RosedistError extends Error {
  override readonly name: string = 'RosedistError';
  /** What to do about it, e.g. "pass --nproc-per-node 1 or more". */
  readonly hint: string | undefined;
  /** Process exit code for entry points that end on this error. */
  readonly exitCode: number = 1;
  constructor(message: string, hint?: string, options?: ErrorOptions) {
    super(message, options);
    this.hint = hint;
  }
}

/** Bad configuration: flags, environment variables. Entry points exit 2, as argparse does. */
export class ConfigError extends RosedistError {
  override readonly name: string = 'ConfigError';
  override readonly exitCode: number = 2;
}

/** A file we were given is missing, unreadable or damaged (checkpoint, dataset). */
export class FileError extends RosedistError {
  override readonly name: string = 'FileError';
}

/** A collective or rendezvous failed: timeout, mismatch, a peer gone. */
export class CommError extends RosedistError {
  override readonly name: string = 'CommError';
}

/** One line for the user: message and hint; unexpected errors keep their stack. */
export function formatError(e: unknown): string {
  if (e instanceof RosedistError) return e.hint ? `${e.message} (${e.hint})` : e.message;
  if (e instanceof Error) return e.stack ?? `${e.name}: ${e.message}`;
  return String(e);
}

/** Exit code for an error that ends a program. */
export function exitCodeOf(e: unknown): number {
  return e instanceof RosedistError ? e.exitCode : 1;
}
