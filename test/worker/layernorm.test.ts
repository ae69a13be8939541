/**
 * Our fused LayerNorm (worker/kernels/layernorm.c, wired by worker/wasm_fused.ts): model/ops.ts
 * layerNorm on wasm — value and the gradients of x, gamma and beta — against float64 and against
 * tfjs's ops (layerNormOps, which every other backend keeps), for odd widths, offsets and scales.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { layerNorm, layerNormOps } from '../../worker/model/ops.js';
import { ourFusedKernels, tf } from '../../worker/tf.js';
import { onWasmBackend } from '../helpers/wasm_backend.js';
import { randoms } from '../helpers/randoms.js';

interface Result {
  y: Float64Array | Float32Array;
  dx: Float64Array | Float32Array;
  dg: Float64Array | Float32Array;
  db: Float64Array | Float32Array;
}

/** y and the gradients of sum(y * w) in float64. */
function reference(x: Float32Array, g: Float32Array, b: Float32Array, w: Float32Array, n: number, c: number, eps: number): Result {
  const y = new Float64Array(n * c);
  const dx = new Float64Array(n * c);
  const dg = new Float64Array(c);
  const db = new Float64Array(c);
  for (let i = 0; i < n; i++) {
    const row = Array.from(x.subarray(i * c, (i + 1) * c));
    const mu = row.reduce((a, v) => a + v, 0) / c;
    const r = 1 / Math.sqrt(row.reduce((a, v) => a + (v - mu) ** 2, 0) / c + eps);
    const xh = row.map((v) => (v - mu) * r);
    const dxh = xh.map((_, j) => w[i * c + j]! * g[j]!);
    const mD = dxh.reduce((a, v) => a + v, 0) / c;
    const mDX = dxh.reduce((a, v, j) => a + v * xh[j]!, 0) / c;
    for (let j = 0; j < c; j++) {
      y[i * c + j] = xh[j]! * g[j]! + b[j]!;
      dx[i * c + j] = r * (dxh[j]! - mD - xh[j]! * mDX);
      dg[j] += w[i * c + j]! * xh[j]!;
      db[j] += w[i * c + j]!;
    }
  }
  return { y, dx, dg, db };
}

function run(f: typeof layerNorm, x: Float32Array, g: Float32Array, b: Float32Array, w: Float32Array, n: number, c: number): Result {
  return tf.tidy(() => {
    const loss = (xt: tf.Tensor, gt: tf.Tensor, bt: tf.Tensor) =>
      tf.sum(tf.mul(f(xt as tf.Tensor2D, gt as tf.Tensor1D, bt as tf.Tensor1D), tf.tensor2d(w, [n, c])));
    const [xt, gt, bt] = [tf.tensor2d(x, [n, c]), tf.tensor1d(g), tf.tensor1d(b)];
    const [dx, dg, db] = tf.grads(loss)([xt, gt, bt]) as [tf.Tensor, tf.Tensor, tf.Tensor];
    const y = f(xt, gt, bt);
    return { y: y.dataSync() as Float32Array, dx: dx.dataSync() as Float32Array, dg: dg.dataSync() as Float32Array, db: db.dataSync() as Float32Array };
  }) as unknown as Result;
}

function worst(a: Result, b: Result, scale: number): number {
  let e = 0;
  for (const k of ['y', 'dx', 'dg', 'db'] as const) for (let i = 0; i < a[k].length; i++) e = Math.max(e, Math.abs(a[k][i]! - b[k][i]!) / scale);
  return e;
}

describe('layerNorm on wasm', () => {
  onWasmBackend();

  it('runs our fused kernels, within float32 error of float64 and as close to it as tfjs ops', async () => {
    assert.notEqual(ourFusedKernels()?.layerNorm, undefined);
    for (const [n, c, offset, spread] of [
      [1, 1, 0, 1],
      [3, 7, 5, 2],
      [16, 128, 0, 1],
      [33, 130, -100, 0.01],
      [256, 512, 3, 30],
    ] as const) {
      const x = randoms(n * c, n + c).map((v) => offset + spread * v);
      const g = randoms(c, 2).map((v) => 1 + v);
      const b = randoms(c, 3);
      const w = randoms(n * c, 4);
      const before = tf.memory().numTensors;
      const ours = run(layerNorm, x, g, b, w, n, c);
      const ops = run(layerNormOps, x, g, b, w, n, c);
      assert.equal(tf.memory().numTensors, before, 'no tensor leaked');
      const ref = reference(x, g, b, w, n, c, 1e-5);
      // Column sums over n rows carry n float32 roundings; everything else a few per row of c.
      const scale = 1 + n / 16;
      const eOurs = worst(ours, ref, scale);
      const eOps = worst(ops, ref, scale);
      // A row far from 0 against its spread loses digits in x - mean in any float32 order.
      const conditioning = Math.max(1, Math.abs(offset) / spread);
      assert.ok(eOurs <= 2e-5 * conditioning, `[${n}, ${c}]: ours ${eOurs} from float64`);
      assert.ok(eOurs <= 4 * eOps + 1e-6, `[${n}, ${c}]: ours ${eOurs}, tfjs ops ${eOps} from float64`);
    }
    const profile = await tf.profile(() => tf.tidy(() => void layerNorm(tf.ones([2, 3]), tf.ones([3]), tf.zeros([3]))));
    assert.ok(
      profile.kernels.some((k) => k.name === 'RosedistLayerNorm'),
      profile.kernels.map((k) => k.name).join(', '),
    );
  });
});
