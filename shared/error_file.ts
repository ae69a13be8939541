/**
 * Worker failures as data (torchrun's error files): a worker that dies of an exception writes
 * it as JSON to the path in ROSEDIST_ERROR_FILE; the launcher reads it for the failure summary.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { RosedistError } from './errors.js';

/** What a worker records about its own failure. */
export interface WorkerErrorRecord {
  readonly name: string;
  /** One line, what the user reads in the summary. */
  readonly message: string;
  readonly hint?: string | undefined;
  readonly stack?: string | undefined;
  readonly rank?: number | undefined;
  readonly pid: number;
  /** Unix time, ms. */
  readonly timestamp: number;
}

/** Record `e` at `path` (atomically: write a temporary file, then rename). Never throws. */
export function writeErrorFile(path: string | undefined, e: unknown, rank?: number): void {
  if (path === undefined) return;
  const err = e instanceof Error ? e : new Error(String(e));
  const record: WorkerErrorRecord = {
    name: err.name,
    message: err.message,
    hint: err instanceof RosedistError ? err.hint : undefined,
    stack: err instanceof RosedistError ? undefined : err.stack,
    rank,
    pid: process.pid,
    timestamp: Date.now(),
  };
  try {
    mkdirSync(dirname(path), { recursive: true });
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(record));
    renameSync(tmp, path);
  } catch {
    // The launcher then reports the exit code alone; failing here must not hide `e`.
  }
}

/** Read a worker's error file; undefined when it is absent or unreadable. */
export function readErrorFile(path: string): WorkerErrorRecord | undefined {
  try {
    const value: unknown = JSON.parse(readFileSync(path, 'utf8'));
    if (typeof value !== 'object' || value === null) return undefined;
    const r = value as Partial<WorkerErrorRecord>;
    if (typeof r.message !== 'string') return undefined;
    return {
      name: typeof r.name === 'string' ? r.name : 'Error',
      message: r.message,
      hint: typeof r.hint === 'string' ? r.hint : undefined,
      stack: typeof r.stack === 'string' ? r.stack : undefined,
      rank: typeof r.rank === 'number' ? r.rank : undefined,
      pid: typeof r.pid === 'number' ? r.pid : 0,
      timestamp: typeof r.timestamp === 'number' ? r.timestamp : 0,
    };
  } catch {
    return undefined;
  }
}
