/**
 * The shared entry of the worker programs: `runProgram(name, body)` reads the environment
 * contract, runs `body`, and ends the way the launcher expects:
 *   - on an error: one line through the run's logger (formatError: message and hint, no stack for
 *     our own errors; before the logger exists, a console one in argv's --log-format), the torchrun-style error file (ROSEDIST_ERROR_FILE, with the process
 *     group's latest collectives), and
 *     process.exitCode = exitCodeOf(e) (2 for bad configuration);
 *   - always: the process group closed, the logger flushed and the output lock released before
 *     the process ends.
 * It never calls process.exit(): the event loop drains and Node exits with process.exitCode.
 */
import { ENV, readWorkerEnv, type WorkerEnv } from '../shared/env.js';
import { writeErrorFile } from '../shared/error_file.js';
import { exitCodeOf, formatError } from '../shared/errors.js';
import { closeLogger, createLogger, type ConsoleFormat, type Logger } from '../shared/logging.js';
import { hideBin } from '../shared/yargs.js';
import type { ProcessGroup } from './comm/process_group.js';
import type { OutputLock } from './output_lock.js';

export interface ProgramScope {
  readonly env: WorkerEnv;
  /** Register the run's logger: an error is logged through it, and it is flushed at the end. */
  useLogger(logger: Logger): Logger;
  /** Register the process group: it is closed at the end, whatever happens. */
  useProcessGroup(pg: ProcessGroup): ProcessGroup;
  /** Register the lock on the run's output files: released last, after the log is flushed. */
  useOutputLock(lock: OutputLock | undefined): void;
}

/**
 * The console format asked for in argv (`--log-format json` or `--log-format=json`, the last one
 * winning as in the parser), read by hand: an error in the flags comes before any parsed config.
 */
export function consoleFormatOf(argv: readonly string[]): ConsoleFormat {
  let format: ConsoleFormat = 'text';
  argv.forEach((a, i) => {
    const value = a === '--log-format' ? argv[i + 1] : a.startsWith('--log-format=') ? a.slice('--log-format='.length) : undefined;
    if (value === 'json' || value === 'text') format = value;
  });
  return format;
}

export async function runProgram(name: string, body: (scope: ProgramScope) => Promise<void>): Promise<void> {
  let env: WorkerEnv | undefined;
  let logger: Logger | undefined;
  let pg: ProcessGroup | undefined;
  let lock: OutputLock | undefined;
  try {
    env = readWorkerEnv();
    const e = env;
    await body({
      env: e,
      useLogger: (l) => (logger = l),
      useProcessGroup: (g) => (pg = g),
      useOutputLock: (l) => (lock = l),
    });
  } catch (e) {
    const rank = env?.rank ?? 0;
    // Before the logger exists (bad flags, bad environment), a console-only one carries the line.
    const out = logger ?? createLogger({ rank, consoleInfo: true, consoleFormat: consoleFormatOf(hideBin(process.argv)) });
    out.error(`${name}: ${formatError(e)}`);
    if (out !== logger) await closeLogger(out);
    writeErrorFile(env?.errorFile ?? process.env[ENV.errorFile] ?? process.env.TORCHELASTIC_ERROR_FILE, e, rank, pg?.recentCollectives?.());
    process.exitCode = exitCodeOf(e);
  } finally {
    if (pg !== undefined) {
      await pg.close().catch((e: unknown) => logger?.warn(`${name}: closing the process group failed: ${formatError(e)}`));
    }
    if (logger !== undefined) await closeLogger(logger);
    lock?.release();
  }
}
