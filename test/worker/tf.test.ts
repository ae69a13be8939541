/**
 * Backend selection and the replacement wasm kernels (Slice, GatherV2), checked against the cpu
 * backend's results. tfjs-node-gpu is not installed here: 'auto' must fall back and say why.
 */
import assert from 'node:assert/strict';
import { createRequire, findSourceMap } from 'node:module';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { ConfigError } from '../../shared/errors.js';
import { initBackend, readInto, tensorOf, tf, type BackendChoice } from '../../worker/tf.js';
import { stockWasmKernel } from '../../worker/tf_wasm_kernels.js';

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
  after(async () => {
    await initBackend('cpu');
  });

  it('starts cpu and wasm, and says which device', async () => {
    const cpu = await initBackend('cpu');
    assert.deepEqual(cpu, { name: 'cpu', device: 'CPU (pure JS)' });
    assert.equal(tf.getBackend(), 'cpu');
    const wasm = await initBackend('wasm');
    assert.equal(wasm.name, 'wasm');
    assert.match(wasm.device, /^CPU \(wasm, (SIMD|no SIMD), 1 thread(, our GEMM( with FMA)?)?\)$/);
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
    await assert.rejects(
      initBackend('tensorflow'),
      (e: unknown) =>
        e instanceof ConfigError && /tfjs-node-gpu/.test(e.message) && /--allow-scripts/.test(e.hint ?? '') && /TFJS_NODE_BASE_URI/.test(e.hint ?? ''),
    );
  });

  it("loads tfjs without its source maps and keeps our modules' (tf_no_source_maps.ts)", async () => {
    // This process runs through tsx, which turns source maps on: Node would parse every map.
    assert.equal(process.sourceMapsEnabled, true, 'source maps are on again after tf.ts loaded');
    await initBackend('wasm');
    const require = createRequire(import.meta.url);
    for (const pkg of ['@tensorflow/tfjs-core', '@tensorflow/tfjs-layers', '@tensorflow/tfjs-backend-wasm']) {
      assert.equal(findSourceMap(require.resolve(pkg)), undefined, `${pkg}'s source map was parsed`);
    }
    assert.notEqual(findSourceMap(fileURLToPath(new URL('../../worker/tf.ts', import.meta.url))), undefined, "worker/tf.ts's own map");
    assert.match(new Error('here').stack ?? '', /tf\.test\.ts:\d+/, 'stack traces still name our TypeScript lines');
  });

  for (const backend of ['wasm', 'cpu'] as const) {
    it(`readInto and tensorOf copy float32 values without sharing them (${backend})`, async () => {
      await initBackend(backend);
      const src = values(10);
      const t = tensorOf(src.subarray(2, 8), [2, 3]);
      src.fill(0); // a later write to the source does not reach the tensor
      const out = new Float32Array(9).fill(-1);
      readInto(t, out, 2);
      assert.deepEqual([...out], [-1, -1, ...values(10).subarray(2, 8), -1]);
      const view = tf.reshape(t, [6]); // shares t's data
      readInto(view, out, 0);
      assert.deepEqual([...out.subarray(0, 6)], [...values(10).subarray(2, 8)]);
      assert.throws(() => readInto(tf.tensor1d([1], 'int32'), out), RangeError);
      view.dispose();
      t.dispose();
      assert.throws(() => readInto(t, out), RangeError);
    });
  }

  it('rejects an unknown backend', async () => {
    await assert.rejects(initBackend('gpu' as BackendChoice), ConfigError);
  });
});

describe('wasm kernels agree with cpu', () => {
  after(async () => {
    await initBackend('cpu');
  });

  it('Slice: contiguous and strided slices', async () => {
    const x = values(4 * 6 * 5);
    const cases: [number[], number[]][] = [
      [
        [1, 0, 0],
        [2, 6, 5],
      ],
      [
        [3, 2, 0],
        [1, 3, 5],
      ],
      [
        [0, 1, 2],
        [4, 2, 3],
      ],
      [
        [2, 4, 1],
        [1, 1, 1],
      ],
    ];
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

  it('Transpose: 2-D blocked copy (odd sizes, int32) and higher ranks left to the original', async () => {
    const cases: (() => tf.Tensor)[] = [
      () => tf.transpose(tf.tensor2d(values(37 * 70), [37, 70])),
      () =>
        tf.transpose(
          tf.tensor2d(
            Int32Array.from({ length: 6 * 33 }, (_, i) => i),
            [6, 33],
            'int32',
          ),
        ),
      () => tf.transpose(tf.tensor3d(values(3 * 4 * 5), [3, 4, 5]), [0, 2, 1]),
    ];
    for (const [i, f] of cases.entries()) assert.deepEqual(await on('wasm', f), await on('cpu', f), `case ${i}`);
  });

  it('Identity: a clone shares the data and outlives its source', async () => {
    await initBackend('wasm');
    const x = tf.tensor1d([1, 2, 3]);
    const y = tf.clone(x);
    x.dispose();
    assert.deepEqual(Array.from(y.dataSync()), [1, 2, 3]);
    y.dispose();
  });

  it('BatchMatMul: our GEMM, the per-slice XNNPACK fallback on views, and the cases left to the original', async () => {
    // [4, 128, 16] x [4, 16, 128]: 524k FLOPs per slice, above SLICED_MATMUL_MIN_FLOPS.
    const a = values(4 * 128 * 16);
    const b = values(4 * 16 * 128, 1);
    const cases: [string, () => tf.Tensor][] = [
      ['sliced', () => tf.matMul(tf.tensor3d(a, [4, 128, 16]), tf.tensor3d(b, [4, 16, 128]))],
      ['small slices', () => tf.matMul(tf.tensor3d(a.subarray(0, 4 * 8 * 16), [4, 8, 16]), tf.tensor3d(b.subarray(0, 4 * 16 * 8), [4, 16, 8]))],
      ['transposed', () => tf.matMul(tf.tensor3d(a, [4, 128, 16]), tf.tensor3d(b, [4, 128, 16]), false, true)],
    ];
    for (const [label, f] of cases) {
      const [w, c] = [await on('wasm', f), await on('cpu', f)];
      assert.deepEqual(w.shape, c.shape, label);
      let err = 0;
      for (let i = 0; i < c.values.length; i++) err = Math.max(err, Math.abs(w.values[i]! - c.values[i]!));
      assert.ok(err < 1e-4, `${label}: max difference ${err}`);
    }
    // The fallback for when our GEMM cannot load: one XNNPACK matMul per slice.
    const sliced = async () => {
      await initBackend('wasm');
      const kernel = stockWasmKernel('BatchMatMul:xnnpack-slices');
      assert.ok(kernel !== undefined);
      const [x, y] = [tf.tensor3d(a, [4, 128, 16]), tf.tensor3d(b, [4, 16, 128])];
      const out = tf
        .engine()
        .makeTensorFromTensorInfo(kernel({ inputs: { a: x, b: y }, attrs: { transposeA: false, transposeB: false }, backend: tf.backend() }) as tf.TensorInfo);
      const values = out.dataSync().slice();
      tf.dispose([x, y, out]);
      return values;
    };
    const [fromSlices, onCpu] = [await sliced(), (await on('cpu', cases[0]![1])).values];
    for (let i = 0; i < onCpu.length; i++) assert.ok(Math.abs(fromSlices[i]! - onCpu[i]!) < 1e-4, `sliced ${i}`);
    // The views are unregistered and the result owns its memory: nothing leaks, values stay put.
    await initBackend('wasm');
    const before = tf.memory().numTensors;
    const x = tf.tensor3d(a, [4, 128, 16]);
    const y = tf.tensor3d(b, [4, 16, 128]);
    const r1 = tf.matMul(x, y);
    const first = r1.dataSync().slice();
    const r2 = tf.matMul(x, y);
    assert.deepEqual(r1.dataSync(), first);
    assert.deepEqual(r2.dataSync(), first);
    tf.dispose([x, y, r1, r2]);
    assert.equal(tf.memory().numTensors, before);
  });
});
