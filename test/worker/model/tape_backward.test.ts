/**
 * Backward by the tape walk (model/tape_backward.ts): GPT.trainStep and GPT.trainStepOverlapped
 * give tf.variableGrads's gradients (GPT.trainStepTfjs) bit for bit (wasm and cpu, dropout on);
 * the walk frees activations as it goes (a lower high-water mark of the backend's bytes); the
 * overlapped one reports every parameter once with its final gradient, the LM head first and the
 * token embedding last, the event loop running between pieces; no tensor is left behind.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GPT, IGNORE_INDEX, type Batch, type GPTConfig } from '../../../worker/model/gpt.js';
import { initBackend, tf } from '../../../worker/tf.js';
import { onWasmBackend } from '../../helpers/wasm_backend.js';

const CFG: GPTConfig = { vocabSize: 300, maxPositionEmbeddings: 32, nLayers: 3, nHeads: 4, dModel: 32, dFf: 64, dropout: 0.1 };

function batchOf(cfg: GPTConfig, batchSize: number, seqLen: number, seed: number): Batch {
  let s = seed >>> 0;
  const rand = (): number => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296;
  const inputIds = Int32Array.from({ length: batchSize * seqLen }, () => Math.floor(rand() * cfg.vocabSize));
  return { inputIds, attentionMask: new Int32Array(batchSize * seqLen).fill(1), labels: inputIds.slice(), batchSize, seqLen };
}

describe('overlapped backward', () => {
  onWasmBackend();

  for (const backend of ['wasm', 'cpu'] as const) {
    it(`trainStep gives tf.variableGrads's gradients and loss bit for bit, and leaves no tensor behind (${backend})`, async () => {
      await initBackend(backend);
      const model = new GPT(CFG, 5);
      const batch = batchOf(CFG, 3, 12, 17);
      const want = new Float32Array(model.numParams);
      const got = new Float32Array(model.numParams).fill(Number.NaN);
      for (const seed of [1, 2]) {
        const ref = model.trainStepTfjs(batch, seed, want);
        const tensors = tf.memory().numTensors;
        const r = model.trainStep(batch, seed, got);
        assert.equal(tf.memory().numTensors, tensors);
        assert.deepEqual(r, ref);
        assert.deepEqual(Buffer.from(got.buffer), Buffer.from(want.buffer), `bit-identical gradients, dropout seed ${seed}`);
      }
      model.dispose();
      await initBackend('wasm');
    });
  }

  it('frees activations as it walks: a lower peak of backend bytes than tf.variableGrads', async () => {
    // tfjs's engine counts the bytes of live tensors; tf.profile reports their peak during a call.
    const model = new GPT({ ...CFG, nLayers: 4 }, 2);
    const batch = batchOf(CFG, 4, 32, 3);
    const grads = new Float32Array(model.numParams);
    const tfjs = (await tf.profile(() => void model.trainStepTfjs(batch, 1, grads))).peakBytes;
    const walk = (await tf.profile(() => void model.trainStep(batch, 1, grads))).peakBytes;
    model.dispose();
    assert.ok(walk < 0.7 * tfjs, `peak bytes: walk ${walk}, tf.variableGrads ${tfjs}`);
  });

  it('trainStepOverlapped gives tf.variableGrads’s gradients and loss bit for bit, each parameter once, head first, embedding last', async () => {
    const model = new GPT(CFG, 3);
    const batch = batchOf(CFG, 4, 16, 11);
    const plain = new Float32Array(model.numParams);
    const ref = model.trainStepTfjs(batch, 42, plain);
    const overlapped = new Float32Array(model.numParams).fill(Number.NaN);
    const ranges: [number, number][] = [];
    let sunkLoss: number | undefined;
    let turns = 0;
    const ticker = setInterval(() => (turns += 1), 0);
    const got = await model.trainStepOverlapped(
      batch,
      42,
      overlapped,
      {
        loss: (l) => {
          assert.equal(ranges.length, 0, 'the loss comes before any gradient');
          sunkLoss = l;
        },
        ready: (lo, hi) => {
          // Final when reported: the values are already there.
          assert.ok(overlapped.subarray(lo, hi).every((v) => !Number.isNaN(v)));
          ranges.push([lo, hi]);
        },
      },
      0,
    );
    clearInterval(ticker);
    assert.equal(got.loss, ref.loss);
    assert.equal(sunkLoss, ref.loss);
    assert.equal(got.tokens, ref.tokens);
    assert.deepEqual(Buffer.from(overlapped.buffer), Buffer.from(plain.buffer), 'bit-identical gradients');
    // Every parameter exactly once.
    const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
    assert.equal(sorted.length, model.params.length);
    sorted.forEach(([lo, hi], i) => {
      assert.equal(lo, i === 0 ? 0 : sorted[i - 1]?.[1]);
      assert.equal(
        hi - lo,
        model.params[i]?.shape.reduce((a, b) => a * b, 1),
      );
    });
    const order = ranges.map(([lo]) => sorted.findIndex(([l]) => l === lo));
    const name = (i: number | undefined): string => model.params[i ?? -1]?.name ?? '?';
    assert.equal(name(order[0]), 'lm_head.weight');
    assert.equal(name(order.at(-1)), 'token_embedding.weight');
    // The loop ran between pieces (a timer fired while backward was in progress).
    assert.ok(turns > 0, 'backward yielded to the event loop');
    model.dispose();
  });

  it('leaves no tensor behind, and a batch with nothing to predict gives zeros', async () => {
    const model = new GPT(CFG, 1);
    const batch = batchOf(CFG, 2, 8, 5);
    const grads = new Float32Array(model.numParams);
    const sink = { loss: () => {}, ready: () => {} };
    await model.trainStepOverlapped(batch, 1, grads, sink); // first call may create lasting state
    const before = tf.memory().numTensors;
    await model.trainStepOverlapped(batch, 2, grads, sink);
    assert.equal(tf.memory().numTensors, before);
    const ready: number[] = [];
    const r = await model.trainStepOverlapped({ ...batch, labels: new Int32Array(16).fill(IGNORE_INDEX) }, 0, grads, {
      loss: () => {},
      ready: (lo, hi) => ready.push(lo, hi),
    });
    assert.deepEqual(r, { loss: 0, tokens: 0 });
    assert.deepEqual(ready, [0, model.numParams]);
    assert.ok(grads.every((v) => v === 0));
    model.dispose();
  });
});
