/**
 * Exact distributed evaluation: the token-weighted mean loss over the whole validation split,
 * each sample counted exactly once whatever the world size (no sampler padding).
 *
 * The split is cut into chunks of `batchSize` consecutive samples, dealt round-robin: rank r
 * evaluates chunks r, r+W, r+2W, ... Each chunk is one GPT.evalBatch call, so its float32 loss
 * sum is the same number whichever rank computes it; ranks add their chunks in float64 and one
 * all-reduce sums the [lossSum, tokens] pair. Val loss = lossSum / tokens (nats per predicted
 * token: T-1 per sample minus labels of -100), ppl = exp(val loss).
 */
import { RosedistError } from '../shared/errors.js';
import type { ProcessGroup } from './comm/process_group.js';
import { collate } from './data/collate.js';
import type { SampleSet } from './data/dataset.js';
/** What evaluation needs of a model (GPT; TensorParallelGPT, whose evalBatch is a TP collective). */
export interface EvalModel {
  evalBatch(batch: ReturnType<typeof collate>): { lossSum: number; tokens: number } | Promise<{ lossSum: number; tokens: number }>;
}

export interface EvalResult {
  /** Mean cross-entropy per predicted token, nats. */
  readonly loss: number;
  readonly ppl: number;
  /** Predicted tokens over the whole split, all ranks together. */
  readonly tokens: number;
}

/** The sample indices of the chunks rank `rank` of `worldSize` evaluates, one array per chunk. */
export function evalChunks(size: number, batchSize: number, rank: number, worldSize: number): number[][] {
  const chunks: number[][] = [];
  for (let start = rank * batchSize; start < size; start += worldSize * batchSize) {
    const end = Math.min(start + batchSize, size);
    chunks.push(Array.from({ length: end - start }, (_, i) => start + i));
  }
  return chunks;
}

/** Evaluate `model` on `val` over the group (a collective: every rank calls it). With tensor parallelism `pg` is the DP group: TP peers hold the same loss. */
export async function evaluate(model: EvalModel, val: SampleSet, batchSize: number, pg: ProcessGroup): Promise<EvalResult> {
  const totals = new Float64Array(2); // [lossSum, tokens]
  for (const chunk of evalChunks(val.length, batchSize, pg.rank, pg.worldSize)) {
    const { lossSum, tokens } = await model.evalBatch(collate(val, chunk));
    totals[0] += lossSum;
    totals[1] += tokens;
  }
  await pg.allReduce(totals, 'sum');
  const [lossSum, tokens] = totals;
  if (tokens === 0) {
    throw new RosedistError('the validation split has no predicted tokens (every label is -100)', 'check the dataset');
  }
  const loss = lossSum / tokens;
  return { loss, ppl: Math.exp(loss), tokens };
}
