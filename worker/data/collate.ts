/**
 * Samples → one Batch: row-major [B, T] Int32Arrays, as GPT.trainStep/evalBatch take them.
 */
import type { SampleSet } from './dataset.js';

/** A batch in row-major [B, T] int32 arrays. labels === -100 (IGNORE_INDEX, model/gpt.ts) are ignored. */
export interface Batch {
  readonly inputIds: Int32Array;
  readonly attentionMask: Int32Array;
  readonly labels: Int32Array;
  readonly batchSize: number;
  readonly seqLen: number;
}

/** The samples of `set` at `indices`, stacked. All samples must have the same length T. */
export function collate(set: SampleSet, indices: readonly number[]): Batch {
  const B = indices.length;
  if (B === 0) throw new RangeError('collate: no samples');
  const T = set.get(indices[0]).inputIds.length;
  const inputIds = new Int32Array(B * T);
  const attentionMask = new Int32Array(B * T);
  const labels = new Int32Array(B * T);
  indices.forEach((index, b) => {
    const s = set.get(index);
    if (s.inputIds.length !== T || s.attentionMask.length !== T || s.labels.length !== T) {
      throw new RangeError(`collate: sample ${index} has length ${s.inputIds.length}, expected ${T}`);
    }
    inputIds.set(s.inputIds, b * T);
    attentionMask.set(s.attentionMask, b * T);
    labels.set(s.labels, b * T);
  });
  return { inputIds, attentionMask, labels, batchSize: B, seqLen: T };
}
