/*
 * An inverted-dropout mask of n floats, the same bits as worker/rng.ts dropoutMask draws in
 * JavaScript (mulberry32): element i is 0 where u_i < rate, else keep = 1 / (1 - rate), with
 *
 *   state_i = seed + (i + 1) * 0x6d2b79f5 (mod 2^32)        the stream's i-th state
 *   t = (s ^ s >> 15) * (s | 1);  t ^= t + (t ^ t >> 7) * (t | 61);  x_i = t ^ t >> 14
 *   u_i = x_i / 2^32
 *
 * Each element depends only on its index, so 4 lanes go at once. u_i < rate is x_i < rate 2^32,
 * for an integer x_i the same as x_i < threshold = ceil(rate 2^32), which the caller passes
 * (below 2^32: rate < 1). ~40 ms of JavaScript per step at --vocab-size 256 --n-layers 4
 * --seq-len 128 (3.3M draws), and then a copy into the backend; here the mask is made in place.
 *
 * out is a byte address in the module's memory, any alignment. No stack, no static data.
 */
#include <wasm_simd128.h>

static inline v128_t mulberry4(v128_t s) {
  v128_t t = wasm_i32x4_mul(wasm_v128_xor(s, wasm_u32x4_shr(s, 15)), wasm_v128_or(s, wasm_i32x4_splat(1)));
  t = wasm_v128_xor(t, wasm_i32x4_add(t, wasm_i32x4_mul(wasm_v128_xor(t, wasm_u32x4_shr(t, 7)), wasm_v128_or(t, wasm_i32x4_splat(61)))));
  return wasm_v128_xor(t, wasm_u32x4_shr(t, 14));
}

__attribute__((export_name("dropout_mask"))) void dropout_mask(float *out, int n, unsigned seed, unsigned threshold, float keep) {
  const unsigned step = 0x6d2b79f5u;
  v128_t s = wasm_i32x4_make(seed + step, seed + 2 * step, seed + 3 * step, seed + 4 * step);
  const v128_t inc = wasm_i32x4_splat((int)(4 * step));
  const v128_t thr = wasm_i32x4_splat((int)threshold), k = wasm_f32x4_splat(keep);
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    /* keep where x >= threshold: the lanes of the comparison are all ones or all zeros. */
    wasm_v128_store(out + i, wasm_v128_and(k, wasm_u32x4_ge(mulberry4(s), thr)));
    s = wasm_i32x4_add(s, inc);
  }
  for (; i < n; i++) {
    unsigned x = (unsigned)wasm_i32x4_extract_lane(mulberry4(wasm_i32x4_splat((int)(seed + (unsigned)(i + 1) * step))), 0);
    out[i] = x >= threshold ? keep : 0.0f;
  }
}
