/**
 * Every random number of a run, generated in JavaScript rather than by tfjs kernels, so that the
 * same seed gives bit-identical initial weights, dropout masks, sample orders and toy data on every
 * backend (wasm, cpu, tensorflow) and in every process of a data-parallel group. 32-bit integer
 * arithmetic only (murmur3's finaliser to derive seeds, mulberry32 streams).
 *
 * Streams are keyed: `streamSeed(seed, key)` mixes a user seed with a small integer (a parameter's
 * index, a dropout site) so that adding a parameter or a layer never shifts the others' numbers.
 */

/** A 32-bit finaliser (murmur3's fmix32): spreads every input bit over the output. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A 32-bit stream seed from any integer-valued seed (up to 2^53) and a stream key. */
export function streamSeed(seed: number, key: number): number {
  const lo = seed >>> 0;
  const hi = Math.floor(seed / 0x100000000) >>> 0;
  return fmix32(fmix32(lo ^ fmix32(hi + 0x9e3779b9)) ^ Math.imul(key + 1, 0x9e3779b1));
}

/** mulberry32: a small, fast generator with a 2^32 period per stream; returns uniforms in [0, 1). */
export function uniformGenerator(seed32: number): () => number {
  let state = seed32 >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Fill `out` with N(0, std^2) samples (Box-Muller) from stream `seed32`. */
export function fillNormal(out: Float32Array, seed32: number, std: number): void {
  const u = uniformGenerator(seed32);
  for (let i = 0; i < out.length; i += 2) {
    const r = Math.sqrt(-2 * Math.log(1 - u())) * std; // 1 - u in (0, 1]: log is finite
    const theta = 2 * Math.PI * u();
    out[i] = r * Math.cos(theta);
    if (i + 1 < out.length) out[i + 1] = r * Math.sin(theta);
  }
}

/**
 * An inverted-dropout mask, as torch.nn.Dropout draws it: each element is 0 with probability
 * `rate`, else 1 / (1 - rate), so that `x * mask` keeps the expected value of x.
 */
export function dropoutMask(size: number, rate: number, seed32: number): Float32Array {
  const mask = new Float32Array(size);
  const keep = 1 / (1 - rate);
  const u = uniformGenerator(seed32);
  for (let i = 0; i < size; i++) mask[i] = u() < rate ? 0 : keep;
  return mask;
}

/** One 32-bit seed from a seed and keys, e.g. (seed, step, microStep, rank): nearby inputs give unrelated seeds. */
export function mixSeed(seed: number, ...keys: readonly number[]): number {
  return keys.reduce((s, key) => streamSeed(s, key), streamSeed(seed, 0));
}

/** A permutation of 0..n-1 by Fisher–Yates, driven by `seed`. */
export function permutation(n: number, seed: number): Uint32Array {
  const perm = new Uint32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  const u = uniformGenerator(seed >>> 0);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(u() * (i + 1));
    const t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  return perm;
}
