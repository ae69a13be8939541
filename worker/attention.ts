/**
 * Causal multi-head self-attention core, as one op with a hand-written gradient: from the fused
 * QKV projection's output to the heads' concatenated output, before the output projection.
 *
 *   qkv [B*T, 3C] → q, k, v [B*H, T, dh]   (C = H * dh; the QKV columns are (3, H, dh) as
 *                                             PyTorch's qkv.view(B, T, 3, H, dh) reads them)
 *   S = (q / sqrt(dh)) @ k^T + maskBias     [B*H, T, T]; maskBias 0 or -1e9 (causal + padding)
 *   P = softmax(S); Pd = P * dropMask        (dropout on the attention weights)
 *   Y = Pd @ v → [B*T, C]
 *
 * A large negative instead of -inf keeps rows finite when every key is masked (a padded query),
 * where PyTorch would give NaN; rows with at least one key are identical to -inf masking.
 *
 * Batched (rank-3) matMul on wasm runs a scalar loop, not XNNPACK (about 1.5 GFLOP/s against ~17
 * for 2-D); for long sequences `bmm` therefore runs one 2-D matMul per (batch, head).
 */
import { tf } from './tf.js';

type T = tf.Tensor;
type Save = tf.GradSaveFunc;

/** Large negative added to masked scores: exp(-1e9 - max) is exactly 0 in float32. */
export const MASKED = -1e9;

export interface AttentionShape {
  readonly batchSize: number; // B
  readonly seqLen: number; // T
  readonly nHeads: number; // H
  readonly dHead: number; // dh
}

/**
 * The additive mask [B*H, T, T] (row-major): 0 where query i may attend key j (j <= i and
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
 * The attention core. qkv [B*T, 3C]; maskBias [B*H, T, T] from attentionMaskBias; dropMask
 * [B*H, T, T] (0 or 1/(1-p)) or undefined for no dropout. Returns [B*T, C].
 */
export function causalAttention(qkv: tf.Tensor2D, maskBias: tf.Tensor3D, dropMask: tf.Tensor3D | undefined,
  s: AttentionShape): tf.Tensor2D {
  const { batchSize: B, seqLen: T, nHeads: H, dHead: dh } = s;
  const BH = B * H;
  const C = H * dh;
  const scale = 1 / Math.sqrt(dh);
  const op = tf.customGrad((...args: (T | Save)[]) => {
    const [x, save] = args as [tf.Tensor2D, Save];
    // [B, T, 3, H, dh] → [3, B, H, T, dh], then q, k, v by row of a [3, B*H*T*dh] matrix.
    const parts = tf.reshape(tf.transpose(tf.reshape(x, [B, T, 3, H, dh]), [2, 0, 3, 1, 4]), [3, -1]);
    const part = (i: number) => tf.reshape(tf.gather(parts, [i]), [BH, T, dh]) as tf.Tensor3D;
    const q = tf.mul(part(0), scale) as tf.Tensor3D; // scaled once here: cheaper than scaling S
    const k = part(1);
    const v = part(2);
    const probs = tf.softmax(tf.add(bmm(q, k, 'NT'), maskBias)) as tf.Tensor3D;
    const dropped = dropMask === undefined ? probs : tf.mul(probs, dropMask) as tf.Tensor3D;
    save(dropMask === undefined ? [q, k, v, probs] : [q, k, v, probs, dropMask]);
    return {
      value: headsToRows(bmm(dropped, v, 'NN'), s),
      gradFunc: (dy: T, saved: T[]) => {
        const [qs, ks, vs, ps, dm] = saved as [tf.Tensor3D, tf.Tensor3D, tf.Tensor3D, tf.Tensor3D, tf.Tensor3D?];
        const dY = tf.reshape(tf.transpose(tf.reshape(dy, [B, T, H, dh]), [0, 2, 1, 3]), [BH, T, dh]) as tf.Tensor3D;
        const pd = dm === undefined ? ps : tf.mul(ps, dm) as tf.Tensor3D;
        const dv = bmm(pd, dY, 'TN');
        let dP = bmm(dY, vs, 'NT');
        if (dm !== undefined) dP = tf.mul(dP, dm) as tf.Tensor3D;
        // softmax backward, per row: dS = P * (dP - sum(dP * P)).
        const dS = tf.mul(ps, tf.sub(dP, tf.sum(tf.mul(dP, ps), -1, true))) as tf.Tensor3D;
        const dq = tf.mul(bmm(dS, ks, 'NN'), scale);
        const dk = bmm(dS, qs, 'TN');
        // [3, B, H, T, dh] → [B, T, 3, H, dh]: the inverse of the forward permutation.
        const dParts = tf.stack([dq, dk, dv]).reshape([3, B, H, T, dh]);
        return [tf.reshape(tf.transpose(dParts, [1, 3, 0, 2, 4]), [B * T, 3 * C])];
      },
    };
  });
  return op(qkv) as tf.Tensor2D;
}

/** [B*H, T, dh] → [B*T, C]: heads back side by side in each row, as PyTorch's transpose+view. */
function headsToRows(y: tf.Tensor3D, s: AttentionShape): tf.Tensor2D {
  const { batchSize: B, seqLen: T, nHeads: H, dHead: dh } = s;
  return tf.reshape(tf.transpose(tf.reshape(y, [B, H, T, dh]), [0, 2, 1, 3]), [B * T, H * dh]);
}

/** Which operand is transposed: 'NN' a @ b, 'NT' a @ b^T, 'TN' a^T @ b. */
export type BmmForm = 'NN' | 'NT' | 'TN';

/** Batched matMul over the leading axis, [n, ., .] x [n, ., .], in whichever form is faster. */
export function bmm(a: tf.Tensor3D, b: tf.Tensor3D, form: BmmForm): tf.Tensor3D {
  if (!useSlicedBmm(a, b)) return tf.matMul(a, b, form === 'TN', form === 'NT');
  const at = form === 'TN' ? tf.transpose(a, [0, 2, 1]) : a;
  const bt = form === 'NT' ? tf.transpose(b, [0, 2, 1]) : b;
  const n = a.shape[0];
  const outs: T[] = [];
  for (let i = 0; i < n; i++) {
    // gather, not slice/unstack: wasm's Slice copies its whole input once per call.
    const idx = tf.scalar(i, 'int32');
    outs.push(tf.matMul(tf.gather(at, idx), tf.gather(bt, idx)));
  }
  return tf.stack(outs) as tf.Tensor3D;
}

/** Per-slice 2-D matMuls pay off on wasm once each product is big enough to hide op overhead. */
let slicedBmmMinFlops = Number.POSITIVE_INFINITY;

/** Set the per-slice FLOP count from which `bmm` loops over 2-D matMuls (Infinity: never). */
export function setSlicedBmmThreshold(minFlopsPerSlice: number): void {
  slicedBmmMinFlops = minFlopsPerSlice;
}

function useSlicedBmm(a: tf.Tensor3D, b: tf.Tensor3D): boolean {
  const [, m, k] = a.shape;
  const n = b.shape[2];
  return 2 * m * k * n >= slicedBmmMinFlops;
}
