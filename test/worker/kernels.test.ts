/**
 * Our WebAssembly kernels (worker/kernels/): the committed kernels.wasm and kernels_fma.wasm are
 * what their C sources build to; both keep to the memory they are given (no stack, no static
 * data) and agree with float64; this runtime runs the FMA build; the GEMM
 * behind tfjs's MatMul kernels on wasm agrees with a float64 reference on random shapes (odd
 * sizes, every transposition, batches with broadcasting, bias) within the float32 error of
 * tfjs's own kernel, and hands what it does not cover to the original kernels.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { packagePath } from '../../shared/runtime.js';
import {
  fixedMemory,
  instantiateKernels,
  kernelBuild,
  KERNELS_FMA_WASM,
  KERNELS_WASM,
  type KernelBuild,
  type KernelExports,
} from '../../worker/kernels/module.js';
import { initBackend, onOurWasmGemm, tf } from '../../worker/tf.js';
import { stockWasmKernel } from '../../worker/tf_wasm_kernels.js';
import { onWasmBackend } from '../helpers/wasm_backend.js';
import { randoms } from '../helpers/randoms.js';

interface Case {
  readonly batchA: number; // 0: a is 2-D
  readonly batchB: number;
  readonly m: number;
  readonly n: number;
  readonly k: number;
  readonly tA: boolean;
  readonly tB: boolean;
  readonly bias: boolean;
}

/**
 * op(A) @ op(B) (+ bias) in float64 for every batch entry, and the matching sums of |terms|
 * (the scale of the float32 rounding error of any summation order).
 */
function reference(c: Case, a: Float32Array, b: Float32Array, bias: Float32Array | undefined): { value: Float64Array; scale: Float64Array } {
  const batch = Math.max(c.batchA, c.batchB, 1);
  const value = new Float64Array(batch * c.m * c.n);
  const scale = new Float64Array(batch * c.m * c.n);
  for (let q = 0; q < batch; q++) {
    const aq = c.batchA > 1 ? q * c.m * c.k : 0;
    const bq = c.batchB > 1 ? q * c.k * c.n : 0;
    for (let i = 0; i < c.m; i++) {
      for (let j = 0; j < c.n; j++) {
        let s = bias ? bias[j]! : 0;
        let abs = Math.abs(s);
        for (let p = 0; p < c.k; p++) {
          const x = a[aq + (c.tA ? p * c.m + i : i * c.k + p)]! * b[bq + (c.tB ? j * c.k + p : p * c.n + j)]!;
          s += x;
          abs += Math.abs(x);
        }
        value[(q * c.m + i) * c.n + j] = s;
        scale[(q * c.m + i) * c.n + j] = abs;
      }
    }
  }
  return { value, scale };
}

/** Largest |got - ref| / scale: the error in units of the sum of |terms|. */
function worstError(got: Float32Array, ref: { value: Float64Array; scale: Float64Array }): number {
  let worst = 0;
  for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i]! - ref.value[i]!) / (ref.scale[i]! || 1));
  return worst;
}

const shapeOf = (batch: number, rows: number, cols: number) => (batch === 0 ? [rows, cols] : [batch, rows, cols]);

/** Runs case c through the registered kernels (ours) and through tfjs's original kernel. */
function run(c: Case, seed: number): { ours: Float32Array; stock: Float32Array; shape: number[]; ref: ReturnType<typeof reference> } {
  const a = randoms(Math.max(c.batchA, 1) * c.m * c.k, seed);
  const b = randoms(Math.max(c.batchB, 1) * c.k * c.n, seed + 1);
  const bias = c.bias ? randoms(c.n, seed + 2) : undefined;
  const ref = reference(c, a, b, bias);
  let result: { ours: Float32Array; stock: Float32Array; shape: number[] } | undefined;
  tf.tidy(() => {
    const ta = tf.tensor(a, shapeOf(c.batchA, c.tA ? c.k : c.m, c.tA ? c.m : c.k));
    const tb = tf.tensor(b, shapeOf(c.batchB, c.tB ? c.n : c.k, c.tB ? c.k : c.n));
    const tbias = bias ? tf.tensor1d(bias) : undefined;
    const out = tbias ? tf.fused.matMul({ a: ta, b: tb, bias: tbias, transposeA: c.tA, transposeB: c.tB }) : tf.matMul(ta, tb, c.tA, c.tB);
    // tfjs's own kernel, given rank-3 operands as tfjs-core gives them.
    const to3d = (t: tf.Tensor) => (t.rank === 3 ? t : tf.reshape(t, [1, ...t.shape]));
    const attrs = { transposeA: c.tA, transposeB: c.tB, activation: 'linear' };
    const kernel = stockWasmKernel(tbias ? '_FusedMatMul' : 'BatchMatMul')!;
    const info = kernel({ inputs: { a: to3d(ta), b: to3d(tb), ...(tbias ? { bias: tbias } : {}) }, attrs, backend: tf.backend() });
    const stock = tf.engine().makeTensorFromTensorInfo(info as tf.TensorInfo);
    result = { ours: out.dataSync() as Float32Array, stock: stock.dataSync() as Float32Array, shape: out.shape };
  });
  return { ...result!, ref };
}

const BUILDS: readonly { readonly build: KernelBuild; readonly file: URL }[] = [
  { build: 'plain', file: KERNELS_WASM },
  { build: 'fma', file: KERNELS_FMA_WASM },
];

describe('kernels.wasm and kernels_fma.wasm', () => {
  it('are what scripts/build_kernels.sh builds from gemm.c, adamw.c and xent.c', (t) => {
    const probe = spawnSync('clang-19', ['--version']);
    if (probe.error !== undefined) return t.skip('clang-19 is not installed (apt-get install clang-19 lld-19): the committed build is not checked');
    if (spawnSync('wasm-ld-19', ['--version']).error !== undefined && spawnSync('wasm-ld', ['--version']).error !== undefined) {
      return t.skip('lld-19 is not installed (apt-get install lld-19): the committed build is not checked');
    }
    const dir = mkdtempSync(join(tmpdir(), 'rosedist-kernels-'));
    try {
      const r = spawnSync(packagePath('scripts/build_kernels.sh'), [dir], { encoding: 'utf8' });
      assert.equal(r.status, 0, `build failed: ${r.stderr}`);
      for (const { file } of BUILDS) {
        const name = file.pathname.split('/').pop()!;
        assert.ok(
          readFileSync(join(dir, name)).equals(readFileSync(file)),
          `worker/kernels/${name} differs from a fresh build of its sources: run scripts/build_kernels.sh and commit the result`,
        );
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  for (const { build, file } of BUILDS) {
    it(`${build}: imports its memory and has no data segments`, () => {
      const bytes = readFileSync(file);
      const sections = new Set<number>();
      for (let at = 8; at < bytes.length;) {
        const id = bytes[at++]!;
        let size = 0;
        for (let shift = 0; ; shift += 7) {
          const byte = bytes[at++]!;
          size |= (byte & 0x7f) << shift;
          if ((byte & 0x80) === 0) break;
        }
        sections.add(id);
        at += size;
      }
      assert.ok(sections.has(2), 'an import section (the memory)');
      assert.ok(!sections.has(5), 'no memory of its own');
      assert.ok(!sections.has(11), 'no data segments');
    });

    it(`${build}: writes only the output and the scratch it is given (no stack, no static data), and agrees with float64`, () => {
      const memory = fixedMemory(64); // 4 MiB
      const loaded = instantiateKernels(memory, build);
      if (typeof loaded === 'string') assert.fail(loaded);
      const k: KernelExports = loaded;
      const f32 = new Float32Array(memory.buffer);
      f32.fill(Number.NaN);
      const [m, n, kk] = [9, 21, 13];
      const [aAt, bAt, cAt, scratchAt] = [1024, 4096, 8192, 65536]; // byte offsets
      const a = randoms(m * kk, 1);
      const b = randoms(kk * n, 2);
      f32.set(a, aAt / 4);
      f32.set(b, bAt / 4);
      const before = f32.slice();
      k.gemm(1, m, n, kk, aAt, 0, 0, bAt, 0, 1, cAt, 0, scratchAt);
      const scratchEnd = scratchAt / 4 + k.gemm_scratch_floats();
      for (let i = 0; i < f32.length; i++) {
        const inC = i >= cAt / 4 && i < cAt / 4 + m * n;
        const inScratch = i >= scratchAt / 4 && i < scratchEnd;
        if (!inC && !inScratch && !Object.is(f32[i], before[i])) assert.fail(`gemm wrote float ${i}, outside its output and scratch`);
        if (inC) assert.ok(Number.isFinite(f32[i]), `output ${i - cAt / 4} not written`);
      }
      const ref = reference({ batchA: 0, batchB: 0, m, n, k: kk, tA: false, tB: true, bias: false }, a, b, undefined);
      const e = worstError(f32.subarray(cAt / 4, cAt / 4 + m * n), ref);
      assert.ok(e <= (kk + 1) * 2 ** -24, `error ${e}`);
    });
  }

  it('runs the FMA build on this runtime (Node 20 takes relaxed SIMD behind a flag the loader sets)', () => {
    assert.equal(kernelBuild(), 'fma');
  });
});

describe('our GEMM behind tfjs MatMul on wasm', () => {
  onWasmBackend();

  it('is installed', () => {
    assert.ok(onOurWasmGemm(), 'the wasm backend runs our GEMM');
  });

  it('agrees with float64 within the float32 error of tfjs own kernel: odd shapes, every transposition, batches, bias', () => {
    const sizes: [number, number, number][] = [
      [1, 1, 1],
      [3, 5, 7],
      [4, 8, 16],
      [13, 17, 9],
      [37, 70, 129],
      [64, 10, 600],
      [5, 1030, 21],
      [130, 33, 513],
    ];
    let seed = 10;
    let worstOurs = 0;
    let worstStock = 0;
    for (const [m, n, k] of sizes) {
      for (const [batchA, batchB] of [
        [0, 0],
        [3, 3],
        [3, 1],
        [1, 3],
      ] as const) {
        for (const tA of [false, true]) {
          for (const tB of [false, true]) {
            const c: Case = { batchA, batchB, m, n, k, tA, tB, bias: (m + n + (tA ? 1 : 0) + (tB ? 1 : 0)) % 2 === 0 && batchA === batchB };
            const { ours, stock, shape, ref } = run(c, (seed += 3));
            const label = JSON.stringify(c);
            assert.deepEqual(shape, [...(batchA || batchB ? [Math.max(batchA, batchB)] : []), m, n], label);
            const e = worstError(ours, ref);
            const es = worstError(stock, ref);
            // Any order of summing k products in float32 is within k * 2^-24 of the sum of |terms|.
            assert.ok(e <= (k + 1) * 2 ** -24, `${label}: error ${e}`);
            // tfjs's _FusedMatMul adds the bias wrongly when batched or both transposed (the
            // next test): compare the two on products without bias.
            if (!c.bias) {
              worstOurs = Math.max(worstOurs, e);
              worstStock = Math.max(worstStock, es);
            }
          }
        }
      }
    }
    // Over all cases: no worse than tfjs's own kernel, within a factor for luck of rounding.
    assert.ok(worstOurs <= 2 * worstStock, `worst error ours ${worstOurs}, tfjs ${worstStock}`);
  });

  it('adds a bias to a batched product as the cpu backend does (tfjs-wasm 4.22 adds it to the wrong rows)', async () => {
    const f = () =>
      tf.tidy(() =>
        tf.fused
          .matMul({
            a: tf.tensor3d([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [2, 2, 3]),
            b: tf.tensor3d([1, 0, 0, 1, 1, 1, 2, 0, 0, 2, 1, 1], [2, 3, 2]),
            bias: tf.tensor1d([100, 200]),
          })
          .arraySync(),
      );
    const wasm = f();
    await initBackend('cpu');
    const cpu = f();
    await initBackend('wasm');
    assert.deepEqual(cpu, [
      [
        [104, 205],
        [110, 211],
      ],
      [
        [123, 225],
        [132, 234],
      ],
    ]);
    assert.deepEqual(wasm, cpu);
  });

  it('leaves what it does not cover to the original kernels, and leaks nothing', async () => {
    const a = randoms(6 * 4, 1);
    const b = randoms(4 * 5, 2);
    const bias = randoms(5, 3);
    const relu = () => tf.fused.matMul({ a: tf.tensor2d(a, [6, 4]), b: tf.tensor2d(b, [4, 5]), bias: tf.tensor1d(bias), activation: 'relu' });
    const wasm = tf.tidy(() => relu().dataSync().slice());
    await initBackend('cpu');
    const cpu = tf.tidy(() => relu().dataSync().slice());
    await initBackend('wasm');
    for (let i = 0; i < cpu.length; i++) assert.ok(Math.abs(wasm[i]! - cpu[i]!) < 1e-6, `relu ${i}: ${wasm[i]} vs ${cpu[i]}`);
    assert.ok(wasm.some((x) => x === 0) && wasm.some((x) => x > 0), 'relu applied');
    const before = tf.memory().numTensors;
    tf.tidy(() => tf.matMul(tf.tensor2d(a, [6, 4]), tf.tensor2d(b, [4, 5])).dataSync());
    assert.equal(tf.memory().numTensors, before);
  });

  it('stays correct after the backend memory grows (the module sees the same memory)', () => {
    const a = randoms(7 * 9, 4);
    const b = randoms(9 * 11, 5);
    const first = tf.tidy(() =>
      tf
        .matMul(tf.tensor2d(a, [7, 9]), tf.tensor2d(b, [9, 11]))
        .dataSync()
        .slice(),
    );
    const big = tf.zeros([64 * 1024 * 1024]); // 256 MB: grows the heap
    const again = tf.tidy(() =>
      tf
        .matMul(tf.tensor2d(a, [7, 9]), tf.tensor2d(b, [9, 11]))
        .dataSync()
        .slice(),
    );
    big.dispose();
    assert.deepEqual(again, first);
  });
});
