/**
 * Step-phase timeline in the Chrome trace format (chrome://tracing, ui.perfetto.dev).
 *
 * Each rank records complete events (`ph: 'X'`): name = phase, `ts`/`dur` in µs, pid = rank,
 * tid = 0 (the training loop; phases on it must be sequential or nested, never overlapping).
 * `ts` is wall-clock µs (performance.timeOrigin + performance.now()), so events of different
 * processes on one machine line up: a rank that reaches the all-reduce early shows a long
 * `allreduce` bar that ends when the last rank arrives. `dur` comes from the monotonic clock alone.
 *
 * At the end every rank calls `gatherEvents` (a collective), rank 0 merges (`mergeTraces`) and
 * writes one file (`writeTrace`). A disabled profiler records nothing: begin/end return at once
 * and span only calls its function.
 */
import { constants } from 'node:fs';
import { access, mkdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { writeFileAtomicSync } from '../../shared/atomic_file.js';
import { FileError } from '../../shared/errors.js';
import { allGatherJson, type ProcessGroup } from '../comm/process_group.js';

export type Phase = 'data' | 'forward_backward' | 'grad_copy' | 'allreduce' | 'optimizer' | 'eval' | 'checkpoint';
export const PHASES: readonly Phase[] = ['data', 'forward_backward', 'grad_copy', 'allreduce', 'optimizer', 'eval', 'checkpoint'];

/** One Chrome trace event: a complete event ('X') or process/thread metadata ('M'). */
export interface TraceEvent {
  readonly name: string;
  readonly ph: 'X' | 'M';
  /** Start, wall-clock µs since the Unix epoch (0 for metadata). */
  readonly ts: number;
  /** Duration in µs ('X' only). */
  readonly dur?: number;
  readonly pid: number;
  readonly tid: number;
  readonly cat?: string;
  readonly args?: Readonly<Record<string, string | number>>;
}

export interface MergedTrace {
  readonly traceEvents: TraceEvent[];
  readonly displayTimeUnit: 'ms';
  /** Run facts outside the timeline (the trace format's `otherData`; viewers show it as metadata). */
  readonly otherData?: TraceOtherData;
}

export interface TraceOtherData {
  /** Each rank's peak resident set size at the end of training, MiB, indexed by rank (the benchmark reads it). */
  readonly peak_rss_mb: readonly number[];
}

/** This process's peak resident set size so far, MiB (getrusage's ru_maxrss, which Node gives in KiB). */
export function peakRssMb(): number {
  return process.resourceUsage().maxRSS / 1024;
}

/** The training loop's thread id in every rank's process. */
const LOOP_TID = 0;
/** The row of collectives that overlap the loop (Profiler.background). */
export const BACKGROUND_TID = 1;
/** Past this many events a rank stops recording (about 100 bytes each in memory and on disk). */
const DEFAULT_MAX_EVENTS = 1_000_000;

export class Profiler {
  readonly rank: number;
  readonly enabled: boolean;
  /** Events not recorded because `maxEvents` was reached (the trainer warns when > 0). */
  dropped = 0;
  private readonly maxEvents: number;
  /** Start of each open phase, performance.now() ms. */
  private readonly open = new Map<Phase, number>();
  private readonly recorded: TraceEvent[] = [];
  private step: number | undefined;

  constructor(rank: number, enabled: boolean, maxEvents = DEFAULT_MAX_EVENTS) {
    this.rank = rank;
    this.enabled = enabled;
    this.maxEvents = maxEvents;
  }

  /** The optimizer step the next events belong to (stored as args.step, to line up ranks). */
  setStep(step: number): void {
    this.step = step;
  }

  /** Start `phase`. Throws if it is already open (a missing end()). */
  begin(phase: Phase): void {
    if (!this.enabled) return;
    if (this.open.has(phase)) throw new Error(`profiler: phase "${phase}" begun twice without end() on rank ${this.rank}`);
    this.open.set(phase, performance.now());
  }

  /** End `phase` and record it. Throws if it was not begun. */
  end(phase: Phase): void {
    if (!this.enabled) return;
    const endMs = performance.now();
    const startMs = this.open.get(phase);
    if (startMs === undefined) throw new Error(`profiler: end("${phase}") without begin() on rank ${this.rank}`);
    this.open.delete(phase);
    if (this.recorded.length >= this.maxEvents) {
      this.dropped += 1;
      return;
    }
    this.recorded.push({
      name: phase,
      cat: 'step',
      ph: 'X',
      ts: Math.round((performance.timeOrigin + startMs) * 1000),
      dur: Math.round((endMs - startMs) * 1e6) / 1000,
      pid: this.rank,
      tid: LOOP_TID,
      ...(this.step !== undefined ? { args: { step: this.step } } : {}),
    });
  }

  /** Run `fn` as `phase`; the phase ends when it settles, resolved or rejected. */
  async span<T>(phase: Phase, fn: () => T | Promise<T>): Promise<T> {
    if (!this.enabled) return fn();
    this.begin(phase);
    try {
      return await fn();
    } finally {
      this.end(phase);
    }
  }

  /**
   * A collective that ran beside the loop (overlap: a gradient bucket's all-reduce, started
   * mid-backward), from `startMs` to `endMs` (performance.now() ms), on its own row (tid 1, so
   * that it may overlap the loop's phases). `name` is not a Phase: step sums leave it out.
   */
  background(name: string, startMs: number, endMs: number, args: Readonly<Record<string, number>> = {}): void {
    if (!this.enabled) return;
    if (this.recorded.length >= this.maxEvents) {
      this.dropped += 1;
      return;
    }
    this.recorded.push({
      name,
      cat: 'comm',
      ph: 'X',
      ts: Math.round((performance.timeOrigin + startMs) * 1000),
      dur: Math.round((endMs - startMs) * 1e6) / 1000,
      pid: this.rank,
      tid: BACKGROUND_TID,
      args: { ...(this.step !== undefined ? { step: this.step } : {}), ...args },
    });
  }

  /** This rank's complete events so far, in the order they ended. */
  events(): TraceEvent[] {
    return [...this.recorded];
  }
}

/** Metadata that names and orders a rank's row in the viewer. */
function rankMetadata(rank: number, background: boolean): TraceEvent[] {
  return [
    { name: 'process_name', ph: 'M', ts: 0, pid: rank, tid: LOOP_TID, args: { name: `rank ${rank}` } },
    { name: 'process_sort_index', ph: 'M', ts: 0, pid: rank, tid: LOOP_TID, args: { sort_index: rank } },
    { name: 'thread_name', ph: 'M', ts: 0, pid: rank, tid: LOOP_TID, args: { name: 'training loop' } },
    // The row of overlap's bucket all-reduces, only where there are some.
    ...(background ? [{ name: 'thread_name', ph: 'M' as const, ts: 0, pid: rank, tid: BACKGROUND_TID, args: { name: 'gradient buckets (overlap)' } }] : []),
  ];
}

/**
 * One trace from every rank's events (`perRank[r]` = rank r's): metadata first, then all complete
 * events by start time. Throws if an event's pid is not the rank it was given as.
 */
export function mergeTraces(perRank: TraceEvent[][]): MergedTrace {
  const meta = perRank.flatMap((events, rank) =>
    rankMetadata(
      rank,
      events.some((e) => e.tid === BACKGROUND_TID),
    ),
  );
  const complete = perRank.flatMap((events, rank) =>
    events.map((e) => {
      if (e.pid !== rank) throw new Error(`mergeTraces: an event of pid ${e.pid} was given as rank ${rank}'s`);
      return e;
    }),
  );
  complete.sort((a, b) => a.ts - b.ts || a.pid - b.pid);
  return { traceEvents: [...meta, ...complete], displayTimeUnit: 'ms' };
}

/**
 * Collective: every rank calls it with its own events; every rank gets all ranks' lists, indexed by
 * rank (rank 0 writes them).
 */
export async function gatherEvents(pg: ProcessGroup, events: TraceEvent[]): Promise<TraceEvent[][]> {
  return allGatherJson(pg, events);
}

const TRACE_HINT = 'pass --profile a path in a writable directory';

/**
 * Fail before training rather than after it: creates `path`'s directory and checks that it is
 * writable and that `path` is not a directory. Throws FileError.
 */
export async function checkTracePath(path: string): Promise<void> {
  const dir = dirname(path);
  try {
    await mkdir(dir, { recursive: true });
    await access(dir, constants.W_OK);
  } catch (e) {
    throw new FileError(`cannot write the trace ${path}: ${(e as Error).message ?? String(e)}`, TRACE_HINT);
  }
  const existing = await stat(path).catch(() => undefined);
  if (existing?.isDirectory()) throw new FileError(`cannot write the trace ${path}: it is a directory`, TRACE_HINT);
}

/** Write the trace to `path` atomically (a temporary file renamed over it). */
export async function writeTrace(path: string, merged: MergedTrace): Promise<void> {
  try {
    writeFileAtomicSync(path, Buffer.from(JSON.stringify(merged), 'utf8'));
  } catch (e) {
    throw new FileError(`cannot write the trace ${path}: ${(e as Error).message ?? String(e)}`, TRACE_HINT);
  }
}
