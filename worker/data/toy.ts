/**
 * The Python original's toy dataset: `samples` sequences of T uniformly random tokens in [0, V),
 * labels = input ids (the model shifts them), attention mask all ones; split 80/20 into train and
 * validation by a seeded permutation. Nothing to learn beyond the unigram distribution, so the
 * val loss stays near ln(V).
 */
import type { DatasetOptions, Sample, SampleSet, TokenDataset } from './dataset.js';
import { mixSeed, permutation, uniformGenerator } from '../rng.js';

/** The original's size. */
export const TOY_SAMPLES = 1000;

/** The samples at `indices` of a [samples, T] token table. */
function subset(tokens: Int32Array, seqLen: number, indices: Uint32Array): SampleSet {
  const mask = new Int32Array(seqLen).fill(1);
  return {
    length: indices.length,
    get(i: number): Sample {
      if (!(i >= 0 && i < indices.length)) throw new RangeError(`sample ${i} is not in [0, ${indices.length})`);
      const row = indices[i] * seqLen;
      const ids = tokens.subarray(row, row + seqLen);
      return { inputIds: ids, attentionMask: mask, labels: ids };
    },
  };
}

export function toyDataset(opts: DatasetOptions, samples = TOY_SAMPLES): TokenDataset {
  const { seqLen, vocabSize, seed } = opts;
  // Separate streams for the tokens and the split, so that neither shifts the other.
  const u = uniformGenerator(mixSeed(seed, 1));
  const tokens = new Int32Array(samples * seqLen);
  for (let i = 0; i < tokens.length; i++) tokens[i] = Math.floor(u() * vocabSize);
  const order = permutation(samples, mixSeed(seed, 2));
  const nTrain = Math.floor((samples * 4) / 5);
  const train = subset(tokens, seqLen, order.subarray(0, nTrain));
  const val = subset(tokens, seqLen, order.subarray(nTrain));
  return {
    name: samples === TOY_SAMPLES ? 'toy' : `toy:${samples}`,
    description:
      `toy: ${samples} samples of ${seqLen} random tokens in [0, ${vocabSize}) (seed ${seed}), ` +
      `train ${train.length}, val ${val.length}`,
    minVocabSize: vocabSize,
    train,
    val,
  };
}
