/**
 * AdamW against values computed by hand in this file (the textbook form of torch.optim.AdamW:
 * bias-corrected moments, decoupled weight decay applied first), in float64.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RosedistError } from '../../shared/errors.js';
import { ADAMW_DEFAULTS, AdamW, type AdamWConfig } from '../../worker/optim.js';

/** Loshchilov & Hutter / torch docs, one scalar: returns the new (p, m, v). */
function byHand(p: number, m: number, v: number, g: number, t: number, c: AdamWConfig): [number, number, number] {
  p = p - c.lr * c.weightDecay * p;
  m = c.beta1 * m + (1 - c.beta1) * g;
  v = c.beta2 * v + (1 - c.beta2) * g * g;
  const mHat = m / (1 - c.beta1 ** t);
  const vHat = v / (1 - c.beta2 ** t);
  return [p - (c.lr * mHat) / (Math.sqrt(vHat) + c.eps), m, v];
}

function close(actual: number, expected: number, what: string): void {
  // float32 storage: about 7 significant digits.
  assert.ok(Math.abs(actual - expected) <= 1e-6 * Math.abs(expected) + 1e-12, `${what}: ${actual} vs ${expected}`);
}

describe('AdamW', () => {
  const cfg: AdamWConfig = { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.05 };

  it('matches hand-computed updates over three steps, weight decay included', () => {
    const p0 = [1.5, -0.25, 0.0, 3.0];
    const gradsPerStep = [
      [0.3, -0.02, 0.5, 0.0],
      [-0.1, 0.04, 0.5, 0.0],
      [0.2, 0.0, -1.0, 0.0],
    ];
    const opt = new AdamW(4, cfg);
    const params = Float32Array.from(p0);
    const expected = p0.map((p) => [p, 0, 0] as [number, number, number]);
    gradsPerStep.forEach((g, k) => {
      opt.step(params, Float32Array.from(g));
      assert.equal(opt.stepCount, k + 1);
      for (let i = 0; i < 4; i++) {
        const [p, m, v] = expected[i]!;
        // Feed the float32 value back, as the optimizer stores it.
        expected[i] = byHand(Math.fround(p), m, v, g[i]!, k + 1, cfg);
        close(params[i]!, expected[i]![0], `step ${k + 1} p[${i}]`);
        close(opt.m[i]!, expected[i]![1], `step ${k + 1} m[${i}]`);
        close(opt.v[i]!, expected[i]![2], `step ${k + 1} v[${i}]`);
      }
    });
  });

  it('moves each weight by about lr on the first step, and only decays one with a zero gradient', () => {
    // Step 1: mHat = g and vHat = g^2, so the update is lr * g / (|g| + eps).
    const opt = new AdamW(3, cfg);
    const params = Float32Array.from([2, 2, 2]);
    opt.step(params, Float32Array.from([0.5, -3, 0]));
    const decayed = 2 * (1 - cfg.lr * cfg.weightDecay);
    close(params[0]!, decayed - cfg.lr, 'positive gradient');
    close(params[1]!, decayed + cfg.lr, 'negative gradient');
    close(params[2]!, decayed, 'zero gradient');
  });

  it('lr 0 (a frozen run, as torch allows) leaves the weights exactly as they were, moments still updated', () => {
    const opt = new AdamW(3, { ...cfg, lr: 0 });
    const params = Float32Array.from([2, -0.5, 0.125]);
    for (let k = 0; k < 3; k++) opt.step(params, Float32Array.from([0.5, -3, 0]));
    assert.deepEqual([...params], [2, -0.5, 0.125]);
    assert.equal(opt.stepCount, 3);
    assert.ok(opt.m[0]! > 0);
  });

  it('runs the SIMD kernel, which agrees with the JavaScript loop to float32 rounding (chunks, odd tail, steps 1-5)', () => {
    const n = 2 * 16384 + 1237; // three staging chunks, the last one not a multiple of 4
    let s = 7;
    const rand = () => {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      return s / 4294967296 - 0.5;
    };
    const p0 = Float32Array.from({ length: n }, () => rand() * 4);
    const simd = new AdamW(n, cfg);
    const js = new AdamW(n, cfg, { simd: false });
    assert.ok(simd.usesSimd && !js.usesSimd);
    const [pSimd, pJs] = [p0.slice(), p0.slice()];
    let worst = 0;
    for (let step = 0; step < 5; step++) {
      // Gradients over many scales, zeros included.
      const g = Float32Array.from({ length: n }, (_, i) => (i % 97 === 0 ? 0 : rand() * 10 ** Math.floor(rand() * 8 - 5)));
      // Each step from the same state (the JavaScript loop's): one step's rounding, not a
      // difference carried from earlier steps.
      pSimd.set(pJs);
      simd.m.set(js.m);
      simd.v.set(js.v);
      const [pPrev, mPrev] = [pJs.slice(), js.m.slice()];
      simd.step(pSimd, g);
      js.step(pJs, g);
      // Differences in units of the terms each value is a sum of (|p|·decay + |update|, and
      // beta1·|m| + (1 - beta1)·|g|), as terms of opposite signs may cancel; v's terms cannot.
      for (let i = 0; i < n; i++) {
        const pScale = Math.abs(pPrev[i]!) + Math.abs(pJs[i]! - pPrev[i]!) + cfg.lr;
        const mScale = cfg.beta1 * Math.abs(mPrev[i]!) + (1 - cfg.beta1) * Math.abs(g[i]!) || 1e-30;
        const vScale = Math.abs(js.v[i]!) || 1e-30;
        worst = Math.max(worst, Math.abs(pSimd[i]! - pJs[i]!) / pScale, Math.abs(simd.m[i]! - js.m[i]!) / mScale, Math.abs(simd.v[i]! - js.v[i]!) / vScale);
      }
    }
    assert.equal(simd.stepCount, 5);
    // A few float32 roundings apart (2^-24 each), never more.
    assert.ok(worst < 8 * 2 ** -24, `largest relative difference ${worst}`);
    assert.ok(!pSimd.every((x, i) => x === p0[i]), 'the weights moved');
  });

  it('uses PyTorch defaults and rejects mismatched buffers with a clear error', () => {
    assert.deepEqual({ ...ADAMW_DEFAULTS, lr: 0, weightDecay: 0 }, { lr: 0, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 });
    assert.equal(ADAMW_DEFAULTS.weightDecay, 0.01);
    const opt = new AdamW(3, ADAMW_DEFAULTS);
    assert.throws(() => opt.step(new Float32Array(3), new Float32Array(2)), RosedistError);
    assert.equal(opt.stepCount, 0);
    assert.throws(() => new AdamW(3, { ...ADAMW_DEFAULTS, beta2: 1 }), /betas/);
    assert.throws(() => new AdamW(3, { ...ADAMW_DEFAULTS, lr: Number.NaN }), /lr/);
  });
});
