/**
 * Overlap (`--overlap`, the default with more than one rank): PyTorch DDP's gradient buckets.
 * The step buffer [grads | loss] (grad_buffer.ts) is cut, at parameter boundaries, into buckets of
 * about `--bucket-mb` MiB, counted from its end: bucket 0 holds the LM head's gradient (the
 * first backward finishes) and the loss, the last bucket the token embedding's (the last).
 * Backward hands each parameter's gradient over as soon as it is final
 * (GPT.trainStepOverlapped); once every parameter of the next bucket is in, that bucket is
 * pre-divided by the world size and its all-reduce starts, while backward goes on (it yields to
 * the event loop between tape nodes, which is when the ring moves). After backward, `finish`
 * waits for the buckets in order and can run the optimizer on each reduced bucket while the
 * later ones are still in flight.
 *
 * Collectives: one all-reduce per bucket, every rank in the same order (bucket 0, 1, …; one at a
 * time, chained, as the process group requires). Every element gets the bits of one all-reduce of
 * the whole step buffer (the --no-overlap path): with 2 ranks and float32 on the wire a + b is the
 * same either way round, so each bucket is an ordinary ring all-reduce; with 3 or more ranks, or
 * a 16-bit wire, the ring's order of addition and the rank that rounds depend on which chunk an
 * element falls in, so each bucket is reduced as a window of the whole buffer, cut as the whole
 * buffer's ring cuts it (process_group.ts allReduce's `window`). That cut is uneven (a bucket
 * inside one chunk travels along one chain of ranks), the price of the same bits. With
 * --grad-compression each bucket crosses the wire at 16 bits, the loss at full width.
 */
import type { ProcessGroup } from './comm/process_group.js';
import type { Range } from './comm/chunks.js';
import type { Compression } from './comm/wire.js';
import type { GradCompression } from './config.js';
import { preDivideBuffer } from './ddp.js';
import type { GradBuffer } from './grad_buffer.js';
import type { GradSink } from './model/gpt.js';
import { findingAt, type LocalFinding } from './numerics.js';
import type { Profiler } from './observe/profiler.js';

/**
 * The buckets of a step buffer whose parameters have `sizes` (elements each, in flat order),
 * in launch order: from the end of the buffer, each closed at the first parameter boundary at
 * which it holds `bucketBytes` or more; bucket 0 also holds the loss (the buffer's last float).
 */
export function bucketRanges(sizes: readonly number[], bucketBytes: number): Range[] {
  const numParams = sizes.reduce((a, b) => a + b, 0);
  const buckets: Range[] = [];
  let hi = numParams + 1;
  let lo = numParams;
  for (let i = sizes.length - 1; i >= 0; i--) {
    lo -= sizes[i] as number;
    if ((hi - lo) * 4 >= bucketBytes && lo > 0) {
      buckets.push({ lo, hi });
      hi = lo;
    }
  }
  buckets.push({ lo: 0, hi });
  return buckets;
}

/**
 * ROSEDIST_BENCH_ALTERNATE_OVERLAP=1 (bench:train --alternate-overlap; for benchmarks only):
 * overlap on odd steps only, so one run compares both paths under the same load (with 2 ranks
 * and float32 both give the same bits, so training is unchanged). Whether `step` overlaps.
 */
export function overlapsStep(step: number, env: Readonly<Record<string, string | undefined>> = process.env): boolean {
  return env.ROSEDIST_BENCH_ALTERNATE_OVERLAP !== '1' || step % 2 === 1;
}

/** What `finish` tells the trainer: as averageGradients' result. */
export type BucketOutcome = LocalFinding | undefined;

/** One step's view of a bucket. */
interface Flight {
  /** Elements of the bucket still to come from backward. */
  missing: number;
  /** Settles when its all-reduce does (never rejects: `error` holds the failure). */
  done: Promise<void> | undefined;
  error: unknown;
  startMs: number;
}

export class BucketedAllReduce implements GradSink {
  readonly buckets: readonly Range[];
  private flights: Flight[] = [];
  /** The next bucket to start (they start in order). */
  private next = 0;
  /** The chain of this step's all-reduces (the process group takes one at a time). */
  private chain: Promise<void> = Promise.resolve();
  /** This rank's first non-finite value (lowest index) found before the sums. */
  private bad = -1;
  private beforeStart: ((r: Range) => void) | undefined;

  constructor(
    private readonly pg: ProcessGroup,
    private readonly gb: GradBuffer,
    paramSizes: readonly number[],
    bucketBytes: number,
    private readonly compression: GradCompression,
    private readonly profiler?: Profiler,
  ) {
    this.buckets = bucketRanges(paramSizes, bucketBytes);
  }

  /**
   * A new step, whose last micro-batch's backward will report to this sink. `beforeStart(r)` runs
   * just before bucket r is pre-divided and sent (test hooks poison gradients there).
   */
  begin(beforeStart?: (r: Range) => void): void {
    this.flights = this.buckets.map((b) => ({ missing: b.hi - b.lo, done: undefined, error: undefined, startMs: 0 }));
    this.next = 0;
    this.chain = Promise.resolve();
    this.bad = -1;
    this.beforeStart = beforeStart;
  }

  /** GradSink: the micro-batch's loss (it travels in bucket 0). */
  loss(loss: number): void {
    this.gb.lastMicroLoss(loss);
    this.arrived(this.gb.lossIndex, this.gb.lossIndex + 1);
  }

  /** GradSink: microGrads()[lo, hi) is final (one parameter). */
  ready(lo: number, hi: number): void {
    this.gb.foldRange(lo, hi);
    this.arrived(lo, hi);
  }

  private arrived(lo: number, hi: number): void {
    this.buckets.forEach((b, i) => {
      const n = Math.min(hi, b.hi) - Math.max(lo, b.lo);
      if (n > 0) (this.flights[i] as Flight).missing -= n;
    });
    while (this.next < this.buckets.length && (this.flights[this.next] as Flight).missing === 0) this.start(this.next++);
  }

  private start(i: number): void {
    const range = this.buckets[i] as Range;
    const flight = this.flights[i] as Flight;
    this.beforeStart?.(range);
    const { pg, gb } = this;
    const buf = gb.flat.subarray(range.lo, range.hi);
    const bad = preDivideBuffer(buf, pg.worldSize);
    if (bad >= 0 && (this.bad < 0 || range.lo + bad < this.bad)) this.bad = range.lo + bad;
    const wire: Compression | undefined = this.compression === 'none' ? undefined : { format: this.compression, exactTail: range.hi > gb.lossIndex ? 1 : 0 };
    flight.startMs = performance.now();
    // The whole buffer's cut where the bits would otherwise differ (3+ ranks, or 16-bit wire):
    // each element then takes the same chain of ranks as in one all-reduce of the step buffer.
    const window = pg.worldSize > 2 || wire !== undefined ? { offset: range.lo, total: gb.flat.length } : undefined;
    this.chain = this.chain.then(() => pg.allReduce(buf, 'sum', wire, window));
    flight.done = this.chain.then(
      () => this.profiler?.background('allreduce_bucket', flight.startMs, performance.now(), { bucket: i, bytes: buf.byteLength }),
      (e: unknown) => {
        flight.error = e;
      },
    );
  }

  /**
   * After backward: wait for every bucket, in order, calling `onReduced(range)` (if given) as
   * each arrives while later ones may still be in flight. Resolves with where this rank's own
   * buffer held its first NaN or infinity before the sums (as averageGradients); rejects with
   * the first failed all-reduce.
   */
  async finish(onReduced?: (r: Range) => void): Promise<BucketOutcome> {
    if (this.next !== this.buckets.length) {
      const missing = this.flights.reduce((a, f) => a + f.missing, 0);
      throw new Error(`overlap: backward reported all but ${missing} elements of the step buffer (bucket ${this.next} never started)`);
    }
    for (const [i, flight] of this.flights.entries()) {
      await flight.done;
      if (flight.error !== undefined) throw flight.error;
      onReduced?.(this.buckets[i] as Range);
    }
    return this.bad < 0 ? undefined : findingAt(this.pg.rank, this.gb, this.bad);
  }
}

/**
 * `buckets.finish` as the trace shows it: `allreduce` while waiting for a bucket, `optimizer`
 * while `onReduced` runs on one that arrived (the loop's row holds one phase at a time).
 */
export async function waitForBuckets(profiler: Profiler, buckets: BucketedAllReduce, onReduced: (r: Range) => void): Promise<BucketOutcome> {
  let open: 'allreduce' | 'optimizer' = 'allreduce';
  const to = (phase: typeof open): void => {
    profiler.end(open);
    profiler.begin((open = phase));
  };
  profiler.begin(open);
  try {
    return await buckets.finish((r) => {
      to('optimizer');
      onReduced(r);
      to('allreduce');
    });
  } finally {
    profiler.end(open);
  }
}

/** The start-up line: "overlap: 3 gradient buckets (--bucket-mb 1): 4.88, 1.52, 4.94 MiB, launched in that order". */
export function describeBuckets(buckets: readonly Range[], bucketMb: number): string {
  const sizes = buckets.map((b) => ((4 * (b.hi - b.lo)) / 2 ** 20).toFixed(2)).join(', ');
  return `overlap: ${buckets.length} gradient bucket${buckets.length === 1 ? '' : 's'} (--bucket-mb ${bucketMb}): ${sizes} MiB, from the LM head to the token embedding`;
}
