/**
 * The GPT's building blocks as tfjs ops with hand-written gradients, chosen for speed on the wasm
 * backend (measured there; see TFJS-NOTES.md) and correct on every backend:
 *   - matMul's autodiff uses `transposeA/B`, which leaves XNNPACK on stock wasm (10-30x slower):
 *     there our gradients transpose explicitly; on our GEMM (wasm_gemm.ts) they take the
 *     transposed forms directly.
 *   - gather's autodiff needs UnsortedSegmentSum, which wasm lacks: the embedding gradient
 *     scatters instead (scatterND sums duplicate indices).
 *   - tf.oneHot(.., 'float32') is broken on wasm: one-hots are built int32, then cast.
 *   - A single custom op records one tape node instead of one per elementary op, and saves only
 *     what its gradient needs.
 * Shapes: N rows (tokens), C features in, D features out, V vocabulary entries.
 *
 * Memory: everything a gradient needs goes through `save` (tfjs keeps those until backprop ends);
 * intermediates are disposed by the enclosing tidy. All ops run inside the caller's tf.tidy.
 */
import { dropoutMask } from '../rng.js';
import { matMulTakesTransposes, onOurWasmGemm, ourFusedKernels, tf } from '../tf.js';

type AnyTensor = tf.Tensor;
type Save = tf.GradSaveFunc;

/**
 * Gradients of y = x @ w (+ b): [dx, dw(, db)] for x [N, C], w [C, D], dy [N, D].
 * dx = dy @ w^T, dw = x^T @ dy: transposed matMuls where they run as fast as plain ones (our GEMM
 * on wasm folds the transposes into its packing). On stock wasm, whose transposed forms are
 * 10-30x slower, the transposes are explicit, and the weight gradient is (dy^T @ x)^T: 10-25%
 * faster there for every layer shape of the GPT, and dy^T also gives db as a sum over its last axis.
 */
export function linearGrads(x: tf.Tensor2D, w: tf.Tensor2D, dy: tf.Tensor2D, bias = true): tf.Tensor[] {
  if (matMulTakesTransposes()) {
    const grads = [tf.matMul(dy, w, false, true), tf.matMul(x, dy, true, false)];
    return bias ? [...grads, columnSums(dy)] : grads;
  }
  const dyT = tf.transpose(dy);
  const grads = [tf.matMul(dy, tf.transpose(w)), tf.transpose(tf.matMul(dyT, x))];
  return bias ? [...grads, tf.sum(dyT, 1)] : grads;
}

/**
 * x [N, D] summed over its rows → [D]. On wasm with our GEMM, as ones[1, N] @ x: tfjs's Sum over a
 * leading axis transposes first and is 5-8x slower there ([1024, 512]: 3.3 ms, not 0.4-0.7).
 */
export function columnSums(x: tf.Tensor2D): tf.Tensor1D {
  if (!onOurWasmGemm()) return tf.sum(x, 0);
  const [n, d] = x.shape;
  return tf.reshape(tf.matMul(tf.ones([1, n]), x), [d]);
}

/**
 * exp(u) for u <= 0 as sigmoid(u) / sigmoid(-u): sigmoid is an XNNPACK kernel on wasm, exp is
 * not (3x faster for [1024, 512]; relative error under 4e-7, and 0 once exp(u) < ~1e-38).
 */
export function fastExp<R extends AnyTensor>(u: R): R {
  return tf.div(tf.sigmoid(u), tf.sigmoid(tf.neg(u)));
}

/** y = x @ w + b. x [N, C], w [C, D] (stored [in, out], as tfjs Dense does), b [D] or none. */
export function linear(x: tf.Tensor2D, w: tf.Tensor2D, b?: tf.Tensor1D): tf.Tensor2D {
  if (b === undefined) return linearNoBias(x, w);
  return linearBias(x, w, b);
}

const linearBias = tf.customGrad((...args: (AnyTensor | Save)[]) => {
  const [x, w, b, save] = args as [tf.Tensor2D, tf.Tensor2D, tf.Tensor1D, Save];
  save([x, w]);
  // _FusedMatMul: one XNNPACK call for the product and the bias on wasm.
  const value = tf.fused.matMul({ a: x, b: w, bias: b });
  return {
    value,
    gradFunc: (dy: AnyTensor, saved: AnyTensor[]) => {
      const [xs, ws] = saved as [tf.Tensor2D, tf.Tensor2D];
      const d = dy as tf.Tensor2D;
      return linearGrads(xs, ws, d);
    },
  };
}) as (x: tf.Tensor2D, w: tf.Tensor2D, b: tf.Tensor1D) => tf.Tensor2D;

const linearNoBias = tf.customGrad((...args: (AnyTensor | Save)[]) => {
  const [x, w, save] = args as [tf.Tensor2D, tf.Tensor2D, Save];
  save([x, w]);
  return {
    value: tf.matMul(x, w),
    gradFunc: (dy: AnyTensor, saved: AnyTensor[]) => {
      const [xs, ws] = saved as [tf.Tensor2D, tf.Tensor2D];
      const d = dy as tf.Tensor2D;
      return linearGrads(xs, ws, d, false);
    },
  };
}) as (x: tf.Tensor2D, w: tf.Tensor2D) => tf.Tensor2D;

/**
 * Rows of `table` [V, C] at `ids` (int32 [N], each in [0, V)) → [N, C]: the embedding lookup,
 * and the selection of the rows the loss predicts. The gradient scatters dy's rows back into a
 * [V, C] zero table, summing rows whose ids repeat.
 */
export function gatherRows(table: tf.Tensor2D, ids: tf.Tensor1D): tf.Tensor2D {
  const op = tf.customGrad((...args: (AnyTensor | Save)[]) => {
    const [t, save] = args as [tf.Tensor2D, Save];
    save([ids]);
    return {
      value: tf.gather(t, ids),
      gradFunc: (dy: AnyTensor, saved: AnyTensor[]) => {
        const [idx] = saved as [tf.Tensor1D];
        return [tf.scatterND(tf.reshape(idx, [-1, 1]), dy, t.shape)];
      },
    };
  });
  return op(table) as tf.Tensor2D;
}

/**
 * LayerNorm over the last axis, as torch.nn.LayerNorm (biased variance). x [N, C], g/b [C].
 * On wasm with our kernels: two fused SIMD kernels (kernels/layernorm.c); elsewhere tfjs's ops.
 */
export function layerNorm(x: tf.Tensor2D, gamma: tf.Tensor1D, beta: tf.Tensor1D, eps = 1e-5): tf.Tensor2D {
  const fused = ourFusedKernels()?.layerNorm;
  if (fused === undefined) return layerNormOps(x, gamma, beta, eps);
  const op = tf.customGrad((...args: (AnyTensor | Save)[]) => {
    const [xi, g, b, save] = args as [tf.Tensor2D, tf.Tensor1D, tf.Tensor1D, Save];
    const [y, xhat, rstd] = tf.engine().runKernel(fused.forward, { x: xi, gamma: g, beta: b }, { eps }) as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D];
    save([xhat, rstd, g]);
    return {
      value: y,
      gradFunc: (dy: AnyTensor, saved: AnyTensor[]) => {
        const [xh, rs, gs] = saved as [tf.Tensor2D, tf.Tensor2D, tf.Tensor1D];
        return tf.engine().runKernel(fused.backward, { dy, xhat: xh, rstd: rs, gamma: gs }) as AnyTensor[];
      },
    };
  });
  return op(x, gamma, beta) as tf.Tensor2D;
}

/** layerNorm in tfjs's ops, on any backend. */
export function layerNormOps(x: tf.Tensor2D, gamma: tf.Tensor1D, beta: tf.Tensor1D, eps = 1e-5): tf.Tensor2D {
  const op = tf.customGrad((...args: (AnyTensor | Save)[]) => {
    const [xi, g, b, save] = args as [tf.Tensor2D, tf.Tensor1D, tf.Tensor1D, Save];
    const xc = tf.sub(xi, tf.mean(xi, 1, true));
    const rstd = tf.rsqrt(tf.add(tf.mean(tf.square(xc), 1, true), eps)); // [N, 1]
    const xhat = tf.mul(xc, rstd);
    save([xhat, rstd, g]);
    return {
      value: tf.add(tf.mul(xhat, g), b),
      gradFunc: (dy: AnyTensor, saved: AnyTensor[]) => {
        const [xh, rs, gs] = saved as [tf.Tensor2D, tf.Tensor2D, tf.Tensor1D];
        // dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), per row.
        const dxhat = tf.mul(dy, gs);
        const meanD = tf.mean(dxhat, 1, true);
        const meanDX = tf.mean(tf.mul(dxhat, xh), 1, true);
        const dx = tf.mul(rs, tf.sub(tf.sub(dxhat, meanD), tf.mul(xh, meanDX)));
        return [dx, columnSums(tf.mul(dy, xh) as tf.Tensor2D), columnSums(dy as tf.Tensor2D)];
      },
    };
  });
  return op(x, gamma, beta) as tf.Tensor2D;
}

/**
 * rng.ts dropoutMask(size, rate, seed32) as a float32 tensor of `dims`: on wasm with our kernels
 * made in place by one SIMD kernel (kernels/dropout.c, the same bits), elsewhere drawn in
 * JavaScript and copied in.
 */
export function dropoutMaskTensor(dims: number[], rate: number, seed32: number): AnyTensor {
  const kernel = ourFusedKernels()?.dropoutMask;
  if (kernel !== undefined) return tf.engine().runKernel(kernel, {}, { shape: dims, seed: seed32 >>> 0, rate }) as AnyTensor;
  return tf.tensor(
    dropoutMask(
      dims.reduce((a, b) => a * b, 1),
      rate,
      seed32,
    ),
    dims,
    'float32',
  );
}

const SQRT1_2 = Math.SQRT1_2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/**
 * Exact GELU, as torch.nn.functional.gelu: 0.5 x (1 + erf(x / sqrt(2))). Any shape.
 * On wasm with our kernels: two fused SIMD kernels (kernels/gelu.c); elsewhere tfjs's ops.
 */
export function gelu<R extends AnyTensor>(x: R): R {
  const fused = ourFusedKernels()?.gelu;
  if (fused === undefined) return geluOps(x);
  fusedGelu ??= tf.customGrad((...args: (AnyTensor | Save)[]) => {
    const [xi, save] = args as [AnyTensor, Save];
    save([xi]); // the gradient recomputes Phi(x) from x: nothing else is kept
    return {
      value: tf.engine().runKernel(fused.forward, { x: xi }) as AnyTensor,
      gradFunc: (dy: AnyTensor, saved: AnyTensor[]) => [tf.engine().runKernel(fused.backward, { x: saved[0] as AnyTensor, dy }) as AnyTensor],
    };
  }) as <T extends AnyTensor>(x: T) => T;
  return fusedGelu(x);
}

let fusedGelu: (<T extends AnyTensor>(x: T) => T) | undefined;

/** gelu in tfjs's ops, on any backend. */
export const geluOps = tf.customGrad((...args: (AnyTensor | Save)[]) => {
  const [x, save] = args as [AnyTensor, Save];
  const cdf = tf.mul(tf.add(tf.erf(tf.mul(x, SQRT1_2)), 1), 0.5); // Phi(x)
  save([x, cdf]);
  return {
    value: tf.mul(x, cdf),
    gradFunc: (dy: AnyTensor, saved: AnyTensor[]) => {
      const [xs, cdfs] = saved as [AnyTensor, AnyTensor];
      // d/dx x Phi(x) = Phi(x) + x phi(x), phi the standard normal density.
      const pdf = tf.mul(fastExp(tf.mul(tf.square(xs), -0.5)), INV_SQRT_2PI);
      return [tf.mul(dy, tf.add(cdfs, tf.mul(xs, pdf)))];
    },
  };
}) as <R extends AnyTensor>(x: R) => R;

/**
 * x [B*T, C] plus each sequence's positions table[0..T) ([P, C], P >= T). The table's gradient is
 * dy summed over the batch, zero-padded to [P, C]. (A broadcast add: no gather, which is slow on wasm.)
 */
export function addPositions(x: tf.Tensor2D, table: tf.Tensor2D, batchSize: number): tf.Tensor2D {
  const [rows, C] = x.shape;
  const T = rows / batchSize;
  const P = table.shape[0];
  const op = tf.customGrad((...args: (AnyTensor | Save)[]) => {
    const [xi, t] = args as [tf.Tensor2D, tf.Tensor2D];
    const value = tf.reshape(tf.add(tf.reshape(xi, [batchSize, T, C]), tf.slice(t, [0, 0], [T, C])), [rows, C]);
    return {
      value,
      gradFunc: (dy: AnyTensor) => {
        const dTable = tf.reshape(columnSums(tf.reshape(dy, [batchSize, T * C])), [T, C]);
        return [
          dy,
          T === P
            ? dTable
            : tf.pad(dTable, [
                [0, P - T],
                [0, 0],
              ]),
        ];
      },
    };
  });
  return op(x, table) as tf.Tensor2D;
}

/**
 * Summed cross-entropy: sum over rows of logsumexp(z_i) - z_i[y_i], a scalar.
 * logits [n, V] float32, targets n ids in [0, V). Gradient: (softmax(z) - onehot(y)) * dy.
 * On wasm with our kernels: two fused SIMD kernels (fusedCrossEntropySum); elsewhere tfjs's ops.
 */
export function crossEntropySum(logits: tf.Tensor2D, targets: Int32Array): tf.Scalar {
  const fused = ourFusedKernels()?.crossEntropy;
  return fused !== undefined ? fusedCrossEntropySum(logits, targets, fused) : crossEntropySumOps(logits, targets);
}

/**
 * crossEntropySum in tfjs's ops, on any backend. Built on the softmax kernel (XNNPACK on wasm: 7x
 * faster there than exp, and log is slower still): with m_i = max_j z_ij and P = softmax(z),
 * sum_j exp(z_ij - m_i) = 1 / max_j P_ij, so logsumexp(z_i) = m_i - log(max_j P_ij), where
 * max_j P_ij >= 1/V cannot underflow.
 */
export function crossEntropySumOps(logits: tf.Tensor2D, targets: Int32Array): tf.Scalar {
  const [n, vocab] = logits.shape;
  // z_i[y_i] by a flat gather at i * V + y_i: no one-hot in the forward pass.
  const flat = new Int32Array(n);
  for (let i = 0; i < n; i++) flat[i] = i * vocab + (targets[i] as number);
  const op = tf.customGrad((...args: (AnyTensor | Save)[]) => {
    const [z, save] = args as [tf.Tensor2D, Save];
    const probs = tf.softmax(z);
    const lse = tf.sub(tf.max(z, 1), tf.log(tf.max(probs, 1))); // [n]
    const picked = tf.gather(tf.reshape(z, [-1]), tf.tensor1d(flat, 'int32'));
    save([probs, tf.tensor1d(targets, 'int32')]);
    return {
      value: tf.sum(tf.sub(lse, picked)),
      gradFunc: (dy: AnyTensor, saved: AnyTensor[]) => {
        const [p, ys] = saved as [tf.Tensor2D, tf.Tensor1D];
        // Each [n, V] temporary is freed once the next is made (the largest tensors of a step at
        // the defaults; the wasm heap keeps its high-water mark): p and two more at most, not four.
        const onehot = tf.tidy(() => tf.cast(tf.oneHot(ys, vocab), 'float32')); // int32 first: wasm's float oneHot is broken
        const diff = tf.sub(p, onehot);
        onehot.dispose();
        const dz = tf.mul(diff, dy);
        diff.dispose();
        return [dz];
      },
    };
  });
  return op(logits) as tf.Scalar;
}

/**
 * crossEntropySum on our two kernels (kernels/xent.c via wasm_fused.ts; their names here): the loss
 * and P = softmax(z) in one call, the gradient from P in another. tfjs's ops make seven passes over
 * [n, V] forward and four backward; these three (row by row, in cache) and one.
 */
function fusedCrossEntropySum(logits: tf.Tensor2D, targets: Int32Array, kernels: { forward: string; backward: string }): tf.Scalar {
  const op = tf.customGrad((...args: (AnyTensor | Save)[]) => {
    const [z, save] = args as [tf.Tensor2D, Save];
    const ys = tf.tensor1d(targets, 'int32');
    const [loss, probs] = tf.engine().runKernel(kernels.forward, { logits: z, targets: ys }) as [tf.Scalar, tf.Tensor2D];
    save([probs, ys]);
    return {
      value: loss,
      gradFunc: (dy: AnyTensor, saved: AnyTensor[]) => {
        const [p, y] = saved as [tf.Tensor2D, tf.Tensor1D];
        return [tf.engine().runKernel(kernels.backward, { probs: p, targets: y, dy }) as tf.Tensor2D];
      },
    };
  });
  return op(logits) as tf.Scalar;
}
