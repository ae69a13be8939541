/*
 * Math shared by our SIMD kernels (gemm.c, xent.c, gelu.c): the multiply-add of both builds, and
 * exp and erf of 4 floats. Header-only (static inline): each kernel file includes it, and the
 * module keeps no static data (see gemm.c).
 */
#ifndef ROSEDIST_SIMD_MATH_H
#define ROSEDIST_SIMD_MATH_H
#include <wasm_simd128.h>

/*
 * a * b + c. Every kernel is built twice (scripts/build_kernels.sh): kernels.wasm in plain
 * SIMD128, a multiply and an add; kernels_fma.wasm with relaxed SIMD, where f32x4.relaxed_madd is
 * one fused multiply-add on a CPU with FMA (x86 FMA3, Arm NEON), the same multiply and add
 * elsewhere: fused, each step rounds once instead of twice.
 */
#ifdef __wasm_relaxed_simd__
#define MADD(a, b, c) wasm_f32x4_relaxed_madd(a, b, c)
#else
#define MADD(a, b, c) wasm_f32x4_add(wasm_f32x4_mul(a, b), c)
#endif

/* Below this exp(x) < FLT_MIN = 2^-126: exp4 gives 0 (no denormals). */
#define EXP_LO -87.33654475f
/* exp4 is valid up to here (exp(88) = 1.65e38; 2^128 would overflow the exponent field). */
#define EXP_HI 88.0f

/*
 * exp of 4 floats: Cephes' expf. x = n ln2 + r with n = round(x / ln2), |r| <= ln2 / 2 (ln2 split
 * in two constants so that n * C1 is exact), exp(r) by a degree-7 polynomial, times 2^n built in
 * the exponent field. Within 2 ulp of exp for x in [EXP_LO, EXP_HI]; 0 below; NaN stays NaN.
 *
 * Cheap on x64 (V8 lowers f32x4.min/max, nearest and trunc_sat to several instructions each):
 * pmin/pmax clamp in one each (x first, so NaN passes), and n is rounded by adding 1.5 * 2^23,
 * which leaves n + 0x400000 in the low bits of the sum t: (t + 127) << 23 (the rest shifts out)
 * is 2^n. (V8 materializes the constants well: holding them in locals measured no faster.) In
 * kernels_fma.wasm the multiply-adds fuse: within 1 ulp all the same, the forward ~25% faster.
 */
static inline v128_t exp4(v128_t x) {
  const v128_t lo = wasm_f32x4_splat(EXP_LO), magic = wasm_f32x4_splat(12582912.0f); /* 1.5 * 2^23 */
  v128_t xc = wasm_f32x4_pmin(wasm_f32x4_pmax(x, lo), wasm_f32x4_splat(EXP_HI));
  v128_t t = MADD(xc, wasm_f32x4_splat(1.44269504088896341f), magic);
  v128_t n = wasm_f32x4_sub(t, magic);
  v128_t r = MADD(n, wasm_f32x4_splat(-0.693359375f), xc);
  r = MADD(n, wasm_f32x4_splat(2.12194440e-4f), r);
  v128_t p = wasm_f32x4_splat(1.9875691500e-4f);
  p = MADD(p, r, wasm_f32x4_splat(1.3981999507e-3f));
  p = MADD(p, r, wasm_f32x4_splat(8.3334519073e-3f));
  p = MADD(p, r, wasm_f32x4_splat(4.1665795894e-2f));
  p = MADD(p, r, wasm_f32x4_splat(1.6666665459e-1f));
  p = MADD(p, r, wasm_f32x4_splat(5.0000001201e-1f));
  p = wasm_f32x4_add(MADD(p, wasm_f32x4_mul(r, r), r), wasm_f32x4_splat(1.0f));
  v128_t e = wasm_f32x4_mul(p, wasm_i32x4_shl(wasm_i32x4_add(t, wasm_i32x4_splat(127)), 23));
  /* x < EXP_LO is false for NaN: NaN goes through the polynomial and stays NaN. */
  return wasm_v128_andnot(e, wasm_f32x4_lt(x, lo));
}

/*
 * erf of 4 floats: the rational approximation Eigen and XLA use for float32, x (p(x^2) / q(x^2))
 * with x clamped to [-4, 4] (beyond, erf is +-1 in float32: 1 - erf(4) = 1.5e-8). Within 4e-7
 * of erf on [-6, 6] (measured against a double-precision series: test/worker/gelu.test.ts), as
 * tfjs's own Erf (Abramowitz-Stegun 7.1.26, 1.5e-7). Division, no exp: cheap in SIMD.
 * NaN stays NaN (pmin/pmax pass it).
 */
static inline v128_t erf4(v128_t a) {
  v128_t x = wasm_f32x4_pmax(wasm_f32x4_pmin(a, wasm_f32x4_splat(4.0f)), wasm_f32x4_splat(-4.0f));
  v128_t x2 = wasm_f32x4_mul(x, x);
  v128_t p = wasm_f32x4_splat(-2.72614225801306e-10f);
  p = MADD(p, x2, wasm_f32x4_splat(2.77068142495902e-08f));
  p = MADD(p, x2, wasm_f32x4_splat(-2.10102402082508e-06f));
  p = MADD(p, x2, wasm_f32x4_splat(-5.69250639462346e-05f));
  p = MADD(p, x2, wasm_f32x4_splat(-7.34990630326855e-04f));
  p = MADD(p, x2, wasm_f32x4_splat(-2.95459980854025e-03f));
  p = MADD(p, x2, wasm_f32x4_splat(-1.60960333262415e-02f));
  p = wasm_f32x4_mul(p, x);
  v128_t q = wasm_f32x4_splat(-1.45660718464996e-05f);
  q = MADD(q, x2, wasm_f32x4_splat(-2.13374055278905e-04f));
  q = MADD(q, x2, wasm_f32x4_splat(-1.68282697438203e-03f));
  q = MADD(q, x2, wasm_f32x4_splat(-7.37332916720468e-03f));
  q = MADD(q, x2, wasm_f32x4_splat(-1.42647390514189e-02f));
  return wasm_f32x4_div(p, q);
}

#endif
