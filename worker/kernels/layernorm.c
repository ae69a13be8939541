/*
 * LayerNorm over rows of x [n, c] (torch.nn.LayerNorm over the last axis: biased variance), in
 * 128-bit WebAssembly SIMD, one row at a time (a row of c = 128 is 512 bytes: it stays in L1):
 *
 *   forward   mu = mean(x_i), rstd_i = 1 / sqrt(mean((x_i - mu)^2) + eps), xhat = (x_i - mu) rstd_i,
 *             y = xhat gamma + beta;                 writes y, xhat [n, c] and rstd [n]
 *   backward  dxhat = dy gamma,
 *             dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)),
 *             dgamma = sum over rows of dy xhat, dbeta = sum over rows of dy
 *
 * The same quantities, in the same float32, as model/ops.ts layerNormOps computes with tfjs's ops
 * (~9 passes forward, ~12 backward, a tensor each); the sums run in a different order (4 lanes,
 * then across them), so results differ in the last bits.
 *
 * Pointers are byte addresses in the module's memory (tfjs-backend-wasm's, as for gemm.c), any
 * alignment. No stack, no static data (as gemm.c).
 */
#include <wasm_simd128.h>

#include "simd_math.h"

static inline float lanes_sum(v128_t v) {
  return (wasm_f32x4_extract_lane(v, 0) + wasm_f32x4_extract_lane(v, 1)) + (wasm_f32x4_extract_lane(v, 2) + wasm_f32x4_extract_lane(v, 3));
}

/* Sum of a row of c floats: 4 lanes, then the lanes and the tail. */
static float row_sum(const float *x, int c) {
  v128_t s = wasm_f32x4_splat(0.0f);
  int j = 0;
  for (; j + 4 <= c; j += 4) s = wasm_f32x4_add(s, wasm_v128_load(x + j));
  float t = lanes_sum(s);
  for (; j < c; j++) t += x[j];
  return t;
}

__attribute__((export_name("layernorm_forward"))) void layernorm_forward(const float *x, const float *gamma, const float *beta, int n, int c,
                                                                          float eps, float *y, float *xhat, float *rstd) {
  for (int i = 0; i < n; i++) {
    const float *xi = x + i * c;
    float *hi = xhat + i * c;
    float *yi = y + i * c;
    float mu = row_sum(xi, c) / (float)c;
    v128_t muv = wasm_f32x4_splat(mu);
    /* xhat holds x - mu for now. */
    v128_t s = wasm_f32x4_splat(0.0f);
    int j = 0;
    for (; j + 4 <= c; j += 4) {
      v128_t d = wasm_f32x4_sub(wasm_v128_load(xi + j), muv);
      wasm_v128_store(hi + j, d);
      s = MADD(d, d, s);
    }
    float var = lanes_sum(s);
    for (; j < c; j++) {
      float d = xi[j] - mu;
      hi[j] = d;
      var += d * d;
    }
    float r = 1.0f / __builtin_sqrtf(var / (float)c + eps);
    rstd[i] = r;
    v128_t rv = wasm_f32x4_splat(r);
    for (j = 0; j + 4 <= c; j += 4) {
      v128_t h = wasm_f32x4_mul(wasm_v128_load(hi + j), rv);
      wasm_v128_store(hi + j, h);
      wasm_v128_store(yi + j, MADD(h, wasm_v128_load(gamma + j), wasm_v128_load(beta + j)));
    }
    for (; j < c; j++) {
      float h = hi[j] * r;
      hi[j] = h;
      yi[j] = h * gamma[j] + beta[j];
    }
  }
}

__attribute__((export_name("layernorm_backward"))) void layernorm_backward(const float *dy, const float *xhat, const float *rstd, const float *gamma,
                                                                            int n, int c, float *dx, float *dgamma, float *dbeta) {
  int j = 0;
  for (j = 0; j < c; j++) dgamma[j] = dbeta[j] = 0.0f;
  for (int i = 0; i < n; i++) {
    const float *dyi = dy + i * c;
    const float *hi = xhat + i * c;
    float *dxi = dx + i * c;
    /* mean(dxhat) and mean(dxhat xhat), dxhat = dy gamma; the column sums as we go. */
    v128_t sd = wasm_f32x4_splat(0.0f), sdx = sd;
    for (j = 0; j + 4 <= c; j += 4) {
      v128_t g = wasm_v128_load(dyi + j), h = wasm_v128_load(hi + j);
      v128_t d = wasm_f32x4_mul(g, wasm_v128_load(gamma + j));
      sd = wasm_f32x4_add(sd, d);
      sdx = MADD(d, h, sdx);
      wasm_v128_store(dgamma + j, MADD(g, h, wasm_v128_load(dgamma + j)));
      wasm_v128_store(dbeta + j, wasm_f32x4_add(wasm_v128_load(dbeta + j), g));
    }
    float meanD = lanes_sum(sd), meanDX = lanes_sum(sdx);
    for (; j < c; j++) {
      float d = dyi[j] * gamma[j];
      meanD += d;
      meanDX += d * hi[j];
      dgamma[j] += dyi[j] * hi[j];
      dbeta[j] += dyi[j];
    }
    meanD /= (float)c;
    meanDX /= (float)c;
    float r = rstd[i];
    v128_t rv = wasm_f32x4_splat(r), mdv = wasm_f32x4_splat(meanD), mdxv = wasm_f32x4_splat(meanDX);
    for (j = 0; j + 4 <= c; j += 4) {
      v128_t d = wasm_f32x4_mul(wasm_v128_load(dyi + j), wasm_v128_load(gamma + j));
      v128_t t = wasm_f32x4_sub(wasm_f32x4_sub(d, mdv), wasm_f32x4_mul(wasm_v128_load(hi + j), mdxv));
      wasm_v128_store(dxi + j, wasm_f32x4_mul(t, rv));
    }
    for (; j < c; j++) dxi[j] = r * ((dyi[j] * gamma[j] - meanD) - hi[j] * meanDX);
  }
}
