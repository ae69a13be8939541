/*
 * Summed cross-entropy over the rows of logits z [n, V] (row-major float32), in 128-bit
 * WebAssembly SIMD, fused: one call makes the loss and the softmax P that its gradient needs, one
 * more makes the gradient.
 *
 *   forward   m_i = max_j z_ij,  s_i = sum_j exp(z_ij - m_i),  P_ij = exp(z_ij - m_i) / s_i,
 *             returns sum_i (m_i + log(s_i) - z_i[y_i])   (rows summed in double)
 *   backward  g = (P - onehot(y)) * dy
 *
 * Per row: one pass for the max, one that writes exp(z - m) into P and sums it, one that scales
 * P by 1/s (a row of V = 10000 is 40 KB: the later passes read it from cache). Any non-finite
 * logit in a row makes its loss NaN (inf - inf), so the trainer's non-finite check still fires.
 *
 * Pointers are byte addresses in the module's memory (tfjs-backend-wasm's, as for gemm.c), any
 * alignment; y holds n ids in [0, V), checked by the caller. No stack, no static data (as gemm.c).
 */
#include <wasm_simd128.h>

#include "simd_math.h"

/* exp of n floats (out may be x): exp4 on its own, for the tests. */
__attribute__((export_name("exp_f32"))) void exp_f32(const float *x, float *out, int n) {
  int i = 0;
  for (; i + 4 <= n; i += 4) wasm_v128_store(out + i, exp4(wasm_v128_load(x + i)));
  for (; i < n; i++) out[i] = wasm_f32x4_extract_lane(exp4(wasm_f32x4_splat(x[i])), 0);
}

/* log(x) for a finite x >= 1 (a row's sum s): Cephes' logf, within 1 ulp. */
static float log_ge1(float x) {
  union {
    float f;
    int i;
  } u = {x};
  int e = ((u.i >> 23) & 0xff) - 126;
  u.i = (u.i & 0x807fffff) | 0x3f000000; /* the mantissa, in [0.5, 1) */
  float f = u.f;
  if (f < 0.707106781186547524f) {
    e -= 1;
    f = f + f - 1.0f;
  } else {
    f = f - 1.0f;
  }
  float z = f * f;
  float y = 7.0376836292e-2f;
  y = y * f - 1.1514610310e-1f;
  y = y * f + 1.1676998740e-1f;
  y = y * f - 1.2420140846e-1f;
  y = y * f + 1.4249322787e-1f;
  y = y * f - 1.6668057665e-1f;
  y = y * f + 2.0000714765e-1f;
  y = y * f - 2.4999993993e-1f;
  y = y * f + 3.3333331174e-1f;
  y = y * f * z;
  float fe = (float)e;
  y += -2.12194440e-4f * fe;
  y += -0.5f * z;
  return f + y + 0.693359375f * fe;
}

/* The max of the 4 lanes (as pmax: NaN in a lane may be skipped). */
static inline float hmax(v128_t v) {
  v = wasm_f32x4_pmax(v, wasm_i32x4_shuffle(v, v, 2, 3, 0, 1));
  v = wasm_f32x4_pmax(v, wasm_i32x4_shuffle(v, v, 1, 0, 3, 2));
  return wasm_f32x4_extract_lane(v, 0);
}

static inline float hsum(v128_t v) {
  v = wasm_f32x4_add(v, wasm_i32x4_shuffle(v, v, 2, 3, 0, 1));
  v = wasm_f32x4_add(v, wasm_i32x4_shuffle(v, v, 1, 0, 3, 2));
  return wasm_f32x4_extract_lane(v, 0);
}

/* Partial sums of exp run in float32 over blocks of this many floats, then add up in double. */
#define SUM_BLOCK 256

/* The forward above: writes P [n, V], returns the summed loss. */
__attribute__((export_name("xent_forward"))) double xent_forward(const float *z, const int *y, int n, int v, float *p) {
  double total = 0.0;
  for (int i = 0; i < n; i++, z += v, p += v) {
    /*
     * m = max_j z_j. pmax (one instruction, not f32x4.max's several) skips a NaN after the first
     * element; that NaN then makes its exp, s and the loss NaN all the same.
     */
    v128_t m0 = wasm_f32x4_splat(z[0]), m1 = m0;
    int j = 0;
    for (; j + 8 <= v; j += 8) {
      m0 = wasm_f32x4_pmax(m0, wasm_v128_load(z + j));
      m1 = wasm_f32x4_pmax(m1, wasm_v128_load(z + j + 4));
    }
    float m = hmax(wasm_f32x4_pmax(m0, m1));
    for (; j < v; j++) m = m < z[j] ? z[j] : m;

    /* p = exp(z - m), s = sum p. */
    v128_t mv = wasm_f32x4_splat(m);
    double s = 0.0;
    j = 0;
    while (j + 8 <= v) {
      v128_t s0 = wasm_f32x4_splat(0.0f), s1 = s0;
      int end = j + SUM_BLOCK < v ? j + SUM_BLOCK : v;
      for (; j + 8 <= end; j += 8) {
        v128_t e0 = exp4(wasm_f32x4_sub(wasm_v128_load(z + j), mv));
        v128_t e1 = exp4(wasm_f32x4_sub(wasm_v128_load(z + j + 4), mv));
        wasm_v128_store(p + j, e0);
        wasm_v128_store(p + j + 4, e1);
        s0 = wasm_f32x4_add(s0, e0);
        s1 = wasm_f32x4_add(s1, e1);
      }
      s += (double)hsum(wasm_f32x4_add(s0, s1));
    }
    for (; j < v; j++) {
      float e = wasm_f32x4_extract_lane(exp4(wasm_f32x4_splat(z[j] - m)), 0);
      p[j] = e;
      s += (double)e;
    }

    /* p /= s, as a product by 1/s (within 1 ulp of the quotient). */
    float sf = (float)s;
    float inv = 1.0f / sf;
    v128_t invv = wasm_f32x4_splat(inv);
    j = 0;
    for (; j + 4 <= v; j += 4) wasm_v128_store(p + j, wasm_f32x4_mul(wasm_v128_load(p + j), invv));
    for (; j < v; j++) p[j] *= inv;

    /* s >= 1 (the max's own term is exp(0)) unless the row held a NaN or an infinity. */
    double loss = sf >= 1.0f ? (double)m - (double)z[y[i]] + (double)log_ge1(sf) : (double)(sf - sf);
    total += loss;
  }
  return total;
}

/* The backward above, into g [n, V] (P is left as it is: tfjs may still hold it). */
__attribute__((export_name("xent_backward"))) void xent_backward(const float *p, const int *y, int n, int v, float dy, float *g) {
  v128_t d = wasm_f32x4_splat(dy);
  for (int i = 0; i < n; i++, p += v, g += v) {
    int j = 0;
    for (; j + 8 <= v; j += 8) {
      wasm_v128_store(g + j, wasm_f32x4_mul(wasm_v128_load(p + j), d));
      wasm_v128_store(g + j + 4, wasm_f32x4_mul(wasm_v128_load(p + j + 4), d));
    }
    for (; j < v; j++) g[j] = p[j] * dy;
    g[y[i]] = (p[y[i]] - 1.0f) * dy;
  }
}
