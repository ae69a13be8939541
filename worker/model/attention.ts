/**
 * Causal multi-head self-attention, from the block's normalised input through the fused QKV
 * projection to the heads' concatenated output (the output projection is a plain linear after
 * it), as one op with a hand-written gradient:
 *
 *   q|k|v = x @ W + b                 x [B*T, C], W [C, 3C] (columns q | k | v, each H heads of dh,
 *                                     as PyTorch's qkv.view(B, T, 3, H, dh) reads them), b [3C]
 *   S = (q / sqrt(dh)) @ k^T + maskBias   per (batch, head): [B*H, T, T]
 *   P = softmax(S); Pd = P * dropMask     dropout on the attention weights
 *   y = Pd @ v                        → [B*T, C], heads side by side
 *
 * maskBias is 0 or -1e9 (causal and key padding). A large negative instead of -inf keeps rows
 * finite when every key of a query is masked (PyTorch gives NaN there); any row with at least one
 * visible key comes out exactly as with -inf, since exp(-1e9 - max) is 0 in float32.
 *
 * wasm speed (TFJS-NOTES.md): q, k, v come from three column blocks of W, so no activation is
 * split; only 4-D transposes (5-D ones are 100x slower there); the batched matMuls of the backward
 * take transposed operands on our GEMM (bmm below).
 */
import { linearGrads } from './ops.js';
import { SLICED_MATMUL_MIN_FLOPS } from '../tf_wasm_kernels.js';
import { matMulTakesTransposes, tf } from '../tf.js';

type AnyTensor = tf.Tensor;
type Save = tf.GradSaveFunc;

/** Added to masked scores; exp(-1e9 - max) is exactly 0 in float32. */
export const MASKED = -1e9;

export interface AttentionShape {
  readonly batchSize: number; // B
  readonly seqLen: number; // T
  readonly nHeads: number; // H
  readonly dHead: number; // dh
}

/**
 * The additive mask [B*H, T, T] (row-major): 0 where query i may see key j (j <= i and
 * attentionMask[b, j] != 0), MASKED elsewhere. attentionMask is [B, T] row-major.
 */
export function attentionMaskBias(attentionMask: Int32Array, s: AttentionShape): Float32Array {
  const { batchSize: B, seqLen: T, nHeads: H } = s;
  const out = new Float32Array(B * H * T * T);
  const one = new Float32Array(T * T);
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < T; i++) {
      for (let j = 0; j < T; j++) one[i * T + j] = j <= i && attentionMask[b * T + j] !== 0 ? 0 : MASKED;
    }
    for (let h = 0; h < H; h++) out.set(one, (b * H + h) * T * T);
  }
  return out;
}

/**
 * The attention op. x [B*T, C] (the output of ln1), w [C, 3C], b [3C]; maskBias [B*H, T, T] from
 * attentionMaskBias; dropMask [B*H, T, T] (0 or 1/(1-p)), or undefined for no dropout.
 * Returns [B*T, C]. Gradients flow to x, w and b.
 */
export function causalSelfAttention(
  x: tf.Tensor2D,
  w: tf.Tensor2D,
  b: tf.Tensor1D,
  maskBias: tf.Tensor3D,
  dropMask: tf.Tensor3D | undefined,
  s: AttentionShape,
): tf.Tensor2D {
  const { batchSize: B, seqLen: T, nHeads: H, dHead: dh } = s;
  const C = H * dh;
  const scale = 1 / Math.sqrt(dh);
  const op = tf.customGrad((...args: (AnyTensor | Save)[]) => {
    const [xi, wi, bi, save] = args as [tf.Tensor2D, tf.Tensor2D, tf.Tensor1D, Save];
    const project = (part: number) =>
      tf.fused.matMul({
        // [C_in, C]: all input rows (C_in is C; a tensor-parallel rank's w is [C, 3C/tp], C its heads' width).
        a: xi,
        b: tf.slice(wi, [0, part * C], [-1, C]),
        bias: tf.slice(bi, [part * C], [C]),
      }) as tf.Tensor2D;
    const q = tf.mul(rowsToHeads(project(0), s), scale) as tf.Tensor3D; // scaled here: cheaper than S
    const kt = rowsToHeadsT(project(1), s); // [B*H, dh, T]
    const v = rowsToHeads(project(2), s);
    const probs = tf.softmax(tf.add(tf.matMul(q, kt), maskBias)) as tf.Tensor3D;
    const dropped = dropMask === undefined ? probs : (tf.mul(probs, dropMask) as tf.Tensor3D);
    save(dropMask === undefined ? [xi, wi, q, kt, v, probs] : [xi, wi, q, kt, v, probs, dropMask]);
    return {
      value: headsToRows(tf.matMul(dropped, v), s),
      gradFunc: (dy: AnyTensor, saved: AnyTensor[]) => {
        const [xs, ws, qs, kts, vs, ps, dm] = saved as [tf.Tensor2D, tf.Tensor2D, tf.Tensor3D, tf.Tensor3D, tf.Tensor3D, tf.Tensor3D, tf.Tensor3D?];
        const dY = rowsToHeads(dy as tf.Tensor2D, s);
        const pd = dm === undefined ? ps : (tf.mul(ps, dm) as tf.Tensor3D);
        const dv = bmm(pd, dY, true, false);
        let dP = bmm(dY, vs, false, true);
        if (dm !== undefined) dP = tf.mul(dP, dm) as tf.Tensor3D;
        // softmax backward, per row: dS = P * (dP - sum(dP * P)).
        const dS = tf.mul(ps, tf.sub(dP, tf.sum(tf.mul(dP, ps), -1, true))) as tf.Tensor3D;
        const dq = tf.mul(bmm(dS, kts, false, true), scale) as tf.Tensor3D;
        const dk = bmm(dS, qs, true, false);
        // Columns q | k | v again, then the projection's own gradients.
        const dqkv = tf.concat([headsToRows(dq, s), headsToRows(dk, s), headsToRows(dv, s)], 1);
        return linearGrads(xs, ws, dqkv);
      },
    };
  });
  return op(x, w, b) as tf.Tensor2D;
}

/** [B*T, C] → [B*H, T, dh]: each head's rows together. */
function rowsToHeads(t: tf.Tensor2D, s: AttentionShape): tf.Tensor3D {
  const { batchSize: B, seqLen: T, nHeads: H, dHead: dh } = s;
  return tf.reshape(tf.transpose(tf.reshape(t, [B, T, H, dh]), [0, 2, 1, 3]), [B * H, T, dh]);
}

/** [B*T, C] → [B*H, dh, T]: each head's rows, transposed (keys, ready for q @ k^T). */
function rowsToHeadsT(t: tf.Tensor2D, s: AttentionShape): tf.Tensor3D {
  const { batchSize: B, seqLen: T, nHeads: H, dHead: dh } = s;
  return tf.reshape(tf.transpose(tf.reshape(t, [B, T, H, dh]), [0, 2, 3, 1]), [B * H, dh, T]);
}

/** [B*H, T, dh] → [B*T, C]: heads back side by side in each row (PyTorch's transpose + view). */
function headsToRows(t: tf.Tensor3D, s: AttentionShape): tf.Tensor2D {
  const { batchSize: B, seqLen: T, nHeads: H, dHead: dh } = s;
  return tf.reshape(tf.transpose(tf.reshape(t, [B, H, T, dh]), [0, 2, 1, 3]), [B * T, H * dh]);
}

/**
 * Batched a @ b with optional transposes, [n, ., .] each. Our GEMM (and every backend but stock
 * wasm) takes the transposed forms directly. On stock wasm, big slices run on XNNPACK
 * (tf_wasm_kernels.ts), which takes only the plain form: transpose explicitly there; small ones
 * stay on the scalar kernel, which reads transposed operands in place at least as fast.
 */
function bmm(a: tf.Tensor3D, b: tf.Tensor3D, transposeA: boolean, transposeB: boolean): tf.Tensor3D {
  if (matMulTakesTransposes()) return tf.matMul(a, b, transposeA, transposeB);
  const [m, k] = transposeA ? [a.shape[2], a.shape[1]] : [a.shape[1], a.shape[2]];
  const cols = transposeB ? b.shape[1] : b.shape[2];
  if (2 * m * k * cols < SLICED_MATMUL_MIN_FLOPS) return tf.matMul(a, b, transposeA, transposeB);
  return tf.matMul(transposeA ? tf.transpose(a, [0, 2, 1]) : a, transposeB ? tf.transpose(b, [0, 2, 1]) : b);
}
