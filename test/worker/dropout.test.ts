/**
 * Our dropout-mask kernel (worker/kernels/dropout.c, wired by worker/wasm_fused.ts): on wasm,
 * model/ops.ts dropoutMaskTensor makes the very bits rng.ts dropoutMask draws in JavaScript (so
 * that every backend, and every process of a run, drops the same elements), for odd sizes,
 * seeds at the edges of 32 bits and rates from 0 to nearly 1.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { dropoutMaskTensor } from '../../worker/model/ops.js';
import { dropoutMask } from '../../worker/rng.js';
import { ourFusedKernels, tf } from '../../worker/tf.js';
import { onWasmBackend } from '../helpers/wasm_backend.js';

describe('dropoutMaskTensor on wasm', () => {
  onWasmBackend();

  it('runs our kernel and makes rng.ts dropoutMask bit for bit', async () => {
    assert.notEqual(ourFusedKernels()?.dropoutMask, undefined);
    for (const dims of [[1], [3], [4], [7, 5], [8, 4, 33, 33]]) {
      for (const rate of [0, 0.1, 0.5, 1 / 3, 0.999999]) {
        for (const seed of [0, 1, 0x7fffffff, 0xffffffff, 123456789]) {
          const ours = tf.tidy(() => dropoutMaskTensor(dims, rate, seed).dataSync() as Float32Array);
          const js = dropoutMask(
            dims.reduce((a, b) => a * b, 1),
            rate,
            seed,
          );
          assert.equal(
            Buffer.compare(Buffer.from(ours.buffer, ours.byteOffset, ours.byteLength), Buffer.from(js.buffer)),
            0,
            `[${dims}] rate ${rate} seed ${seed}`,
          );
        }
      }
    }
    const big = tf.tidy(() => dropoutMaskTensor([1000, 1000], 0.1, 42).dataSync() as Float32Array);
    const dropped = big.filter((v) => v === 0).length / big.length;
    assert.ok(Math.abs(dropped - 0.1) < 0.002, `dropped ${dropped}`);
    const profile = await tf.profile(() => tf.tidy(() => void dropoutMaskTensor([2, 3], 0.1, 1)));
    assert.ok(
      profile.kernels.some((k) => k.name === 'RosedistDropoutMask'),
      profile.kernels.map((k) => k.name).join(', '),
    );
  });
});
