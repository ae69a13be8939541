/**
 * The tensor-parallel GPT against the dense one, in one process (ranks on in-memory rings): the
 * shards cut and put back together, and one train step per TP rank giving the dense model's loss
 * and, assembled, its gradients — with random weights (so every path carries a gradient), padding
 * and ignored labels. A forward-only TP (the Python original's) fails the gradient checks.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { createMemoryGroups } from '../../../worker/comm/memory_group.js';
import { GPT, IGNORE_INDEX, type Batch, type GPTConfig } from '../../../worker/model/gpt.js';
import { TensorParallelGPT } from '../../../worker/model/tp_gpt.js';
import { denseFromLocals, localFromDense, shardPlan } from '../../../worker/model/tp_shard.js';
import { initBackend, tf } from '../../../worker/tf.js';

const CFG: GPTConfig = { vocabSize: 17, maxPositionEmbeddings: 8, nLayers: 2, nHeads: 4, dModel: 8, dFf: 12, dropout: 0 };

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

function batch(B: number, T: number, seed: number): Batch {
  const rand = lcg(seed);
  const inputIds = Int32Array.from({ length: B * T }, () => Math.floor(rand() * CFG.vocabSize));
  const attentionMask = Int32Array.from({ length: B * T }, (_, i) => (i % T === T - 1 && i < T ? 0 : 1)); // first sample: last token padded
  const labels = Int32Array.from(inputIds, (id, i) => (i === 2 ? IGNORE_INDEX : id));
  return { inputIds, attentionMask, labels, batchSize: B, seqLen: T };
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

before(async () => {
  await initBackend('cpu');
});

describe('tensor-parallel shards', () => {
  it('cut a dense buffer into tp pieces and put them back exactly, qkv as [q_r | k_r | v_r]', () => {
    for (const tp of [2, 4]) {
      const plan = shardPlan(CFG, tp);
      const n = plan.reduce((a, p) => a + p.spec.shape.reduce((x, y) => x * y, 1), 0);
      const dense = Float32Array.from({ length: n }, (_, i) => i);
      const locals = Array.from({ length: tp }, (_, r) => {
        const out = new Float32Array(plan.reduce((a, p) => a + p.local.reduce((x, y) => x * y, 1), 0));
        localFromDense(plan, tp, r, dense, out);
        return out;
      });
      const back = new Float32Array(n);
      denseFromLocals(plan, locals, back);
      assert.deepEqual(back, dense);
      // blocks.0.attn.qkv_proj.weight [8, 24]: rank 1 of 2, row 0 = columns 2,3 (q) 10,11 (k) 18,19 (v).
      const qkv = plan.findIndex((p) => p.spec.name === 'blocks.0.attn.qkv_proj.weight');
      if (tp === 2) {
        const before = plan.slice(0, qkv).reduce((a, p) => a + p.spec.shape.reduce((x, y) => x * y, 1), 0);
        const lbefore = plan.slice(0, qkv).reduce((a, p) => a + p.local.reduce((x, y) => x * y, 1), 0);
        assert.deepEqual(
          [...locals[1].subarray(lbefore, lbefore + 12)],
          [4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23].map((c) => before + c),
        );
      }
    }
  });
});

describe('TensorParallelGPT', () => {
  for (const tp of [2, 4]) {
    it(`tp ${tp}: one step gives the dense loss and, assembled, the dense gradients (random weights, padding, ignored label)`, async () => {
      const dense = new GPT(CFG, 5);
      const flat = new Float32Array(dense.numParams);
      const rand = lcg(9);
      for (let i = 0; i < flat.length; i++) flat[i] = (rand() - 0.5) * 0.6;
      dense.writeFlat(flat);
      const b = batch(2, 6, 3);
      const denseGrads = new Float32Array(dense.numParams);
      const want = dense.trainStep(b, 1, denseGrads);
      const groups = createMemoryGroups(tp);
      const models = groups.map((g) => new TensorParallelGPT(CFG, 5, g));
      const plan = models[0].plan;
      models.forEach((m, r) => {
        const local = new Float32Array(m.numParams);
        localFromDense(plan, tp, r, flat, local);
        m.writeFlat(local);
      });
      const grads = models.map((m) => new Float32Array(m.numParams));
      const got = await Promise.all(models.map((m, r) => m.trainStep(b, 1, grads[r])));
      for (const g of got) {
        assert.equal(g.tokens, want.tokens);
        assert.ok(Math.abs(g.loss - want.loss) < 1e-6, `loss ${g.loss} vs ${want.loss}`);
      }
      const assembled = new Float32Array(dense.numParams);
      denseFromLocals(plan, grads, assembled);
      const d = maxDiff(assembled, denseGrads);
      assert.ok(d < 1e-6, `max gradient difference ${d}`);
      // Replicated parameters got bit-identical gradients on every TP rank (no TP reduction needed).
      const ln = plan.findIndex((p) => p.spec.name === 'blocks.0.ln1.weight');
      const off = plan.slice(0, ln).reduce((a, p) => a + p.local.reduce((x, y) => x * y, 1), 0);
      for (const g of grads) assert.deepEqual(g.subarray(off, off + CFG.dModel), grads[0].subarray(off, off + CFG.dModel));
      // Eval: the dense loss sum.
      const evals = await Promise.all(models.map((m) => m.evalBatch(b)));
      const wantEval = dense.evalBatch(b);
      for (const e of evals) assert.ok(Math.abs(e.lossSum - wantEval.lossSum) < 1e-5, `${e.lossSum} vs ${wantEval.lossSum}`);
      const tensors = tf.memory().numTensors;
      await Promise.all(models.map((m, r) => m.trainStep(b, 2, grads[r])));
      assert.equal(tf.memory().numTensors, tensors, 'a train step leaks no tensor');
      await Promise.all(models.map((m) => m.evalBatch(b)));
      assert.equal(tf.memory().numTensors, tensors, 'an eval batch leaks no tensor');
      models.forEach((m) => m.dispose());
      dense.dispose();
      await Promise.all(groups.map((g) => g.close()));
    });
  }
  it('tp 2 with dropout: TP peers agree on the loss and on every replicated gradient; same seed, same step; masks do apply', async () => {
    const cfg = { ...CFG, dropout: 0.2 };
    const groups = createMemoryGroups(2);
    const models = groups.map((g) => new TensorParallelGPT(cfg, 5, g));
    const b = batch(2, 6, 4);
    const run = async (seed: number) => {
      const grads = models.map((m) => new Float32Array(m.numParams));
      const out = await Promise.all(models.map((m, r) => m.trainStep(b, seed, grads[r])));
      return { losses: out.map((o) => o.loss), grads };
    };
    const a = await run(7);
    const again = await run(7);
    const other = await run(8);
    assert.equal(a.losses[0], a.losses[1]);
    assert.deepEqual(again.grads, a.grads);
    assert.notEqual(other.losses[0], a.losses[0]);
    let off = 0;
    for (const p of models[0].plan) {
      const n = p.local.reduce((x, y) => x * y, 1);
      if (p.shard.kind === 'replicated') assert.deepEqual(a.grads[1].subarray(off, off + n), a.grads[0].subarray(off, off + n), p.spec.name);
      off += n;
    }
    models.forEach((m) => m.dispose());
    await Promise.all(groups.map((g) => g.close()));
  });
});
