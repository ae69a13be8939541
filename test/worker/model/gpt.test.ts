/**
 * The GPT: parameter count, shapes, the loss against an independent computation from its logits,
 * gradients against central finite differences, masks (padding, causality, ignored labels),
 * determinism, cpu/wasm agreement and tensor leaks. Tiny configs: seconds on the cpu backend.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RosedistError } from '../../../shared/errors.js';
import { countParams, GPT, IGNORE_INDEX, type Batch, type GPTConfig } from '../../../worker/model/gpt.js';
import { initBackend, tf } from '../../../worker/tf.js';

const DEFAULTS: GPTConfig = {
  vocabSize: 10000,
  maxPositionEmbeddings: 128,
  nLayers: 2,
  nHeads: 4,
  dModel: 128,
  dFf: 512,
  dropout: 0.1,
};
const TINY: GPTConfig = { vocabSize: 13, maxPositionEmbeddings: 8, nLayers: 2, nHeads: 2, dModel: 8, dFf: 12, dropout: 0 };

/** A seeded LCG: test data that does not depend on the code under test. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

function randomBatch(cfg: GPTConfig, batchSize: number, seqLen: number, seed: number): Batch {
  const rand = lcg(seed);
  const inputIds = Int32Array.from({ length: batchSize * seqLen }, () => Math.floor(rand() * cfg.vocabSize));
  return { inputIds, attentionMask: new Int32Array(batchSize * seqLen).fill(1), labels: inputIds.slice(), batchSize, seqLen };
}

/** Overwrite the weights with N(0, std^2)-ish values so every path carries a sizeable gradient. */
function randomizeWeights(model: GPT, std: number, seed: number): void {
  const rand = lcg(seed);
  const flat = new Float32Array(model.numParams);
  for (let i = 0; i < flat.length; i++) flat[i] = (rand() + rand() + rand() - 1.5) * 2 * std;
  model.writeFlat(flat);
}

/** Mean cross-entropy computed in float64 from the model's logits: the reference for the loss. */
function referenceLoss(model: GPT, batch: Batch): { lossSum: number; tokens: number } {
  const logits = model.logits(batch, false);
  const z = logits.dataSync();
  logits.dispose();
  const V = model.config.vocabSize;
  let lossSum = 0;
  let tokens = 0;
  for (let b = 0; b < batch.batchSize; b++) {
    for (let t = 0; t + 1 < batch.seqLen; t++) {
      const y = batch.labels[b * batch.seqLen + t + 1] as number;
      if (y === IGNORE_INDEX) continue;
      const row = (b * batch.seqLen + t) * V;
      let max = -Infinity;
      for (let v = 0; v < V; v++) max = Math.max(max, z[row + v] as number);
      let sum = 0;
      for (let v = 0; v < V; v++) sum += Math.exp((z[row + v] as number) - max);
      lossSum += max + Math.log(sum) - (z[row + y] as number);
      tokens += 1;
    }
  }
  return { lossSum, tokens };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (b[i] as number)));
  return m;
}

describe('GPT on the cpu backend', () => {
  before(async () => {
    await initBackend('cpu');
  });

  it('has 2,973,184 parameters at the defaults, in variables of the declared shapes', () => {
    assert.equal(countParams(DEFAULTS), 2_973_184);
    const model = new GPT(DEFAULTS, 0);
    try {
      assert.equal(model.numParams, 2_973_184);
      const total = model.params.reduce((n, p) => n + p.variable.size, 0);
      assert.equal(total, 2_973_184);
      for (const p of model.params) assert.deepEqual(p.variable.shape, [...p.shape], p.name);
      assert.equal(new Set(model.params.map((p) => p.name)).size, model.params.length);
      assert.equal(model.params[0]?.name, 'token_embedding.weight');
      assert.deepEqual(model.params.at(-1)?.shape, [128, 10000]); // untied head, no bias
    } finally {
      model.dispose();
    }
  });

  it('returns logits [B, T, V] and an initial loss near ln(V) on random tokens', () => {
    const cfg = { ...TINY, vocabSize: 64, maxPositionEmbeddings: 16 };
    const model = new GPT(cfg, 1);
    try {
      const batch = randomBatch(cfg, 3, 16, 2);
      const logits = model.logits(batch, false);
      assert.deepEqual(logits.shape, [3, 16, 64]);
      logits.dispose();
      const { lossSum, tokens } = model.evalBatch(batch);
      assert.equal(tokens, 3 * 15);
      assert.ok(Math.abs(lossSum / tokens - Math.log(64)) < 0.05, `initial loss ${lossSum / tokens}`);
    } finally {
      model.dispose();
    }
  });

  it('computes the loss of the original: shifted, ignoring -100, over predicted tokens only', () => {
    const model = new GPT(TINY, 3);
    try {
      randomizeWeights(model, 0.5, 4);
      const batch = randomBatch(TINY, 2, 6, 5);
      const labels = batch.labels.slice();
      labels[2] = IGNORE_INDEX; // the prediction from position 1 of sequence 0
      labels[6] = IGNORE_INDEX; // position 0 of sequence 1: never predicted anyway
      labels[11] = IGNORE_INDEX; // the last prediction of sequence 1
      const masked = { ...batch, labels };
      const ref = referenceLoss(model, masked);
      assert.equal(ref.tokens, 2 * 5 - 2);
      const got = model.evalBatch(masked);
      assert.equal(got.tokens, ref.tokens);
      assert.ok(Math.abs(got.lossSum - ref.lossSum) < 1e-4 * ref.lossSum, `${got.lossSum} vs ${ref.lossSum}`);
      const grads = new Float32Array(model.numParams);
      const step = model.trainStep(masked, 0, grads);
      assert.equal(step.tokens, ref.tokens);
      assert.ok(Math.abs(step.loss - ref.lossSum / ref.tokens) < 1e-5, `${step.loss} vs ${ref.lossSum / ref.tokens}`);
    } finally {
      model.dispose();
    }
  });

  it('matches central finite differences of the mean loss on every parameter tensor', () => {
    const model = new GPT(TINY, 6);
    try {
      randomizeWeights(model, 0.4, 7);
      // Two sequences, one padded at the end; a repeated token (the embedding gradient sums rows).
      const batch = randomBatch(TINY, 2, 7, 8);
      const attentionMask = batch.attentionMask.slice();
      const labels = batch.labels.slice();
      attentionMask[13] = 0;
      labels[13] = IGNORE_INDEX;
      labels[3] = IGNORE_INDEX;
      const inputIds = batch.inputIds.slice();
      inputIds[5] = inputIds[1] as number;
      const b = { ...batch, inputIds, attentionMask, labels };
      const grads = new Float32Array(model.numParams);
      model.trainStep(b, 0, grads);
      const flat = new Float32Array(model.numParams);
      model.readFlat(flat);
      const meanLoss = (w: Float32Array) => {
        model.writeFlat(w);
        const r = model.evalBatch(b);
        return r.lossSum / r.tokens;
      };
      const rand = lcg(9);
      // float32: rounding error of a loss ~2.5 is ~3e-7, so eps 1e-2 keeps it near 3e-5 in the
      // quotient while the O(eps^2) truncation stays smaller; measured worst case 1.2e-5.
      const eps = 1e-2;
      let offset = 0;
      let checked = 0;
      for (const p of model.params) {
        const size = p.variable.size;
        // The coordinate with the largest gradient, and two at random.
        let top = offset;
        for (let i = offset; i < offset + size; i++) if (Math.abs(grads[i] as number) > Math.abs(grads[top] as number)) top = i;
        for (const i of [top, offset + Math.floor(rand() * size), offset + Math.floor(rand() * size)]) {
          const w = flat.slice();
          w[i] = (flat[i] as number) + eps;
          const up = meanLoss(w);
          w[i] = (flat[i] as number) - eps;
          const down = meanLoss(w);
          const fd = (up - down) / (2 * eps);
          const g = grads[i] as number;
          assert.ok(Math.abs(fd - g) <= 5e-5 + 5e-3 * Math.abs(g), `${p.name}[${i - offset}]: analytic ${g}, finite difference ${fd}`);
          checked += 1;
        }
        // The largest gradient must be a real one: the check above would pass on zeros.
        assert.ok(Math.abs(grads[top] as number) > 1e-3, `${p.name}: largest gradient ${grads[top]}`);
        offset += size;
      }
      assert.equal(checked, 3 * model.params.length);
    } finally {
      model.dispose();
    }
  });

  it('ignores padded keys: changing a padded token leaves the loss of the others unchanged', () => {
    const model = new GPT(TINY, 10);
    try {
      randomizeWeights(model, 0.5, 11);
      const batch = randomBatch(TINY, 2, 6, 12);
      const attentionMask = batch.attentionMask.slice();
      const labels = batch.labels.slice();
      attentionMask[2] = 0; // sequence 0, position 2 is padding...
      labels[3] = IGNORE_INDEX; // ...so its own prediction is not scored
      const a = { ...batch, attentionMask, labels };
      const inputIds = a.inputIds.slice();
      inputIds[2] = ((inputIds[2] as number) + 5) % TINY.vocabSize;
      const before = model.evalBatch(a);
      const after = model.evalBatch({ ...a, inputIds });
      assert.equal(after.tokens, before.tokens);
      assert.ok(Math.abs(after.lossSum - before.lossSum) < 1e-5, `${before.lossSum} vs ${after.lossSum}`);
      // Without the mask the same change does reach the other positions.
      const unmasked = model.evalBatch({ ...a, attentionMask: batch.attentionMask, inputIds });
      assert.ok(Math.abs(unmasked.lossSum - before.lossSum) > 1e-3);
    } finally {
      model.dispose();
    }
  });

  it('is causal: a later token does not change earlier logits', () => {
    const model = new GPT(TINY, 13);
    try {
      randomizeWeights(model, 0.5, 14);
      const T = 7;
      const batch = randomBatch(TINY, 1, T, 15);
      const inputIds = batch.inputIds.slice();
      inputIds[4] = ((inputIds[4] as number) + 3) % TINY.vocabSize;
      const l1 = model.logits(batch, false);
      const l2 = model.logits({ ...batch, inputIds }, false);
      const [a, b] = [l1.dataSync(), l2.dataSync()];
      tf.dispose([l1, l2]);
      const V = TINY.vocabSize;
      assert.ok(maxAbsDiff(a.subarray(0, 4 * V), b.subarray(0, 4 * V)) < 1e-6);
      assert.ok(maxAbsDiff(a.subarray(4 * V), b.subarray(4 * V)) > 1e-3);
    } finally {
      model.dispose();
    }
  });

  it('gives identical weights for the same seed and different ones for another', () => {
    const [m1, m2, m3] = [new GPT(TINY, 42), new GPT(TINY, 42), new GPT(TINY, 43)];
    try {
      const [a, b, c] = [m1, m2, m3].map((m) => {
        const f = new Float32Array(m.numParams);
        m.readFlat(f);
        return f;
      });
      assert.deepEqual(a, b);
      assert.notDeepEqual(a, c);
      // nanoGPT's init: N(0, 0.02) weights, LayerNorm 1/0.
      const tok = a!.subarray(0, TINY.vocabSize * TINY.dModel);
      const std = Math.sqrt(tok.reduce((s, x) => s + x * x, 0) / tok.length);
      assert.ok(std > 0.015 && std < 0.025, `token embedding std ${std}`);
    } finally {
      [m1, m2, m3].forEach((m) => m.dispose());
    }
  });

  it('makes dropout reproducible from the seed and leaves eval mode without it', () => {
    const model = new GPT({ ...TINY, dropout: 0.3 }, 16);
    try {
      const batch = randomBatch(TINY, 2, 6, 17);
      const [g1, g2, g3] = [0, 1, 2].map(() => new Float32Array(model.numParams)) as [Float32Array, Float32Array, Float32Array];
      const r1 = model.trainStep(batch, 5, g1);
      const r2 = model.trainStep(batch, 5, g2);
      const r3 = model.trainStep(batch, 6, g3);
      assert.equal(r1.loss, r2.loss);
      assert.deepEqual(g1, g2);
      assert.notEqual(r1.loss, r3.loss);
      assert.equal(model.evalBatch(batch).lossSum, model.evalBatch(batch).lossSum);
    } finally {
      model.dispose();
    }
  });

  it('copies in writeFlat and returns zero loss and gradients with nothing to predict', () => {
    const model = new GPT(TINY, 18);
    try {
      const w = new Float32Array(model.numParams).fill(0.25);
      model.writeFlat(w);
      w.fill(7);
      const back = new Float32Array(model.numParams);
      model.readFlat(back);
      assert.ok(back.every((x) => x === 0.25));
      const batch = randomBatch(TINY, 1, 4, 19);
      const grads = new Float32Array(model.numParams).fill(1);
      const r = model.trainStep({ ...batch, labels: new Int32Array(4).fill(IGNORE_INDEX) }, 0, grads);
      assert.deepEqual(r, { loss: 0, tokens: 0 });
      assert.ok(grads.every((g) => g === 0));
    } finally {
      model.dispose();
    }
  });

  it('leaks no tensors', () => {
    const model = new GPT({ ...TINY, dropout: 0.1 }, 20);
    try {
      const batch = randomBatch(TINY, 2, 5, 21);
      const grads = new Float32Array(model.numParams);
      const flat = new Float32Array(model.numParams);
      model.trainStep(batch, 0, grads); // first call may create lasting state; count from here
      const before = tf.memory().numTensors;
      model.trainStep(batch, 1, grads);
      model.evalBatch(batch);
      model.logits(batch, true, 3).dispose();
      model.readFlat(flat);
      model.writeFlat(flat);
      assert.equal(tf.memory().numTensors, before);
    } finally {
      model.dispose();
    }
  });

  it('rejects malformed batches and buffers with one clear error', () => {
    const model = new GPT(TINY, 22);
    try {
      const ok = randomBatch(TINY, 1, 4, 23);
      const grads = new Float32Array(model.numParams);
      const long = randomBatch(TINY, 1, TINY.maxPositionEmbeddings + 1, 24);
      assert.throws(
        () => model.evalBatch(long),
        (e: unknown) => e instanceof RosedistError && /maxPositionEmbeddings/.test(e.message),
      );
      assert.throws(
        () => model.trainStep({ ...ok, inputIds: Int32Array.from([0, 1, 99, 2]) }, 0, grads),
        (e: unknown) => e instanceof RosedistError && /outside the vocabulary/.test(e.message),
      );
      assert.throws(() => model.evalBatch({ ...ok, labels: Int32Array.from([0, 1, -5, 2]) }), RosedistError);
      assert.throws(() => model.evalBatch({ ...ok, attentionMask: new Int32Array(3) }), RosedistError);
      assert.throws(() => model.trainStep(ok, 0, new Float32Array(5)), RosedistError);
      assert.throws(() => new GPT({ ...TINY, nHeads: 3 }, 0), /multiple of nHeads/);
    } finally {
      model.dispose();
    }
  });
});

describe('GPT: wasm against cpu', () => {
  after(async () => {
    await initBackend('cpu');
  });

  /** Logits, loss and gradients of one train step, computed on the given backend. */
  async function run(backend: 'cpu' | 'wasm', cfg: GPTConfig, batch: Batch) {
    await initBackend(backend);
    const model = new GPT(cfg, 30);
    try {
      const flat = new Float32Array(model.numParams);
      model.readFlat(flat);
      const logits = model.logits(batch, false);
      const z = logits.dataSync().slice();
      logits.dispose();
      const grads = new Float32Array(model.numParams);
      const before = tf.memory().numTensors;
      const { loss } = model.trainStep(batch, 31, grads);
      assert.equal(tf.memory().numTensors, before, `${backend}: trainStep leaked tensors`);
      return { flat, z, loss, grads };
    } finally {
      model.dispose();
    }
  }

  for (const [label, cfg, T] of [
    ['a tiny model', { ...TINY, dropout: 0.2 }, 6],
    // dh 16 at T 128: wasm runs attention as per-head 2-D matMuls (the long-sequence path).
    [
      'T 128 (per-head attention matMuls on wasm)',
      { ...TINY, vocabSize: 40, maxPositionEmbeddings: 128, nLayers: 1, nHeads: 2, dModel: 32, dFf: 48, dropout: 0.1 },
      128,
    ],
  ] as const) {
    it(`agrees on weights, logits, loss and gradients: ${label}`, async () => {
      const batch = randomBatch(cfg, 2, T, 32);
      const mask = batch.attentionMask.slice();
      mask[T - 1] = 0;
      const b = { ...batch, attentionMask: mask };
      const cpu = await run('cpu', cfg, b);
      const wasm = await run('wasm', cfg, b);
      assert.deepEqual(wasm.flat, cpu.flat); // initialisation is backend-independent, bit for bit
      assert.ok(maxAbsDiff(wasm.z, cpu.z) < 1e-5, `logits differ by ${maxAbsDiff(wasm.z, cpu.z)}`);
      assert.ok(Math.abs(wasm.loss - cpu.loss) < 1e-5);
      const scale = cpu.grads.reduce((m, g) => Math.max(m, Math.abs(g)), 0);
      assert.ok(maxAbsDiff(wasm.grads, cpu.grads) < 1e-4 * scale, `gradients differ by ${maxAbsDiff(wasm.grads, cpu.grads)} (max ${scale})`);
    });
  }
});
