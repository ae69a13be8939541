/**
 * Small seeded random numbers for data order, data generation and dropout seeds. Deterministic
 * across processes and platforms (32-bit integer arithmetic only), so every rank that uses the
 * same seed draws the same sequence.
 */

/** mulberry32: a 32-bit state generator; `next()` returns a float in [0, 1). */
export class Mulberry32 {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  /** A uint32. */
  nextUint32(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  next(): number {
    return this.nextUint32() / 4294967296;
  }
  /** An integer in [0, n), n ≤ 2^32. */
  below(n: number): number {
    return Math.floor(this.next() * n);
  }
}

/**
 * Hash integers into one uint32 seed (murmur3's finaliser over each part), so that nearby inputs
 * such as (seed, step) and (seed, step + 1) give unrelated seeds.
 */
export function mixSeed(...parts: readonly number[]): number {
  let h = 0x9e3779b9;
  for (const part of parts) {
    h ^= part >>> 0;
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
    h ^= h >>> 16;
    // Parts above 2^32 (large steps) keep their high bits.
    h = (h + Math.floor(part / 4294967296)) >>> 0;
  }
  return h >>> 0;
}

/** A permutation of 0..n-1 by Fisher–Yates, driven by `seed`. */
export function permutation(n: number, seed: number): Uint32Array {
  const perm = new Uint32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  const rng = new Mulberry32(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.below(i + 1);
    const t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  return perm;
}
