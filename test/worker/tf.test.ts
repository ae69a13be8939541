/**
 * Backend selection and the replacement wasm kernels (Slice, GatherV2), checked against the cpu
 * backend's results. tfjs-node-gpu is not installed here: 'auto' must fall back and say why.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { ConfigError } from '../../shared/errors.js';
import { bmm } from '../../worker/attention.js';
import { initBackend, tf, type BackendChoice } from '../../worker/tf.js';

/** Run f on a backend and return its result's values (tensors disposed). */
async function on(backend: 'cpu' | 'wasm', f: () => tf.Tensor): Promise<{ shape: number[]; values: Float32Array | Int32Array }> {
  await initBackend(backend);
  const t = tf.tidy(f);
  const out = { shape: t.shape, values: t.dataSync().slice() as Float32Array | Int32Array };
  t.dispose();
  return out;
}

const values = (n: number, offset = 0) => Float32Array.from({ length: n }, (_, i) => Math.sin(i + offset) * 3);

describe('initBackend', () => {
  after(async () => { await initBackend('cpu'); });

  it('starts cpu and wasm, and says which device', async () => {
    const cpu = await initBackend('cpu');
    assert.deepEqual(cpu, { name: 'cpu', device: 'CPU (pure JS)' });
    assert.equal(tf.getBackend(), 'cpu');
    const wasm = await initBackend('wasm');
    assert.equal(wasm.name, 'wasm');
    assert.match(wasm.device, /^CPU \(wasm, (SIMD|no SIMD), 1 thread\)$/);
    assert.equal(tf.getBackend(), 'wasm');
  });

  it("falls back from 'auto' to wasm with the reason when tfjs-node-gpu does not load", async (t) => {
    if (tf.findBackendFactory('tensorflow') !== null) return t.skip('tfjs-node-gpu is installed here');
    const info = await initBackend('auto');
    assert.equal(info.name, 'wasm');
    assert.match(info.fallbackReason ?? '', /@tensorflow\/tfjs-node-gpu is (not installed|installed but)/);
    assert.equal(process.env.TF_FORCE_GPU_ALLOW_GROWTH, 'true');
  });

  it("rejects 'tensorflow' without tfjs-node-gpu, saying how to install it", async (t) => {
    if (tf.findBackendFactory('tensorflow') !== null) return t.skip('tfjs-node-gpu is installed here');
    await assert.rejects(initBackend('tensorflow'), (e: unknown) =>
      e instanceof ConfigError && /tfjs-node-gpu/.test(e.message) && /--allow-scripts/.test(e.hint ?? '') &&
      /TFJS_NODE_BASE_URI/.test(e.hint ?? ''));
  });

  it('rejects an unknown backend', async () => {
    await assert.rejects(initBackend('gpu' as BackendChoice), ConfigError);
  });
});

describe('wasm kernels agree with cpu', () => {
  after(async () => { await initBackend('cpu'); });

  it('Slice: contiguous and strided slices', async () => {
    const x = values(4 * 6 * 5);
    const cases: [number[], number[]][] = [[[1, 0, 0], [2, 6, 5]], [[3, 2, 0], [1, 3, 5]], [[0, 1, 2], [4, 2, 3]], [[2, 4, 1], [1, 1, 1]]];
    for (const [begin, size] of cases) {
      const f = () => tf.slice(tf.tensor3d(x, [4, 6, 5]), begin, size);
      assert.deepEqual(await on('wasm', f), await on('cpu', f), `slice ${begin} ${size}`);
    }
    const ints = () => tf.slice(tf.tensor2d(Int32Array.from([1, 2, 3, 4, 5, 6]), [3, 2], 'int32'), [1, 0], [2, 2]);
    assert.deepEqual(await on('wasm', ints), await on('cpu', ints));
  });

  it('GatherV2: rows with repeats, single elements, other axes; out-of-range indices throw', async () => {
    const x = values(7 * 3);
    const idx = Int32Array.from([6, 0, 0, 3]);
    const cases: (() => tf.Tensor)[] = [
      () => tf.gather(tf.tensor2d(x, [7, 3]), tf.tensor1d(idx, 'int32')),
      () => tf.gather(tf.tensor1d(x), tf.tensor1d(Int32Array.from([20, 1, 1]), 'int32')),
      () => tf.gather(tf.tensor2d(x, [7, 3]), tf.tensor2d(Int32Array.from([1, 2, 3, 4]), [2, 2], 'int32')),
      () => tf.gather(tf.tensor2d(x, [7, 3]), tf.tensor1d(Int32Array.from([2, 0]), 'int32'), 1),
    ];
    for (const [i, f] of cases.entries()) assert.deepEqual(await on('wasm', f), await on('cpu', f), `case ${i}`);
    await initBackend('wasm');
    assert.throws(() => tf.tidy(() => tf.gather(tf.tensor2d(x, [7, 3]), tf.tensor1d([7], 'int32'))), /index value 7/);
  });

  it('bmm: per-slice 2-D matMuls (long sequences on wasm) equal the batched kernel', async () => {
    // [4, 128, 16] x [4, 16, 128]: 524k FLOPs per slice, above the threshold of the sliced path.
    const a = values(4 * 128 * 16);
    const b = values(4 * 16 * 128, 1);
    const f = () => bmm(tf.tensor3d(a, [4, 128, 16]), tf.tensor3d(b, [4, 16, 128]));
    const [w, c] = [await on('wasm', f), await on('cpu', f)];
    assert.deepEqual(w.shape, [4, 128, 128]);
    let err = 0;
    for (let i = 0; i < c.values.length; i++) err = Math.max(err, Math.abs(w.values[i]! - c.values[i]!));
    assert.ok(err < 1e-4, `max difference ${err}`);
  });
});
