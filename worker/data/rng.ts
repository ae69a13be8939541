/**
 * Seeded randomness for the data side: sample order, toy data, dropout seeds. Built on the
 * model's generator (model/rng.ts: mulberry32 streams, 32-bit integer arithmetic only), so every
 * rank and every backend draws the same numbers from the same seed.
 */
import { streamSeed, uniformGenerator } from '../model/rng.js';

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
