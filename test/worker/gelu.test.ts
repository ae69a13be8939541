/**
 * Our fused GELU (worker/kernels/gelu.c, wired by worker/wasm_fused.ts): the raw kernels of both
 * builds (plain, fma) against a float64 reference and the memory they write, and model/ops.ts
 * gelu on wasm — value and gradient — against the reference and against tfjs's ops (geluOps,
 * which every other backend keeps), including odd sizes, large magnitudes and NaN.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fixedMemory, instantiateKernels, type KernelBuild } from '../../worker/kernels/module.js';
import { gelu, geluOps } from '../../worker/model/ops.js';
import { ourFusedKernels, tf } from '../../worker/tf.js';
import { onWasmBackend } from '../helpers/wasm_backend.js';

/** erf in float64: its Maclaurin series below 3, a continued fraction of erfc above (test-side, independent of the kernel). */
function erf(x: number): number {
  const a = Math.abs(x);
  let r: number;
  if (a < 3) {
    let sum = a;
    let term = a;
    for (let k = 1; Math.abs(term) > 1e-17 * Math.abs(sum); k++) {
      term *= (-a * a) / k;
      sum += term / (2 * k + 1);
    }
    r = (2 / Math.sqrt(Math.PI)) * sum;
  } else {
    let t = 0;
    for (let k = 60; k >= 1; k--) t = k / 2 / (a + t);
    r = 1 - Math.exp(-a * a) / Math.sqrt(Math.PI) / (a + t);
  }
  return Math.sign(x) * r;
}
const cdf = (x: number) => 0.5 * (1 + erf(x / Math.SQRT2));
const geluRef = (x: number) => x * cdf(x);
const geluGradRef = (x: number) => cdf(x) + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI);

/** x spread over [-lim, lim] with a seeded LCG, plus the edges. */
function inputs(n: number, lim: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const x = Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 4294967296 - 0.5) * 2 * lim;
  });
  x.set([0, -0, lim, -lim, 1e-30, -1e-30].slice(0, n));
  return x;
}

/** Allowed error for a value of magnitude ~|ref| computed from x: erf's 4e-7, times |x|, plus float32 rounding. */
const tolerance = (x: number, ref: number) => 5e-7 * Math.max(1, Math.abs(x)) + 4 * 2 ** -24 * Math.abs(ref);

describe('gelu.c', () => {
  for (const build of ['plain', 'fma'] as KernelBuild[]) {
    it(`${build}: forward and backward within float32 error of float64, writing only their outputs`, () => {
      const memory = fixedMemory(16); // 1 MiB
      const k = instantiateKernels(memory, build);
      if (typeof k === 'string') assert.fail(k);
      const f32 = new Float32Array(memory.buffer);
      for (const n of [1, 3, 4, 7, 1001]) {
        f32.fill(Number.NaN);
        const x = inputs(n, 12, n);
        const dy = inputs(n, 3, n + 1);
        const [xAt, dyAt, yAt, dxAt] = [1024, 1024 + 8192, 1024 + 16384, 1024 + 24576]; // byte offsets, 2048 floats apart
        f32.set(x, xAt / 4);
        f32.set(dy, dyAt / 4);
        const before = f32.slice();
        k.gelu_forward(xAt, yAt, n);
        k.gelu_backward(xAt, dyAt, dxAt, n);
        for (let i = 0; i < f32.length; i++) {
          const inY = i >= yAt / 4 && i < yAt / 4 + n;
          const inDx = i >= dxAt / 4 && i < dxAt / 4 + n;
          if (!inY && !inDx && !Object.is(f32[i], before[i])) assert.fail(`n ${n}: wrote float ${i}, outside its outputs`);
        }
        for (let i = 0; i < n; i++) {
          const xi = x[i]!;
          const y = f32[yAt / 4 + i]!;
          const dx = f32[dxAt / 4 + i]!;
          const ry = geluRef(xi);
          const rdx = dy[i]! * geluGradRef(xi);
          assert.ok(Math.abs(y - ry) <= tolerance(xi, ry), `n ${n}: gelu(${xi}) = ${y}, float64 ${ry}`);
          assert.ok(Math.abs(dx - rdx) <= tolerance(xi, rdx) * Math.max(1, Math.abs(dy[i]!)), `n ${n}: grad at ${xi} = ${dx}, float64 ${rdx}`);
        }
      }
      f32.set([Number.NaN, Infinity, -Infinity, 1e30], 0);
      k.gelu_forward(0, 64, 4);
      // As the formula in float32 (and tfjs's ops): -inf Phi(-inf) = -inf * 0 is NaN.
      assert.deepEqual([...f32.subarray(16, 20)], [Number.NaN, Infinity, Number.NaN, Math.fround(1e30)]);
    });
  }
});

describe('gelu on wasm', () => {
  onWasmBackend();

  it('runs our fused kernels, with the value and gradient of float64 and of tfjs ops', async () => {
    assert.notEqual(ourFusedKernels()?.gelu, undefined);
    const x = inputs(4 * 517, 8, 7);
    const w = inputs(4 * 517, 2, 8);
    const run = (f: (t: tf.Tensor) => tf.Tensor) =>
      tf.tidy(() => {
        const xv = tf.tensor2d(x, [4, 517]);
        const { value, grad } = tf.valueAndGrad((t: tf.Tensor) => tf.sum(tf.mul(f(t), tf.tensor2d(w, [4, 517]))))(xv);
        return { y: f(xv).dataSync() as Float32Array, loss: value.dataSync()[0] as number, grad: grad.dataSync() as Float32Array };
      });
    const before = tf.memory().numTensors;
    const ours = run(gelu);
    const ops = run(geluOps);
    assert.equal(tf.memory().numTensors, before, 'no tensor leaked');
    let worstOps = 0;
    for (let i = 0; i < x.length; i++) {
      const xi = x[i]!;
      assert.ok(Math.abs(ours.y[i]! - geluRef(xi)) <= tolerance(xi, geluRef(xi)), `gelu(${xi}) = ${ours.y[i]}`);
      const rg = w[i]! * geluGradRef(xi);
      assert.ok(Math.abs(ours.grad[i]! - rg) <= tolerance(xi, rg) * 2, `grad at ${xi} = ${ours.grad[i]}, float64 ${rg}`);
      worstOps = Math.max(worstOps, Math.abs(ours.y[i]! - ops.y[i]!), Math.abs(ours.grad[i]! - ops.grad[i]!));
    }
    assert.ok(worstOps < 1e-5, `ours vs tfjs ops: ${worstOps}`);
    assert.ok(Math.abs(ours.loss - ops.loss) < 1e-3, `loss ${ours.loss} vs ${ops.loss}`);
    const profile = await tf.profile(() => tf.tidy(() => void gelu(tf.ones([2, 3]))));
    assert.ok(
      profile.kernels.some((k) => k.name === 'RosedistGelu'),
      profile.kernels.map((k) => k.name).join(', '),
    );
  });
});
