/**
 * Error kinds, each mapped to one exit code in main.ts (the only place that exits).
 *   UsageError / ConfigError -> 2   (keepalived: "script misconfigured")
 *   ActionFailed / Refused    -> 1   (the check failed, or the takeover did not happen)
 * Every message is one line an operator can read at 3 a.m.
 */
export class FsHaError extends Error {
  readonly exitCode: number = 1;
  /** already written to the log by the command that failed: main prints nothing more */
  reported = false;
  constructor(message: string) {
    super(message.replace(/\s*\n\s*/g, ' '));
    this.name = new.target.name;
  }
}

export class UsageError extends FsHaError {
  override readonly exitCode = 2;
}

export class ConfigError extends FsHaError {
  override readonly exitCode = 2;
}

/** Something we tried did not work (could not ask, or the answer was bad). */
export class ActionFailed extends FsHaError {}

/**
 * A guard said no: acting would be unsafe. level follows the log rule (docs/on-failure.md, "Log levels"): 'info' when
 * nothing is wrong (the node is alive and serving its own calls), 'warn' when it is degraded but no call is
 * at risk, 'error' when a call may be lost or an operator must act. nothingToDo: the refusal is the
 * normal answer (a notify MASTER whose peer is alive); notify reports it as such and exits 0.
 */
export class Refused extends FsHaError {
  constructor(
    message: string,
    readonly level: 'info' | 'warn' | 'error' = 'error',
    readonly nothingToDo: string | null = null,
  ) {
    super(message);
  }
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}

/** Mark an error as already logged (one line per failure, not two). */
export function reported<T>(e: T): T {
  if (e instanceof FsHaError) e.reported = true;
  return e;
}
