/**
 * Our fused cross-entropy (worker/kernels/xent.c, wired by worker/wasm_fused.ts): its SIMD exp
 * against Math.exp, the memory it writes, and crossEntropySum on wasm — loss and gradient —
 * against a float64 reference and against tfjs's ops (crossEntropySumOps, which every other backend
 * keeps) on wasm and cpu, on random logits of odd widths and large magnitudes.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { describe, it } from 'node:test';
import { packagePath, tsNodeArgs } from '../../shared/runtime.js';
import { fixedMemory, instantiateKernels, type KernelExports } from '../../worker/kernels/module.js';
import { crossEntropySum, crossEntropySumOps } from '../../worker/model/ops.js';
import { initBackend, ourFusedKernels, tf } from '../../worker/tf.js';
import { onWasmBackend } from '../helpers/wasm_backend.js';
import { randoms } from '../helpers/randoms.js';

const EPS = 2 ** -24; // half an ulp of 1 in float32
const FLT_MIN = 2 ** -126;

/** Loss per row and softmax in float64, from the float32 logits. */
function reference(z: Float32Array, ys: Int32Array, v: number): { rows: Float64Array; probs: Float64Array } {
  const n = ys.length;
  const rows = new Float64Array(n);
  const probs = new Float64Array(n * v);
  for (let i = 0; i < n; i++) {
    let m = -Infinity;
    for (let j = 0; j < v; j++) m = Math.max(m, z[i * v + j]!);
    let s = 0;
    for (let j = 0; j < v; j++) s += Math.exp(z[i * v + j]! - m);
    for (let j = 0; j < v; j++) probs[i * v + j] = Math.exp(z[i * v + j]! - m) / s;
    rows[i] = m + Math.log(s) - z[i * v + ys[i]!]!;
  }
  return { rows, probs };
}

/** The loss and d(loss * dyScale)/dlogits through crossEntropySum on the current backend. */
function lossAndGrad(z: Float32Array, ys: Int32Array, v: number, dyScale: number, xent = crossEntropySum): { loss: number; grad: Float32Array } {
  return tf.tidy(() => {
    const logits = tf.tensor2d(z, [ys.length, v]);
    const { value, grads } = tf.variableGrads(() => tf.mul(xent(tf.add(logits, lv), ys), dyScale) as tf.Scalar, [lv]);
    return { loss: (value.dataSync()[0] as number) / dyScale, grad: (grads[lv.name] as tf.Tensor).dataSync() as Float32Array };
  });
}
let lv: tf.Variable; // a zero [n, V] variable the logits go through, so that they get a gradient

const CASES: { n: number; v: number; scale: number }[] = [
  { n: 1, v: 2, scale: 1 }, // (tfjs oneHot needs V >= 2)
  { n: 1, v: 7, scale: 1 },
  { n: 3, v: 10, scale: 4 },
  { n: 5, v: 1001, scale: 1 },
  { n: 2, v: 257, scale: 200 },
  { n: 4, v: 515, scale: 2000 }, // most of each row's exps underflow
  { n: 9, v: 10000, scale: 8 },
];

// Both builds (kernels.wasm, kernels_fma.wasm: -ffp-contract=off, so the same arithmetic).
for (const build of ['plain', 'fma'] as const)
  describe(`xent.c (${build} build)`, () => {
    const memory = fixedMemory(64); // 4 MiB
    const k = instantiateKernels(memory, build) as KernelExports;

    it('exp: within 2 ulp of Math.exp over [-87.3, 88], 0 below exp(-87.3) = FLT_MIN, NaN for NaN', () => {
      assert.equal(typeof k, 'object');
      const f32 = new Float32Array(memory.buffer);
      const n = 1 << 18;
      const x = Float32Array.from({ length: n }, (_, i) => -104 + (i / n) * 192);
      x.set([-Infinity, -1e30, -87.5, 0, -0, NaN, 88, 1e-30, -1e-30], 0);
      f32.set(x, 0);
      k.exp_f32(0, 4 * n + 12, n); // an unaligned output
      const out = f32.subarray(n + 3, 2 * n + 3);
      let worst = 0;
      for (let i = 0; i < n; i++) {
        const [xi, got] = [x[i]!, out[i]!];
        if (Number.isNaN(xi)) {
          assert.ok(Number.isNaN(got), `exp(NaN) = ${got}`);
          continue;
        }
        assert.ok(Number.isFinite(got) && got >= 0, `exp(${xi}) = ${got}`);
        const e = Math.exp(xi);
        if (e < FLT_MIN) {
          assert.ok(got <= FLT_MIN, `exp(${xi}) = ${got}`);
          continue;
        }
        const ulp = 2 ** (Math.floor(Math.log2(e)) - 23);
        worst = Math.max(worst, Math.abs(got - e) / ulp);
      }
      assert.ok(worst <= 2, `worst error ${worst} ulp`);
      assert.equal(out[0], 0);
      assert.equal(out[3], 1);
    });

    it('forward writes only P, backward only the gradient (no stack, no static data)', () => {
      const f32 = new Float32Array(memory.buffer);
      const i32 = new Int32Array(memory.buffer);
      f32.fill(Number.NaN);
      const [n, v] = [3, 37];
      const [zAt, yAt, pAt, gAt] = [1028, 8192, 12292, 20480]; // byte offsets, some unaligned to 16
      f32.set(randoms(n * v, 7), zAt / 4);
      i32.set([0, 36, 17], yAt / 4);
      const before = f32.slice();
      const loss = k.xent_forward(zAt, yAt, n, v, pAt);
      assert.ok(Number.isFinite(loss) && loss > 0, `loss ${loss}`);
      k.xent_backward(pAt, yAt, n, v, 0.5, gAt);
      for (let i = 0; i < f32.length; i++) {
        const inP = i >= pAt / 4 && i < pAt / 4 + n * v;
        const inG = i >= gAt / 4 && i < gAt / 4 + n * v;
        if (!inP && !inG && !Object.is(f32[i], before[i])) assert.fail(`wrote float ${i}, outside its outputs`);
        if (inP || inG) assert.ok(Number.isFinite(f32[i]), `output float ${i} not written`);
      }
    });
  });

describe('crossEntropySum on wasm with our kernels', () => {
  onWasmBackend();

  it('runs our kernels, leaking no tensor', async () => {
    assert.notEqual(ourFusedKernels()?.crossEntropy, undefined);
    const [n, v] = [4, 9];
    lv = tf.variable(tf.zeros([n, v]));
    const ys = Int32Array.from([0, 8, 3, 3]);
    const z = randoms(n * v, 3);
    lossAndGrad(z, ys, v, 1); // warm
    const tensors = tf.memory().numTensors;
    const profile = await tf.profile(() => void lossAndGrad(z, ys, v, 1));
    const names = profile.kernels.map((kr) => kr.name);
    assert.ok(names.includes('RosedistCrossEntropy') && names.includes('RosedistCrossEntropyGrad'), names.join(' '));
    assert.ok(!names.includes('Softmax') && !names.includes('OneHot'), names.join(' '));
    assert.equal(tf.memory().numTensors, tensors);
    lv.dispose();
  });

  it('matches float64 and tfjs ops (on wasm and cpu) within float32 rounding: loss and gradient', async () => {
    let seed = 100;
    for (const { n, v, scale } of CASES) {
      const label = `n ${n}, V ${v}, logits x${scale}`;
      const z = randoms(n * v, (seed += 7)).map((x) => x * scale);
      const ys = Int32Array.from(randoms(n, (seed += 7)), (r) => Math.min(v - 1, Math.floor((r + 0.5) * v)));
      ys[0] = v - 1; // the last column, past the SIMD body
      const dyScale = 1 / 3;
      lv = tf.variable(tf.zeros([n, v]));
      const ours = lossAndGrad(z, ys, v, dyScale);
      const opsWasm = lossAndGrad(z, ys, v, dyScale, crossEntropySumOps);
      lv.dispose();
      await initBackend('cpu');
      assert.equal(ourFusedKernels()?.crossEntropy, undefined, 'the cpu backend keeps tfjs ops');
      lv = tf.variable(tf.zeros([n, v]));
      const ops = lossAndGrad(z, ys, v, dyScale);
      lv.dispose();
      await initBackend('wasm');

      const ref = reference(z, ys, v);
      const total = ref.rows.reduce((a, b) => a + b, 0);
      // Per row: exp within 2 ulp, s and log(s) rounded to float32, P scaled by 1/s; then the
      // total rounded to float32.
      let bound = EPS * Math.abs(total);
      for (let i = 0; i < n; i++) bound += 8 * EPS * (Math.log(v) + 1);
      assert.ok(Math.abs(ours.loss - total) <= bound, `${label}: loss ${ours.loss}, float64 ${total}, bound ${bound}`);
      for (const [side, other] of [
        ['cpu', ops],
        ['wasm', opsWasm],
      ] as const) {
        assert.ok(Math.abs(other.loss - total) <= Math.max(bound, 16 * n * EPS * scale), `${label}: tfjs ops' loss on ${side} ${other.loss} vs ${total}`);
      }
      const rowMax = Array.from({ length: n }, (_, r) => z.subarray(r * v, r * v + v).reduce((a, b) => Math.max(a, b)));
      for (let i = 0; i < n * v; i++) {
        const onehot = ys[Math.floor(i / v)] === i % v ? 1 : 0;
        const want = (ref.probs[i]! - onehot) * dyScale;
        // P within 8 ulp (relative) plus what rounding z - m to float32 costs exp (|z - m| ulp),
        // or below FLT_MIN where the exps flush to 0.
        const x = Math.abs(z[i]! - rowMax[Math.floor(i / v)]!);
        const tol = (EPS * ((8 + x) * ref.probs[i]! + 8 * onehot) + FLT_MIN) * dyScale;
        assert.ok(Math.abs(ours.grad[i]! - want) <= tol, `${label}: grad ${i} ${ours.grad[i]} vs ${want}`);
        for (const other of [ops, opsWasm]) {
          assert.ok(Math.abs(ours.grad[i]! - other.grad[i]!) <= 2 * tol + 1e-7 * dyScale, `${label}: grad ${i} ${ours.grad[i]} vs tfjs ops ${other.grad[i]}`);
        }
      }
    }
  });

  it('gives NaN for a row with a NaN or an infinite logit, and names a target out of range', () => {
    const v = 11;
    for (const bad of [Number.NaN, Infinity, -Infinity]) {
      const z = randoms(2 * v, 5);
      z[v + 4] = bad;
      const loss = tf.tidy(() => crossEntropySum(tf.tensor2d(z, [2, v]), Int32Array.from([1, 2])).dataSync()[0]);
      if (bad === -Infinity) assert.ok(Number.isFinite(loss), `a -inf logit that is not the target: ${loss}`);
      else assert.ok(Number.isNaN(loss), `logit ${bad}: loss ${loss}`);
    }
    assert.throws(
      () => tf.tidy(() => crossEntropySum(tf.tensor2d(randoms(2 * v, 6), [2, v]), Int32Array.from([1, v]))),
      /the target id 11 is not in \[0, 10\]/,
    );
  });

  it('is left out with ROSEDIST_STOCK_WASM_KERNELS=1 (tfjs ops on wasm, the same loss)', () => {
    const [n, v] = [3, 21];
    const z = randoms(n * v, 9).map((x) => x * 10);
    const ys = Int32Array.from([0, 20, 7]);
    const url = (f: string) => JSON.stringify(pathToFileURL(packagePath(f)).href);
    const script = `
      const { initBackend, ourFusedKernels, tf } = await import(${url('worker/tf.ts')});
      const { crossEntropySum } = await import(${url('worker/model/ops.ts')});
      await initBackend('wasm');
      const z = tf.tensor2d(${JSON.stringify([...z])}, [${n}, ${v}]);
      const ys = Int32Array.from(${JSON.stringify([...ys])});
      const profile = await tf.profile(() => void tf.tidy(() => tf.grad((x) => crossEntropySum(x, ys))(z)));
      const loss = tf.tidy(() => crossEntropySum(z, ys).dataSync()[0]);
      console.log(JSON.stringify({ fused: ourFusedKernels()?.crossEntropy !== undefined, names: profile.kernels.map((k) => k.name), loss }));`;
    const r = spawnSync(process.execPath, [...tsNodeArgs(), '--input-type=module', '-e', script], {
      encoding: 'utf8',
      env: { ...process.env, ROSEDIST_STOCK_WASM_KERNELS: '1' },
    });
    assert.equal(r.status, 0, r.stderr);
    const stock = JSON.parse(r.stdout.trim().split('\n').at(-1) as string) as { fused: boolean; names: string[]; loss: number };
    assert.equal(stock.fused, false);
    assert.ok(stock.names.includes('Softmax') && !stock.names.some((k) => k.startsWith('Rosedist')), stock.names.join(' '));
    const ours = tf.tidy(() => crossEntropySum(tf.tensor2d(z, [n, v]), ys).dataSync()[0] as number);
    assert.ok(Math.abs(ours - stock.loss) <= 1e-5 * Math.abs(stock.loss), `ours ${ours}, tfjs ops ${stock.loss}`);
  });
});
