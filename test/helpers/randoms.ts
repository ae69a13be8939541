/** Test data from a seeded LCG, independent of the code under test. */

/** `n` floats in [-0.5, 0.5) from a seeded LCG (the same `seed` gives the same values). */
export function randoms(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296 - 0.5;
  });
}
