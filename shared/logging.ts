/**
 * The one place winston enters. `createLogger` makes a run's logger:
 *   - console: every rank; info lines only from rank 0 (the others would repeat them), warnings
 *     and errors from all ranks, marked with the rank when the launcher does not prefix lines;
 *   - file: rank 0 only, appended, plain readable lines with a timestamp, written synchronously
 *     line by line, so that a failed write (a full disk) is seen at once: the file transport then
 *     stops writing and `logFileFailure` returns a FileError naming the path, which the trainer
 *     raises (winston's own file stream would drop the lines silently).
 * `closeLogger` resolves once the file has been written: await it before the process ends
 * instead of calling process.exit() (which can drop winston's file writes).
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import winston from 'winston';
import { FileError } from './errors.js';

export type Logger = winston.Logger;
export type ConsoleFormat = 'text' | 'json';

export interface LoggerOptions {
  readonly rank: number;
  readonly runId?: string | undefined;
  /** The log file, written by rank 0 only; undefined: no file. */
  readonly file?: string | undefined;
  readonly consoleFormat?: ConsoleFormat;
  /** Print info lines on the console for this rank too (default: rank 0 only). */
  readonly consoleInfo?: boolean;
  /** Prefix console lines with `[rank N]` (default: unless the launcher prefixes already). */
  readonly rankPrefix?: boolean;
  /** Silence the console entirely (tests). */
  readonly silentConsole?: boolean;
}

/** winston's key of the formatted line in a log entry. */
const MESSAGE = Symbol.for('message');

/** winston's transport base class (winston re-exports winston-transport's at runtime; its typings call it a namespace). */
const TransportBase = (winston as unknown as { Transport: typeof import('winston-transport') }).Transport;

/** Appends each formatted line to `path` synchronously; after a failed write, writes nothing more. */
class SyncFileTransport extends TransportBase {
  failure: FileError | undefined;
  constructor(
    readonly path: string,
    opts: { level: string; format: winston.Logform.Format },
  ) {
    super(opts);
  }

  override log(info: Record<string | symbol, unknown>, next: () => void): void {
    if (this.failure === undefined) {
      try {
        appendFileSync(this.path, `${String(info[MESSAGE])}\n`);
      } catch (e) {
        this.failure = new FileError(
          `cannot write the log file ${this.path}: ${(e as Error).message}`,
          'free space on its disk or pass a --log-file on a writable disk with free space',
        );
      }
    }
    next();
  }
}

const fileLine = winston.format.printf((info) => `${String(info.timestamp)} ${info.level.toUpperCase().padEnd(5)} ${String(info.message)}`);

/**
 * `[rank N] ` for a worker's console line, or '' when the launcher prefixes every line of this
 * worker's output itself (`[rankN]:`, launcher/redirects.ts) and says so with ROSEDIST_PREFIXED=1.
 */
export function rankTag(rank: number, prefix = process.env.ROSEDIST_PREFIXED !== '1'): string {
  return prefix ? `[rank ${rank}] ` : '';
}

export function createLogger(opts: LoggerOptions): Logger {
  const consoleInfo = opts.consoleInfo ?? opts.rank === 0;
  const tag = rankTag(opts.rank, opts.rankPrefix);
  const consoleFormat =
    opts.consoleFormat === 'json'
      ? winston.format.combine(winston.format.timestamp(), winston.format.json())
      : winston.format.printf((info) => {
          const level = info.level === 'info' ? '' : `${info.level.toUpperCase()}: `;
          return `${tag}${level}${String(info.message)}`;
        });
  const transports: winston.transport[] = [
    new winston.transports.Console({
      level: consoleInfo ? 'info' : 'warn',
      format: consoleFormat,
      silent: opts.silentConsole ?? false,
      // Warnings and errors go to stderr, the rest to stdout.
      stderrLevels: ['error', 'warn'],
    }),
  ];
  const logger = winston.createLogger({
    level: 'info',
    defaultMeta: { rank: opts.rank, ...(opts.runId ? { runId: opts.runId } : {}) },
    transports,
  });
  if (opts.file !== undefined && opts.rank === 0) attachLogFile(logger, opts.file);
  return logger;
}

/**
 * Add the log file to a logger made without one (rank 0, once its path is checked and locked).
 * Creates the file's directory; throws a FileError naming the path when that fails.
 */
export function attachLogFile(logger: Logger, file: string): void {
  try {
    mkdirSync(dirname(file), { recursive: true });
  } catch (e) {
    throw new FileError(`cannot create the directory of the log file ${file}: ${(e as Error).message}`, 'pass a --log-file in a writable directory');
  }
  const transport = new SyncFileTransport(file, { level: 'info', format: winston.format.combine(winston.format.timestamp(), fileLine) });
  logger.add(transport);
  logFiles.set(logger, transport);
}

/** Each logger's file transport (winston forgets its transports once the logger has ended). */
const logFiles = new WeakMap<Logger, SyncFileTransport>();

/** The first failed write to the logger's file, as a FileError naming it; undefined while all is well. */
export function logFileFailure(logger: Logger): FileError | undefined {
  return logFiles.get(logger)?.failure;
}

/** End the logger and resolve when every transport has flushed (the file is complete). */
export function closeLogger(logger: Logger): Promise<void> {
  return new Promise((resolve) => {
    const files = logger.transports.filter((t) => t instanceof SyncFileTransport);
    if (files.length === 0) {
      logger.end();
      resolve();
      return;
    }
    let pending = files.length;
    for (const t of files) {
      t.on('finish', () => {
        pending -= 1;
        if (pending === 0) resolve();
      });
    }
    logger.end();
  });
}

/**
 * Console warnings and errors only, until the returned function restores the previous levels:
 * for while a live progress bar owns the terminal (info lines then reach the file alone; the
 * trainer prints the ones that matter above the bar). The file transport is untouched.
 */
export function quietConsole(logger: Logger): () => void {
  const consoles = logger.transports.filter((t) => t instanceof winston.transports.Console);
  const before = consoles.map((t) => t.level);
  for (const t of consoles) t.level = 'warn';
  return () => consoles.forEach((t, i) => (t.level = before[i]));
}
