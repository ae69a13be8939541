/**
 * Worker failures as data, and the failure summary (torchrun's "Root Cause" report).
 *
 * A failure is observed by the launcher (exit code or signal, pid, time of the exit) and completed
 * with what the worker recorded itself in its error file (shared/error_file.ts). The root cause is
 * the earliest failure: when one rank dies, its peers usually fail a moment later with "peer
 * gone", and those are consequences, not causes.
 */
import { readErrorFile, type CollectiveRecord } from '../shared/error_file.js';

/** One failed worker. Plain JSON-safe data: it travels between nodes in the control protocol. */
export interface ProcessFailure {
  readonly rank: number;
  readonly localRank: number;
  readonly nodeRank: number;
  /** `${hostname}#${nodeRank}` */
  readonly nodeId: string;
  readonly pid: number;
  /** null when a signal ended the process. */
  readonly exitCode: number | null;
  /** e.g. 'SIGKILL'; null when the process exited by itself. */
  readonly signal: string | null;
  /** Unix ms: the earlier of the error file's timestamp and the exit the launcher observed. */
  readonly time: number;
  /** The worker's own one-line account from its error file; undefined: it wrote none. */
  readonly message: string | undefined;
  readonly errorFile: string | undefined;
  /** The worker's latest collectives, oldest first, from its error file; undefined: none recorded. */
  readonly collectives?: readonly CollectiveRecord[] | undefined;
  /** A Python worker's traceback, shortened to where it raised and its last line; undefined: none. */
  readonly traceback?: string | undefined;
}

/**
 * `File "train.py", line 9, in main → ValueError: boom` from a Python traceback (torch's error
 * file keeps the whole one): the innermost frame and the exception that ends the traceback (its
 * lines joined; the frame's source and caret lines, indented 4+ spaces, left out).
 * undefined when `stack` is not a Python traceback (ours are JavaScript stacks: not shown).
 */
export function tracebackTail(stack: string | undefined): string | undefined {
  if (stack === undefined || !stack.startsWith('Traceback (most recent call last):')) return undefined;
  const lines = stack.split('\n');
  let at = lines.length - 1;
  while (at >= 0 && !/^\s*File "/.test(lines[at] ?? '')) at -= 1;
  const exception = lines
    .slice(at + 1)
    .filter((l) => !l.startsWith('    ') && l.trim() !== '')
    .map((l) => l.trim())
    .join(' ');
  if (exception === '') return undefined;
  return at < 0 ? exception : `${(lines[at] ?? '').trim()} → ${exception}`;
}

/** Who a failed process was, as the launcher knows it. */
export interface FailedWorker {
  readonly rank: number;
  readonly localRank: number;
  readonly nodeRank: number;
  readonly nodeId: string;
  readonly pid: number;
  readonly errorFile: string | undefined;
}

/** Build the failure of `w`, which exited at `exitedAt` (Unix ms) with `code`/`signal`. */
export function failureOf(w: FailedWorker, code: number | null, signal: string | null, exitedAt: number): ProcessFailure {
  const record = w.errorFile === undefined ? undefined : readErrorFile(w.errorFile);
  let message: string | undefined;
  if (record !== undefined) {
    message = record.name && record.name !== 'Error' ? `${record.name}: ${record.message}` : record.message;
    if (record.hint) message += ` (${record.hint})`;
  }
  const recordedAt = record !== undefined && record.timestamp > 0 ? record.timestamp : exitedAt;
  return {
    rank: w.rank,
    localRank: w.localRank,
    nodeRank: w.nodeRank,
    nodeId: w.nodeId,
    pid: w.pid,
    exitCode: code,
    signal,
    time: Math.min(recordedAt, exitedAt),
    message,
    errorFile: w.errorFile,
    collectives: record?.collectives,
    traceback: tracebackTail(record?.stack),
  };
}

/** "exited with code 3" or "was killed by SIGKILL". */
export function describeExit(f: Pick<ProcessFailure, 'exitCode' | 'signal'>): string {
  return f.signal !== null ? `was killed by ${f.signal}` : `exited with code ${f.exitCode ?? '?'}`;
}

/** Earliest first (the root cause), ties by rank. */
export function orderFailures(failures: readonly ProcessFailure[]): ProcessFailure[] {
  return [...failures].sort((a, b) => a.time - b.time || a.rank - b.rank);
}

/** What the summary says of a worker that left no error file. */
function noErrorFile(f: ProcessFailure): string {
  const text = '(no error file: the worker died before it could write one, or was killed';
  // Our programs always write one on an exception; a Python program only under torch's @record.
  return f.signal !== null ? `${text})` : `${text}; a Python main writes one when wrapped in torch.distributed.elastic.multiprocessing.errors.record)`;
}

function describe(f: ProcessFailure, showErrorFile: boolean): string[] {
  const lines = [
    `rank ${f.rank} (local rank ${f.localRank}, node ${f.nodeRank} ${f.nodeId}, pid ${f.pid}) ${describeExit(f)}` + ` at ${new Date(f.time).toISOString()}`,
    `  message: ${f.message ?? noErrorFile(f)}`,
  ];
  if (f.traceback !== undefined) lines.push(`  traceback: ${f.traceback}`);
  if (f.collectives !== undefined && f.collectives.length > 0) {
    lines.push('  last collectives (oldest first):');
    for (const c of f.collectives) lines.push(`    #${c.seq} ${c.op}, ${c.bytes} bytes: ${c.state}`);
  }
  if (showErrorFile && f.errorFile !== undefined && f.message !== undefined) lines.push(`  error file: ${f.errorFile}`);
  return lines;
}

export interface SummaryInput {
  readonly runId: string;
  readonly attempt: number;
  readonly maxRestarts: number;
  readonly failures: readonly ProcessFailure[];
  /** A failure that is not a worker's: a lost node, an interrupted launcher. */
  readonly reason: string | undefined;
  /** Name the error files (they are kept: --log-dir). */
  readonly showErrorFiles: boolean;
}

/** The report printed when a run ends in failure: root cause first, then the other failures. */
export function formatSummary(s: SummaryInput): string {
  const ordered = orderFailures(s.failures);
  const lines = [`run ${s.runId} failed on attempt ${s.attempt} (max restarts ${s.maxRestarts})`];
  if (s.reason !== undefined) lines.push(`  reason: ${s.reason}`);
  const [root, ...others] = ordered;
  if (root !== undefined) {
    lines.push('  root cause (first failure):');
    lines.push(...describe(root, s.showErrorFiles).map((l) => `    ${l}`));
  }
  if (others.length > 0) {
    lines.push('  other failures:');
    for (const f of others) lines.push(...describe(f, s.showErrorFiles).map((l) => `    ${l}`));
  }
  return lines.join('\n');
}
