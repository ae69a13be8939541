/**
 * The one place winston enters. `createLogger` makes a run's logger:
 *   - console: every rank; info lines only from rank 0 (the others would repeat them), warnings
 *     and errors from all ranks, marked with the rank when the launcher does not prefix lines;
 *   - file: rank 0 only, appended, plain readable lines with a timestamp.
 * `closeLogger` resolves once the file has been written: await it before the process ends
 * instead of calling process.exit() (which can drop winston's file writes).
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import winston from 'winston';

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
  if (opts.file !== undefined && opts.rank === 0) {
    mkdirSync(dirname(opts.file), { recursive: true });
    transports.push(
      new winston.transports.File({
        filename: opts.file,
        level: 'info',
        format: winston.format.combine(winston.format.timestamp(), fileLine),
      }),
    );
  }
  return winston.createLogger({
    level: 'info',
    defaultMeta: { rank: opts.rank, ...(opts.runId ? { runId: opts.runId } : {}) },
    transports,
  });
}

/** End the logger and resolve when every transport has flushed (the file is complete). */
export function closeLogger(logger: Logger): Promise<void> {
  return new Promise((resolve) => {
    const files = logger.transports.filter((t) => t instanceof winston.transports.File);
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
