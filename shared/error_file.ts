/**
 * Worker failures as data (torchrun's error files): a worker that dies of an exception writes
 * it as JSON to the path in ROSEDIST_ERROR_FILE; the launcher reads it for the failure summary.
 */
import { readFileSync } from 'node:fs';
import { writeFileAtomicSync } from './atomic_file.js';
import { RosedistError } from './errors.js';

/** One of a rank's latest collectives, as its process group saw it. */
export interface CollectiveRecord {
  /** Sequence number of the collective in its group (1, 2, ...). */
  readonly seq: number;
  /** e.g. "allReduce(sum, float32[1000])" */
  readonly op: string;
  /** Bytes of this rank's buffer. */
  readonly bytes: number;
  readonly state: 'running' | 'done' | 'failed';
}

function isCollectiveRecord(x: unknown): x is CollectiveRecord {
  const c = x as Partial<CollectiveRecord> | null;
  return (
    typeof c === 'object' && c !== null && Number.isInteger(c.seq) && typeof c.op === 'string' && Number.isInteger(c.bytes) &&
    (c.state === 'running' || c.state === 'done' || c.state === 'failed')
  );
}

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
  /** Its process group's latest collectives, oldest first; undefined: none recorded. */
  readonly collectives?: readonly CollectiveRecord[] | undefined;
}

/**
 * Record `e` at `path` (atomically: write a temporary file, then rename), with the latest
 * `collectives` of the rank's process group when it has one. Never throws.
 */
export function writeErrorFile(path: string | undefined, e: unknown, rank?: number, collectives?: readonly CollectiveRecord[]): void {
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
    collectives: collectives !== undefined && collectives.length > 0 ? collectives : undefined,
  };
  try {
    writeFileAtomicSync(path, Buffer.from(JSON.stringify(record), 'utf8'));
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
      collectives: Array.isArray(r.collectives) ? r.collectives.filter(isCollectiveRecord) : undefined,
    };
  } catch {
    return undefined;
  }
}
