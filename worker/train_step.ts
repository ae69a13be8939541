/**
 * One optimizer step of the training loop (trainer.ts): the micro-batches' forward and backward,
 * the gradient collective, the non-finite check, the AdamW step. Its collectives, numbered as in
 * trainer.ts's list (every rank calls each, in the same order; ddp.ts, zero.ts, numerics.ts):
 *   5 averageGradients (or, with --zero 1, averageGradientShards and, after the shard's AdamW
 *     step, 6 ShardedAdamW.gatherParams), 7 checkStep (a collective only when the step is not finite).
 * With --overlap, 5 is one all-reduce per bucket (ddp_overlap.ts), started during the last
 * micro-batch's backward and awaited before 7. With --tensor-parallel-size K each micro-batch's
 * train step is a collective of the TP group (model/tp_gpt.ts), 5 and 7 run over the DP group,
 * and 7 is preceded by a 4-byte all-reduce over the TP group (shareNonFinite).
 * The step buffer [grads | loss] that the per-step collectives average is grad_buffer.ts.
 *
 * Per optimizer step, each rank takes its next `batchSize` samples from its shard, `gradAccumSteps`
 * times; gradients (of each micro-batch's mean loss) are averaged over micro-batches, then over
 * ranks; every rank applies the same AdamW step to its flat parameter copy and writes it back to
 * the model (with --zero 1 each rank steps its shard, then the shards are all-gathered).
 */
import type { Logger } from '../shared/logging.js';
import type { Mesh } from './comm/mesh.js';
import type { ProcessGroup } from './comm/process_group.js';
import type { TrainConfig } from './config.js';
import { collate } from './data/collate.js';
import type { TokenDataset } from './data/dataset.js';
import type { ShardStream } from './data/sampler.js';
import { averageGradients, averageGradientShards } from './ddp.js';
import { EmbeddingRows, sparseRowsFor } from './ddp_sparse.js';
import { BucketedAllReduce, describeBuckets, overlapsStep, waitForBuckets } from './ddp_overlap.js';
import { GradBuffer } from './grad_buffer.js';
import { GPT } from './model/gpt.js';
import { checkStep, firstNonFinite } from './numerics.js';
import type { Profiler } from './observe/profiler.js';
import type { AdamW } from './optim.js';
import { mixSeed } from './rng.js';
import { shareNonFinite } from './tensor_parallel.js';
import type { TestHooks } from './test_hooks.js';
import type { Model } from './train_start.js';
import type { ShardedAdamW } from './zero.js';

/** What a step works on; made once, before the first step. */
export interface StepParts {
  readonly cfg: TrainConfig;
  readonly pg: ProcessGroup;
  readonly mesh: Mesh;
  readonly logger: Logger;
  readonly model: Model;
  readonly dataset: TokenDataset;
  /** This rank's shard of the training samples (the loop checkpoints its state). */
  readonly stream: ShardStream;
  /** The master copy of the weights (train_start.ts); updated in place by a step taken. */
  readonly params: Float32Array;
  readonly optimizer: AdamW;
  readonly zero: ShardedAdamW | undefined;
  readonly profiler: Profiler;
  readonly hooks: TestHooks;
}

export interface StepOutcome {
  /** The step's loss: the mean over micro-batches and DP ranks (reported even when skipped). */
  readonly loss: number;
  /** checkStep's description of a non-finite step whose update was skipped; undefined: the update was applied. */
  readonly nonFinite: string | undefined;
}

/** The step buffer's floats after the sparse head, for the log. */
const floatsAfterHead = (numParams: number, head: number): string => (numParams + 1 - head).toLocaleString('en-US');

export class TrainStep {
  /** The step buffer [grads | loss] that one collective averages over ranks (grad_buffer.ts). */
  private readonly gb: GradBuffer;
  /** --overlap's buckets; undefined: one collective after backward. */
  private readonly buckets: BucketedAllReduce | undefined;
  /** The token embedding's gradient as sparse rows in the step's collective (ddp_sparse.ts); undefined: dense. */
  private readonly sparse: EmbeddingRows | undefined;

  constructor(private readonly parts: StepParts) {
    const { cfg, mesh, model, zero, profiler, logger } = parts;
    const dp = mesh.dp;
    this.gb = new GradBuffer(model.numParams, cfg.gradAccumSteps);
    // --overlap (ddp_overlap.ts): the dense model over a DP group of 2 or more, without ZeRO
    // (config.ts turns it off with --zero 1 or tensor parallelism).
    this.buckets =
      cfg.overlap && zero === undefined && model instanceof GPT && dp.worldSize > 1
        ? new BucketedAllReduce(
            dp,
            this.gb,
            model.params.map((p) => p.shape.reduce((a, b) => a * b, 1)),
            cfg.bucketMb * 2 ** 20,
            cfg.gradCompression,
            profiler,
          )
        : undefined;
    if (this.buckets !== undefined) logger.info(describeBuckets(this.buckets.buckets, cfg.bucketMb));
    // The dense GPT's step buffer starts with the token embedding's gradient [V, C] (model/params.ts).
    const head =
      cfg.sparseEmbeddingGrad && zero === undefined && model instanceof GPT
        ? sparseRowsFor(cfg.vocabSize, cfg.dModel, cfg.batchSize * cfg.seqLen * cfg.gradAccumSteps, dp.worldSize)
        : undefined;
    this.sparse = head === undefined ? undefined : new EmbeddingRows(head);
    if (head !== undefined) {
      const { rows, maxRows, width } = head;
      logger.info(
        `token embedding gradient as sparse rows: each rank's at most ${maxRows} of ${rows} rows, in slots of the one all-reduce with the other ${floatsAfterHead(model.numParams, rows * width)} floats`,
      );
    }
  }

  /** Optimizer step `step` (1-based): backward, the collectives, and the update unless it is skipped. */
  async run(step: number): Promise<StepOutcome> {
    const { cfg, pg, mesh, model, dataset, stream, params, optimizer, zero, profiler, hooks } = this.parts;
    const { gb, buckets } = this;
    const dp = mesh.dp;
    const n = model.numParams;
    const overlapNow = buckets !== undefined && overlapsStep(step);
    for (let k = 0; k < cfg.gradAccumSteps; k++) {
      profiler.begin('data');
      const batch = collate(dataset.train, stream.take(cfg.batchSize));
      profiler.end('data');
      if (!overlapNow) this.sparse?.touch(batch.inputIds);
      // Dropout seeds by DP rank: TP peers draw the same masks outside their parallel regions.
      const seed = mixSeed(cfg.seed, step, k, dp.rank);
      if (overlapNow && buckets !== undefined && model instanceof GPT && k === cfg.gradAccumSteps - 1) {
        // The last micro-batch's backward starts the buckets' all-reduces as it goes (and folds
        // the micro-batches' gradients bucket by bucket); the poisoning hook hits index 0, in the last bucket.
        buckets.begin((r) => {
          if (r.lo === 0) hooks.poisonGradient(step, pg.rank, gb.grads);
        });
        await profiler.span('forward_backward', () => model.trainStepOverlapped(batch, seed, gb.microGrads(), buckets));
        continue;
      }
      // trainStep also copies the gradients out of the backend (flat, float32).
      profiler.begin('forward_backward');
      const { loss } = await model.trainStep(batch, seed, gb.microGrads());
      profiler.end('forward_backward');
      profiler.begin('grad_copy');
      gb.accumulate(loss);
      if (k === cfg.gradAccumSteps - 1) gb.average();
      profiler.end('grad_copy');
    }
    if (!overlapNow) hooks.poisonGradient(step, pg.rank, gb.grads);
    // `mine`: where this rank's own buffer was bad, found before the sum; reported only if the sum is bad.
    let nonFinite: string | undefined;
    /** Buckets whose AdamW update already ran (overlap with --on-nonfinite stop: as each arrived). */
    let updatedEarly = 0;
    if (overlapNow && buckets !== undefined) {
      // With --on-nonfinite stop a bad step ends the run, so a reduced, finite bucket can take
      // its update while later ones are in flight; with skip, no update before all are checked.
      const early = cfg.onNonfinite === 'stop';
      const at = early ? optimizer.beginStep() : undefined;
      let finiteSoFar = true;
      const mine = await waitForBuckets(profiler, buckets, (r) => {
        const hi = Math.min(r.hi, n);
        finiteSoFar &&= firstNonFinite(gb.flat.subarray(r.lo, r.hi)) < 0;
        if (at === undefined || !finiteSoFar) return;
        optimizer.stepRange(params, gb.grads, r.lo, hi, at);
        (model as GPT).writeRange(params, r.lo, hi);
        updatedEarly += 1;
      });
      nonFinite = await checkStep(dp, step, mine, gb, cfg.onNonfinite, finiteSoFar);
      if (nonFinite === undefined && early && updatedEarly !== buckets.buckets.length) {
        throw new Error(`overlap: a finite step updated ${updatedEarly} of ${buckets.buckets.length} buckets`);
      }
    } else if (zero === undefined) {
      const mine = await profiler.span('allreduce', () => averageGradients(dp, gb, cfg.gradCompression, this.sparse));
      if (mesh.tpSize > 1) await shareNonFinite(mesh.tp, gb);
      nonFinite = await checkStep(dp, step, mine, gb, cfg.onNonfinite);
    } else {
      const { mine, finite } = await profiler.span('allreduce', () => averageGradientShards(pg, gb, cfg.gradCompression));
      nonFinite = await checkStep(pg, step, mine, gb, cfg.onNonfinite, finite);
    }
    const loss = gb.loss;
    if (nonFinite === undefined) {
      profiler.begin('optimizer');
      if (updatedEarly > 0) {
        // Overlap: every bucket's update already ran as it arrived (above).
      } else if (zero === undefined) {
        optimizer.step(params, gb.grads);
      } else {
        // ZeRO: this rank's shard, then the all-gather (a second `allreduce` span in the trace).
        zero.step(gb.grads);
        profiler.end('optimizer');
        await profiler.span('allreduce', () => zero.gatherParams());
        profiler.begin('optimizer');
      }
      if (updatedEarly === 0) model.writeFlat(params);
      profiler.end('optimizer');
    }
    return { loss, nonFinite };
  }
}
