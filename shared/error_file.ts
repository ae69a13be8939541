/**
 * Worker failures as data (torchrun's error files): a worker that dies of an exception writes
 * it as JSON to the path in ROSEDIST_ERROR_FILE (= TORCHELASTIC_ERROR_FILE); the launcher reads
 * it for the failure summary. The reader also understands the file torch's `@record` writes.
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
    typeof c === 'object' &&
    c !== null &&
    Number.isInteger(c.seq) &&
    typeof c.op === 'string' &&
    Number.isInteger(c.bytes) &&
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

/**
 * A timestamp as ms. torch writes Unix seconds (as a string in its current form); a second means
 * "some time within that second", so it becomes the second's last millisecond and the exit the
 * launcher saw (in ms) decides the order within a second. Ours are ms already (≥ 1e11 since 1973).
 */
function timestampMs(t: unknown): number {
  const n = typeof t === 'string' && t.trim() !== '' ? Number(t) : typeof t === 'number' ? t : NaN;
  if (!Number.isFinite(n) || n <= 0) return 0;
  return n < 1e11 ? Math.floor(n) * 1000 + 999 : n;
}

/**
 * torch's error file (torch.distributed.elastic.multiprocessing.errors, written by a main wrapped
 * in `@record`) as our record:
 *   {"message": {"message": "ValueError: boom", "extraInfo": {"py_callstack": "Traceback ...",
 *                "timestamp": "1764590000"}}}
 * Its older form, {"message": "text", "timestamp": 1764590000}, reads as ours does.
 */
function fromTorch(m: Record<string, unknown>): WorkerErrorRecord | undefined {
  if (typeof m.message !== 'string') return undefined;
  const extra = typeof m.extraInfo === 'object' && m.extraInfo !== null ? (m.extraInfo as Record<string, unknown>) : {};
  return {
    // torch's message is already "ValueError: boom"; the summary shows it on one line.
    name: '',
    message: m.message.trim().replace(/\s*\n\s*/g, ' '),
    stack: typeof extra.py_callstack === 'string' ? extra.py_callstack : undefined,
    pid: 0,
    timestamp: timestampMs(extra.timestamp),
  };
}

/** Read a worker's error file (ours or torch's); undefined when it is absent or unreadable. */
export function readErrorFile(path: string): WorkerErrorRecord | undefined {
  try {
    const value: unknown = JSON.parse(readFileSync(path, 'utf8'));
    if (typeof value !== 'object' || value === null) return undefined;
    const r = value as Partial<WorkerErrorRecord>;
    if (typeof r.message === 'object' && r.message !== null) return fromTorch(r.message as Record<string, unknown>);
    if (typeof r.message !== 'string') return undefined;
    return {
      name: typeof r.name === 'string' ? r.name : 'Error',
      message: r.message,
      hint: typeof r.hint === 'string' ? r.hint : undefined,
      stack: typeof r.stack === 'string' ? r.stack : undefined,
      rank: typeof r.rank === 'number' ? r.rank : undefined,
      pid: typeof r.pid === 'number' ? r.pid : 0,
      timestamp: timestampMs(r.timestamp),
      collectives: Array.isArray(r.collectives) ? r.collectives.filter(isCollectiveRecord) : undefined,
    };
  } catch {
    return undefined;
  }
}
