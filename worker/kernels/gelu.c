/*
 * Exact GELU (torch.nn.functional.gelu's default) over n floats, in 128-bit WebAssembly SIMD:
 *
 *   forward   y = x Phi(x),                 Phi(x) = (1 + erf(x / sqrt 2)) / 2
 *   backward  dx = dy (Phi(x) + x phi(x)),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
 *
 * One pass each. tfjs's ops for the same make ~6 passes forward (mul, erf, add, mul, mul) and ~8
 * backward, a tensor each, and keep Phi(x) from the forward for the backward; here the backward
 * recomputes it from x (a division and an exp per 4 floats cost less than storing and reading
 * back [rows, 4 d_model] floats), so the forward saves only x.
 *
 * Pointers are byte addresses in the module's memory (tfjs-backend-wasm's, as for gemm.c), any
 * alignment; out may be an input. No stack, no static data (as gemm.c).
 */
#include <wasm_simd128.h>

#include "simd_math.h"

#define SQRT1_2 0.70710678118654752f
#define INV_SQRT_2PI 0.39894228040143268f

/* Phi(x) of 4 floats. */
static inline v128_t cdf4(v128_t x) {
  v128_t half = wasm_f32x4_splat(0.5f);
  return MADD(erf4(wasm_f32x4_mul(x, wasm_f32x4_splat(SQRT1_2))), half, half);
}

static inline v128_t gelu4(v128_t x) { return wasm_f32x4_mul(x, cdf4(x)); }

/* d gelu / dx at x, times dy. */
static inline v128_t gelu_grad4(v128_t x, v128_t dy) {
  v128_t pdf = wasm_f32x4_mul(exp4(wasm_f32x4_mul(wasm_f32x4_mul(x, x), wasm_f32x4_splat(-0.5f))), wasm_f32x4_splat(INV_SQRT_2PI));
  return wasm_f32x4_mul(dy, MADD(x, pdf, cdf4(x)));
}

__attribute__((export_name("gelu_forward"))) void gelu_forward(const float *x, float *y, int n) {
  int i = 0;
  for (; i + 4 <= n; i += 4) wasm_v128_store(y + i, gelu4(wasm_v128_load(x + i)));
  for (; i < n; i++) y[i] = wasm_f32x4_extract_lane(gelu4(wasm_f32x4_splat(x[i])), 0);
}

__attribute__((export_name("gelu_backward"))) void gelu_backward(const float *x, const float *dy, float *dx, int n) {
  int i = 0;
  for (; i + 4 <= n; i += 4) wasm_v128_store(dx + i, gelu_grad4(wasm_v128_load(x + i), wasm_v128_load(dy + i)));
  for (; i < n; i++) dx[i] = wasm_f32x4_extract_lane(gelu_grad4(wasm_f32x4_splat(x[i]), wasm_f32x4_splat(dy[i])), 0);
}
