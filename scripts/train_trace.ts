/**
 * What the training benchmark reads from train_ddp's `--profile` trace (worker/observe/profiler.ts): step
 * times, the all-reduce's share of them, a per-phase breakdown, and each rank's peak RSS.
 *
 * A training step of a rank is the span from the start of its first step phase to the end of its
 * last one (data, forward_backward, grad_copy, allreduce, optimizer); `eval` and `checkpoint` are
 * not part of it. The all-reduce phase includes waiting for the slowest rank, so its share is
 * "time not computing because of communication", as a user sees it.
 */
import type { MergedTrace, Phase } from '../worker/observe/profiler.js';

/** The phases that make a training step, in loop order. */
export const STEP_PHASES = ['data', 'forward_backward', 'grad_copy', 'allreduce', 'optimizer'] as const satisfies readonly Phase[];
type StepPhase = (typeof STEP_PHASES)[number];

export interface TraceSummary {
  readonly worldSize: number;
  /** Steps timed (after the warm-up), the same on every rank. */
  readonly timedSteps: number;
  /** Seconds the timed steps took on the slowest rank (ranks wait for each other every step). */
  readonly trainSeconds: number;
  /** Mean over ranks of allreduce time / step time, in [0, 1]. */
  readonly allreduceShare: number;
  /** Mean over ranks and timed steps of each phase, ms per step. */
  readonly phaseMs: Readonly<Record<StepPhase, number>>;
  /** Peak resident set size of each rank, MiB, indexed by rank. */
  readonly peakRssMb: readonly number[];
  /**
   * The step's first all-reduce span (the gradients') split in two, ms per step: `collective`,
   * the shortest rank's span (the last rank to arrive waits for no one: the collective itself);
   * `wait`, the mean over ranks of their span minus that (waiting for the slower rank).
   */
  readonly allreduceSplitMs: { readonly collective: number; readonly wait: number };
  /** With --overlap (the trace has `allreduce_bucket` events): how much of the buckets' flight backward hid; else undefined. */
  readonly overlap?: OverlapSummary;
  /**
   * When the run overlapped some steps only (ROSEDIST_BENCH_ALTERNATE_OVERLAP: odd steps), the
   * two kinds of step side by side, under the same load; else undefined.
   */
  readonly alternating?: { readonly overlap: StepKind; readonly noOverlap: StepKind };
}

/** Steps of one kind: how many, the median step time (a step: its slowest rank), the mean all-reduce phase (ms). */
export interface StepKind {
  readonly steps: number;
  readonly stepMs: number;
  readonly allreduceMs: number;
}

/**
 * Overlap from the trace, over ranks and timed steps: a step's buckets are in flight from their
 * start (mid-backward) to their end; `inFlightMs` is the union of those intervals per step, and
 * `hiddenMs` the part of it before the step's backward ended (its forward_backward span), when
 * the all-reduce cost the step nothing. `hidden` = hiddenMs / inFlightMs. An upper bound on the
 * work hidden: in flight is not moving (the ring moves only when backward yields, and both share
 * the cores); the benchmark's A/B figure (bench_train.ts) is the step time actually saved.
 */
export interface OverlapSummary {
  readonly buckets: number;
  readonly inFlightMs: number;
  readonly hiddenMs: number;
  readonly hidden: number;
}

interface StepSpan {
  start: number;
  end: number;
  phases: Record<StepPhase, number>;
}

const isStepPhase = (name: string): name is StepPhase => (STEP_PHASES as readonly string[]).includes(name);

/**
 * Summarise `trace`, skipping the first `warmup` steps. Throws an Error saying what is missing when
 * the trace has no step after the warm-up, ranks disagree on the steps, or there is no peak RSS.
 */
export function summariseTrace(trace: MergedTrace, warmup: number): TraceSummary {
  // rank → step → span; ts and dur are µs.
  const ranks = new Map<number, Map<number, StepSpan>>();
  // step → rank → µs of its first allreduce span
  const firstAllreduce = new Map<number, Map<number, number>>();
  for (const e of trace.traceEvents) {
    if (e.ph !== 'X' || !isStepPhase(e.name)) continue;
    const step = e.args?.step;
    if (typeof step !== 'number' || step <= warmup) continue;
    const dur = e.dur ?? 0;
    let steps = ranks.get(e.pid);
    if (steps === undefined) ranks.set(e.pid, (steps = new Map()));
    let span = steps.get(step);
    if (span === undefined) {
      span = { start: e.ts, end: e.ts + dur, phases: { data: 0, forward_backward: 0, grad_copy: 0, allreduce: 0, optimizer: 0 } };
      steps.set(step, span);
    }
    span.start = Math.min(span.start, e.ts);
    span.end = Math.max(span.end, e.ts + dur);
    span.phases[e.name] += dur;
    if (e.name === 'allreduce') {
      let byRank = firstAllreduce.get(step);
      if (byRank === undefined) firstAllreduce.set(step, (byRank = new Map()));
      if (!byRank.has(e.pid)) byRank.set(e.pid, dur);
    }
  }
  const overlap = overlapOf(trace, warmup);
  const alternating = alternatingOf(ranks, trace, warmup);
  const peakRssMb = trace.otherData?.peak_rss_mb ?? [];
  const worldSize = ranks.size;
  if (worldSize === 0) throw new Error(`the trace has no training step after the ${warmup} warm-up step(s): pass more --steps`);
  if (peakRssMb.length !== worldSize) throw new Error(`the trace has the peak RSS of ${peakRssMb.length} rank(s), steps of ${worldSize}`);

  const perRank = [...ranks.values()];
  const timedSteps = perRank[0].size;
  if (perRank.some((s) => s.size !== timedSteps)) throw new Error('ranks timed different numbers of steps');
  const phaseMs = { data: 0, forward_backward: 0, grad_copy: 0, allreduce: 0, optimizer: 0 };
  let trainUs = 0;
  let shareSum = 0;
  for (const steps of perRank) {
    let rankUs = 0;
    let allreduceUs = 0;
    for (const span of steps.values()) {
      rankUs += span.end - span.start;
      allreduceUs += span.phases.allreduce;
      for (const p of STEP_PHASES) phaseMs[p] += span.phases[p] / 1000 / (timedSteps * worldSize);
    }
    trainUs = Math.max(trainUs, rankUs);
    shareSum += rankUs > 0 ? allreduceUs / rankUs : 0;
  }
  let collectiveUs = 0;
  let waitUs = 0;
  for (const byRank of firstAllreduce.values()) {
    const durs = [...byRank.values()];
    const least = Math.min(...durs);
    collectiveUs += least;
    waitUs += durs.reduce((a, d) => a + d - least, 0) / durs.length;
  }
  const stepsWithAllreduce = Math.max(1, firstAllreduce.size);
  const allreduceSplitMs = { collective: collectiveUs / 1000 / stepsWithAllreduce, wait: waitUs / 1000 / stepsWithAllreduce };
  return {
    worldSize,
    timedSteps,
    trainSeconds: trainUs / 1e6,
    allreduceShare: shareSum / worldSize,
    phaseMs,
    peakRssMb,
    allreduceSplitMs,
    overlap,
    alternating,
  };
}

/** TraceSummary.alternating from the step spans by rank (µs) and the steps that have bucket events. */
function alternatingOf(ranks: ReadonlyMap<number, ReadonlyMap<number, StepSpan>>, trace: MergedTrace, warmup: number): TraceSummary['alternating'] {
  const bucketed = new Set<number>();
  for (const e of trace.traceEvents) if (e.name === 'allreduce_bucket' && typeof e.args?.step === 'number' && e.args.step > warmup) bucketed.add(e.args.step);
  const steps = [...(ranks.values().next().value?.keys() ?? [])];
  const kinds = [steps.filter((s) => bucketed.has(s)), steps.filter((s) => !bucketed.has(s))];
  if (kinds.some((k) => k.length === 0)) return undefined;
  const [overlap, noOverlap] = kinds.map((list): StepKind => {
    const stepUs = list.map((s) => Math.max(...[...ranks.values()].map((r) => (r.get(s) ? (r.get(s) as StepSpan).end - (r.get(s) as StepSpan).start : 0))));
    const allreduceUs = list.flatMap((s) => [...ranks.values()].map((r) => r.get(s)?.phases.allreduce ?? 0));
    const sorted = [...stepUs].sort((a, b) => a - b);
    return {
      steps: list.length,
      stepMs: (sorted[(sorted.length - 1) >> 1] as number) / 1000,
      allreduceMs: allreduceUs.reduce((a, b) => a + b, 0) / allreduceUs.length / 1000,
    };
  }) as [StepKind, StepKind];
  return { overlap, noOverlap };
}

/** OverlapSummary of the timed steps; undefined without bucket events. */
function overlapOf(trace: MergedTrace, warmup: number): OverlapSummary | undefined {
  // `${rank} ${step}` → bucket intervals [start, end] (µs), and the end of backward.
  const flights = new Map<string, [number, number][]>();
  const backwardEnd = new Map<string, number>();
  let buckets = 0;
  for (const e of trace.traceEvents) {
    const step = e.args?.step;
    if (e.ph !== 'X' || typeof step !== 'number' || step <= warmup) continue;
    const key = `${e.pid} ${step}`;
    if (e.name === 'allreduce_bucket') {
      flights.set(key, [...(flights.get(key) ?? []), [e.ts, e.ts + (e.dur ?? 0)]]);
      buckets = Math.max(buckets, Number(e.args?.bucket ?? 0) + 1);
    } else if (e.name === 'forward_backward') {
      backwardEnd.set(key, Math.max(backwardEnd.get(key) ?? 0, e.ts + (e.dur ?? 0)));
    }
  }
  if (flights.size === 0) return undefined;
  let inFlight = 0;
  let hidden = 0;
  for (const [key, intervals] of flights) {
    const end = backwardEnd.get(key) ?? -Infinity;
    let reach = -Infinity;
    for (const [a, b] of intervals.sort((x, y) => x[0] - y[0])) {
      const lo = Math.max(a, reach);
      if (b > lo) {
        inFlight += b - lo;
        hidden += Math.max(0, Math.min(b, end) - lo);
      }
      reach = Math.max(reach, b);
    }
  }
  const per = 1000 * flights.size;
  return { buckets, inFlightMs: inFlight / per, hiddenMs: hidden / per, hidden: inFlight > 0 ? hidden / inFlight : 0 };
}
