import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { SingleProcessGroup } from '../../worker/comm/process_group.js';
import type { Sample, SampleSet } from '../../worker/data/dataset.js';
import { uniformGenerator } from '../../worker/rng.js';
import { evalChunks, evaluate } from '../../worker/evaluate.js';
import { GPT } from '../../worker/model/gpt.js';
import { initBackend, tf } from '../../worker/tf.js';

const cfg = { vocabSize: 64, maxPositionEmbeddings: 16, nLayers: 1, nHeads: 2, dModel: 16, dFf: 32, dropout: 0.1 };
const T = 8;

/** 11 samples; some labels are -100, including at position 0 (never predicted anyway). */
function valSet(): SampleSet {
  const u = uniformGenerator(42);
  const samples: Sample[] = Array.from({ length: 11 }, (_, i) => {
    const ids = Int32Array.from({ length: T }, () => Math.floor(u() * 64));
    const labels = ids.slice();
    if (i % 3 === 0) labels[0] = -100;
    if (i % 4 === 1) labels[T - 1] = -100;
    if (i === 5) labels.fill(-100, 2, 6);
    return { inputIds: ids, attentionMask: new Int32Array(T).fill(1), labels };
  });
  return { length: samples.length, get: (i) => samples[i] };
}

/** Cross-entropy summed over predicted tokens, computed in float64 from the logits. */
function referenceLoss(model: GPT, set: SampleSet): { lossSum: number; tokens: number } {
  let lossSum = 0;
  let tokens = 0;
  for (let i = 0; i < set.length; i++) {
    const s = set.get(i);
    const logits = model.logits({ ...s, batchSize: 1, seqLen: T }, false);
    const z = logits.dataSync();
    logits.dispose();
    for (let t = 0; t + 1 < T; t++) {
      const y = s.labels[t + 1];
      if (y === -100) continue;
      const row = Array.from(z.subarray(t * 64, (t + 1) * 64));
      const max = Math.max(...row);
      const lse = max + Math.log(row.reduce((a, v) => a + Math.exp(v - max), 0));
      lossSum += lse - row[y];
      tokens += 1;
    }
  }
  return { lossSum, tokens };
}

describe('evaluate', () => {
  before(async () => {
    await initBackend('cpu');
  });

  it('deals chunks of batch-size consecutive samples round-robin, each sample once', () => {
    assert.deepEqual(evalChunks(11, 4, 0, 1), [
      [0, 1, 2, 3],
      [4, 5, 6, 7],
      [8, 9, 10],
    ]);
    assert.deepEqual(evalChunks(11, 4, 0, 2), [
      [0, 1, 2, 3],
      [8, 9, 10],
    ]);
    assert.deepEqual(evalChunks(11, 4, 1, 2), [[4, 5, 6, 7]]);
    assert.deepEqual(evalChunks(11, 4, 2, 3), [[8, 9, 10]]);
    assert.deepEqual(evalChunks(11, 4, 3, 4), []);
    for (const w of [1, 2, 3, 4, 5]) {
      const all = Array.from({ length: w }, (_, r) => evalChunks(23, 3, r, w).flat())
        .flat()
        .sort((a, b) => a - b);
      assert.deepEqual(
        all,
        Array.from({ length: 23 }, (_, i) => i),
      );
    }
  });

  it('counts T-1 predictions per sample minus ignored labels, and averages over tokens', async () => {
    const model = new GPT(cfg, 3);
    try {
      const set = valSet();
      // Independently: 11 samples × 7 predictions; ignored labels at t ≥ 1 are subtracted
      // (i % 4 === 1: samples 1, 5, 9 lose their last; sample 5 loses 4 more).
      const expectedTokens = 11 * (T - 1) - 3 - 4;
      const ref = referenceLoss(model, set);
      assert.equal(ref.tokens, expectedTokens);
      const got = await evaluate(model, set, 4, new SingleProcessGroup());
      assert.equal(got.tokens, expectedTokens);
      assert.ok(Math.abs(got.loss - ref.lossSum / ref.tokens) < 1e-5, `${got.loss} vs ${ref.lossSum / ref.tokens}`);
      assert.equal(got.ppl, Math.exp(got.loss));
      // An untrained model is close to uniform: loss near ln(V).
      assert.ok(Math.abs(got.loss - Math.log(64)) < 0.2);
      // The batch size changes nothing but float32 rounding.
      const one = await evaluate(model, set, 1, new SingleProcessGroup());
      assert.equal(one.tokens, expectedTokens);
      assert.ok(Math.abs(one.loss - got.loss) < 1e-5);
    } finally {
      model.dispose();
    }
    assert.equal(tf.memory().numTensors, 0);
  });
});
