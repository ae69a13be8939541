/*
 * One AdamW step over flat float32 buffers, in 128-bit WebAssembly SIMD: the loop of
 * worker/optim.ts (torch.optim.AdamW, amsgrad off), element by element, in float32 as PyTorch
 * computes it. The scalars (bias corrections, step size) come from the caller, computed in float64
 * as the JavaScript loop does.
 *
 *   m = beta1 * m + (1 - beta1) * g
 *   v = beta2 * v + (1 - beta2) * g * g
 *   p = p * decay - (step_size * m) / (sqrt(v) / sqrt_bc2 + eps)      decay = 1 - lr * weight_decay
 *
 * Pointers are byte addresses in the module's memory, any alignment; n elements each. No stack,
 * no static data (as gemm.c).
 */
#include <wasm_simd128.h>

__attribute__((export_name("adamw"))) void adamw(float *p, const float *g, float *m, float *v, int n,
                                                 float beta1, float one_minus_beta1, float beta2,
                                                 float one_minus_beta2, float step_size, float sqrt_bc2,
                                                 float decay, float eps) {
  int i = 0;
  v128_t b1 = wasm_f32x4_splat(beta1), c1 = wasm_f32x4_splat(one_minus_beta1);
  v128_t b2 = wasm_f32x4_splat(beta2), c2 = wasm_f32x4_splat(one_minus_beta2);
  v128_t ss = wasm_f32x4_splat(step_size), sb = wasm_f32x4_splat(sqrt_bc2);
  v128_t dc = wasm_f32x4_splat(decay), ep = wasm_f32x4_splat(eps);
  for (; i + 4 <= n; i += 4) {
    v128_t gi = wasm_v128_load(g + i);
    v128_t mi = wasm_f32x4_add(wasm_f32x4_mul(b1, wasm_v128_load(m + i)), wasm_f32x4_mul(c1, gi));
    v128_t vi = wasm_f32x4_add(wasm_f32x4_mul(b2, wasm_v128_load(v + i)), wasm_f32x4_mul(wasm_f32x4_mul(c2, gi), gi));
    v128_t denom = wasm_f32x4_add(wasm_f32x4_div(wasm_f32x4_sqrt(vi), sb), ep);
    v128_t pi = wasm_f32x4_sub(wasm_f32x4_mul(wasm_v128_load(p + i), dc), wasm_f32x4_div(wasm_f32x4_mul(ss, mi), denom));
    wasm_v128_store(m + i, mi);
    wasm_v128_store(v + i, vi);
    wasm_v128_store(p + i, pi);
  }
  for (; i < n; i++) {
    float gi = g[i];
    float mi = beta1 * m[i] + one_minus_beta1 * gi;
    float vi = beta2 * v[i] + one_minus_beta2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * decay - step_size * mi / (__builtin_sqrtf(vi) / sqrt_bc2 + eps);
  }
}
