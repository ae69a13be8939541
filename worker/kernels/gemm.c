/*
 * Single-precision GEMM for the tfjs wasm backend, in 128-bit WebAssembly SIMD.
 *
 *   C[b] = op(A[b]) @ op(B[b]) (+ bias)     for b in [0, batch)
 *
 * op(A) is [M, K] (A stored [M, K], or [K, M] when transA), op(B) is [K, N] (B stored [K, N], or
 * [N, K] when transB), C is [M, N]; all row-major float32, batch strides in elements (0: the same
 * matrix for every b). bias is [N] or 0.
 *
 * The module imports the backend's memory and works on the tensors where they lie. It must use
 * no stack and no static data (the backend owns every byte): all locals stay in registers, and
 * every buffer (packed panels, the edge tile) is carved out of `scratch`, GEMM_SCRATCH_FLOATS
 * floats that the caller allocates once with the backend's malloc. test/worker/kernels.test.ts
 * checks the built module for that (no globals, no data segments).
 *
 * Scheme (GotoBLAS/BLIS): for each NC-column block of op(B) and KC-deep slice of K, pack that
 * block into NR-wide panels (kc x NR, contiguous); for each MC-row block of op(A), pack it into
 * MR-tall panels (kc x MR); then a 4 x 8 micro-kernel runs over every (A panel, B panel) pair,
 * keeping its tile of C in 8 f32x4 accumulators (more than 8 measured far slower: V8 spills).
 * Transposes are folded into the packing, so every form runs the same micro-kernel. Partial
 * panels are zero-padded; partial tiles go through a small tile in scratch.
 *
 * Block sizes (floats): an A block MC x KC = 128 KiB and a B panel KC x NR = 16 KiB (the 48 KiB
 * L1 holds it while the A panels stream from the 2 MiB L2), a B block KC x NC = 1 MiB.
 */
#include <wasm_simd128.h>

/*
 * MADD (simd_math.h): in kernels_fma.wasm one fused multiply-add. The micro-kernel is bound by the
 * FP ports, not by memory: 16 instructions per k as mul + add, 8 as FMA (measured here, 4 x 8
 * tile in L1: 33 -> 41 GFLOP/s). Either way each element is one sum of the same products in the
 * same order.
 */
#include "simd_math.h"

#define MR 4
#define NR 8
#define KC 512
#define MC 64
#define NC 512

/* Floats of scratch gemm() needs: packed A block, packed B block, one edge tile. */
#define GEMM_SCRATCH_FLOATS (MC * KC + KC * NC + MR * NR)

__attribute__((export_name("gemm_scratch_floats"))) int gemm_scratch_floats(void) { return GEMM_SCRATCH_FLOATS; }

static inline int min_int(int a, int b) { return a < b ? a : b; }

/*
 * Pack rows [0, mc) and depth [0, kc) of op(A) (already offset to the block's corner) into
 * MR-row panels: panel p holds, for each k, the MR values op(A)[p*MR + r][k]; rows past mc are 0.
 * lda is the stored row length (K when not transposed, M when transposed).
 */
static void pack_a(float *dst, const float *a, int lda, int trans, int mc, int kc) {
  for (int i0 = 0; i0 < mc; i0 += MR) {
    int rows = min_int(MR, mc - i0);
    if (trans) {
      /* op(A)[i][k] = a[k * lda + i]: MR contiguous values per k. */
      const float *src = a + i0;
      if (rows == MR) {
        for (int k = 0; k < kc; k++) wasm_v128_store(dst + k * MR, wasm_v128_load(src + k * lda));
      } else {
        for (int k = 0; k < kc; k++) {
          for (int r = 0; r < MR; r++) dst[k * MR + r] = r < rows ? src[k * lda + r] : 0.0f;
        }
      }
    } else {
      /* op(A)[i][k] = a[i * lda + k]: one row per lane. */
      const float *src = a + i0 * lda;
      if (rows == MR) {
        int k = 0;
        for (; k + 4 <= kc; k += 4) {
          /* 4 x 4 transpose: rows r0..r3 at k..k+3 become columns. */
          v128_t r0 = wasm_v128_load(src + k);
          v128_t r1 = wasm_v128_load(src + lda + k);
          v128_t r2 = wasm_v128_load(src + 2 * lda + k);
          v128_t r3 = wasm_v128_load(src + 3 * lda + k);
          v128_t t0 = wasm_i32x4_shuffle(r0, r1, 0, 4, 1, 5);
          v128_t t1 = wasm_i32x4_shuffle(r2, r3, 0, 4, 1, 5);
          v128_t t2 = wasm_i32x4_shuffle(r0, r1, 2, 6, 3, 7);
          v128_t t3 = wasm_i32x4_shuffle(r2, r3, 2, 6, 3, 7);
          wasm_v128_store(dst + k * MR, wasm_i32x4_shuffle(t0, t1, 0, 1, 4, 5));
          wasm_v128_store(dst + (k + 1) * MR, wasm_i32x4_shuffle(t0, t1, 2, 3, 6, 7));
          wasm_v128_store(dst + (k + 2) * MR, wasm_i32x4_shuffle(t2, t3, 0, 1, 4, 5));
          wasm_v128_store(dst + (k + 3) * MR, wasm_i32x4_shuffle(t2, t3, 2, 3, 6, 7));
        }
        for (; k < kc; k++) {
          for (int r = 0; r < MR; r++) dst[k * MR + r] = src[r * lda + k];
        }
      } else {
        for (int k = 0; k < kc; k++) {
          for (int r = 0; r < MR; r++) dst[k * MR + r] = r < rows ? src[r * lda + k] : 0.0f;
        }
      }
    }
    dst += kc * MR;
  }
}

/*
 * Pack depth [0, kc) and columns [0, nc) of op(B) (offset to the block's corner) into NR-column
 * panels: panel q holds, for each k, the NR values op(B)[k][q*NR + c]; columns past nc are 0.
 * ldb is the stored row length (N when not transposed, K when transposed).
 */
static void pack_b(float *dst, const float *b, int ldb, int trans, int kc, int nc) {
  for (int j0 = 0; j0 < nc; j0 += NR) {
    int cols = min_int(NR, nc - j0);
    if (!trans) {
      /* op(B)[k][j] = b[k * ldb + j]: NR contiguous values per k. */
      const float *src = b + j0;
      if (cols == NR) {
        for (int k = 0; k < kc; k++) {
          wasm_v128_store(dst + k * NR, wasm_v128_load(src + k * ldb));
          wasm_v128_store(dst + k * NR + 4, wasm_v128_load(src + k * ldb + 4));
        }
      } else {
        for (int k = 0; k < kc; k++) {
          for (int c = 0; c < NR; c++) dst[k * NR + c] = c < cols ? src[k * ldb + c] : 0.0f;
        }
      }
    } else {
      /* op(B)[k][j] = b[j * ldb + k]: two 4 x 4 transposes per 4 values of k. */
      const float *src = b + j0 * ldb;
      if (cols == NR) {
        int k = 0;
        for (; k + 4 <= kc; k += 4) {
          for (int h = 0; h < 2; h++) {
            const float *s = src + 4 * h * ldb + k;
            v128_t r0 = wasm_v128_load(s);
            v128_t r1 = wasm_v128_load(s + ldb);
            v128_t r2 = wasm_v128_load(s + 2 * ldb);
            v128_t r3 = wasm_v128_load(s + 3 * ldb);
            v128_t t0 = wasm_i32x4_shuffle(r0, r1, 0, 4, 1, 5);
            v128_t t1 = wasm_i32x4_shuffle(r2, r3, 0, 4, 1, 5);
            v128_t t2 = wasm_i32x4_shuffle(r0, r1, 2, 6, 3, 7);
            v128_t t3 = wasm_i32x4_shuffle(r2, r3, 2, 6, 3, 7);
            float *d = dst + k * NR + 4 * h;
            wasm_v128_store(d, wasm_i32x4_shuffle(t0, t1, 0, 1, 4, 5));
            wasm_v128_store(d + NR, wasm_i32x4_shuffle(t0, t1, 2, 3, 6, 7));
            wasm_v128_store(d + 2 * NR, wasm_i32x4_shuffle(t2, t3, 0, 1, 4, 5));
            wasm_v128_store(d + 3 * NR, wasm_i32x4_shuffle(t2, t3, 2, 3, 6, 7));
          }
        }
        for (; k < kc; k++) {
          for (int c = 0; c < NR; c++) dst[k * NR + c] = src[c * ldb + k];
        }
      } else {
        for (int k = 0; k < kc; k++) {
          for (int c = 0; c < NR; c++) dst[k * NR + c] = c < cols ? src[c * ldb + k] : 0.0f;
        }
      }
    }
    dst += kc * NR;
  }
}

/*
 * The MR x NR tile at c (row length ldc) from kc steps of packed a (MR per k) and b (NR per k).
 * first: C = acc + bias (bias may be 0); else C += acc. Partial tiles (rows < MR or cols < NR)
 * are written through `tile`.
 */
static void micro_kernel(int kc, const float *a, const float *b, float *c, int ldc, int rows, int cols,
                         int first, const float *bias, float *tile) {
  v128_t c00 = wasm_f32x4_splat(0.0f), c01 = c00, c10 = c00, c11 = c00;
  v128_t c20 = c00, c21 = c00, c30 = c00, c31 = c00;
  for (int k = 0; k < kc; k++) {
    v128_t b0 = wasm_v128_load(b);
    v128_t b1 = wasm_v128_load(b + 4);
    v128_t a0 = wasm_v128_load32_splat(a);
    v128_t a1 = wasm_v128_load32_splat(a + 1);
    v128_t a2 = wasm_v128_load32_splat(a + 2);
    v128_t a3 = wasm_v128_load32_splat(a + 3);
    c00 = MADD(a0, b0, c00);
    c01 = MADD(a0, b1, c01);
    c10 = MADD(a1, b0, c10);
    c11 = MADD(a1, b1, c11);
    c20 = MADD(a2, b0, c20);
    c21 = MADD(a2, b1, c21);
    c30 = MADD(a3, b0, c30);
    c31 = MADD(a3, b1, c31);
    a += MR;
    b += NR;
  }
  if (rows == MR && cols == NR) {
    v128_t bias0, bias1;
    if (!first) {
      bias0 = bias1 = wasm_f32x4_splat(0.0f);
    } else if (bias) {
      bias0 = wasm_v128_load(bias);
      bias1 = wasm_v128_load(bias + 4);
    } else {
      bias0 = bias1 = wasm_f32x4_splat(0.0f);
    }
    if (first) {
      wasm_v128_store(c, wasm_f32x4_add(c00, bias0));
      wasm_v128_store(c + 4, wasm_f32x4_add(c01, bias1));
      wasm_v128_store(c + ldc, wasm_f32x4_add(c10, bias0));
      wasm_v128_store(c + ldc + 4, wasm_f32x4_add(c11, bias1));
      wasm_v128_store(c + 2 * ldc, wasm_f32x4_add(c20, bias0));
      wasm_v128_store(c + 2 * ldc + 4, wasm_f32x4_add(c21, bias1));
      wasm_v128_store(c + 3 * ldc, wasm_f32x4_add(c30, bias0));
      wasm_v128_store(c + 3 * ldc + 4, wasm_f32x4_add(c31, bias1));
    } else {
      wasm_v128_store(c, wasm_f32x4_add(wasm_v128_load(c), c00));
      wasm_v128_store(c + 4, wasm_f32x4_add(wasm_v128_load(c + 4), c01));
      wasm_v128_store(c + ldc, wasm_f32x4_add(wasm_v128_load(c + ldc), c10));
      wasm_v128_store(c + ldc + 4, wasm_f32x4_add(wasm_v128_load(c + ldc + 4), c11));
      wasm_v128_store(c + 2 * ldc, wasm_f32x4_add(wasm_v128_load(c + 2 * ldc), c20));
      wasm_v128_store(c + 2 * ldc + 4, wasm_f32x4_add(wasm_v128_load(c + 2 * ldc + 4), c21));
      wasm_v128_store(c + 3 * ldc, wasm_f32x4_add(wasm_v128_load(c + 3 * ldc), c30));
      wasm_v128_store(c + 3 * ldc + 4, wasm_f32x4_add(wasm_v128_load(c + 3 * ldc + 4), c31));
    }
    return;
  }
  wasm_v128_store(tile, c00);
  wasm_v128_store(tile + 4, c01);
  wasm_v128_store(tile + 8, c10);
  wasm_v128_store(tile + 12, c11);
  wasm_v128_store(tile + 16, c20);
  wasm_v128_store(tile + 20, c21);
  wasm_v128_store(tile + 24, c30);
  wasm_v128_store(tile + 28, c31);
  for (int i = 0; i < rows; i++) {
    for (int j = 0; j < cols; j++) {
      float base = first ? (bias ? bias[j] : 0.0f) : c[i * ldc + j];
      c[i * ldc + j] = first ? tile[i * NR + j] + base : base + tile[i * NR + j];
    }
  }
}

/* One product C = op(A) @ op(B) (+ bias), the matrices already offset to this batch entry. */
static void gemm_one(int M, int N, int K, const float *A, int transA, const float *B, int transB, float *C,
                     const float *bias, float *scratch) {
  float *pa = scratch;
  float *pb = scratch + MC * KC;
  float *tile = pb + KC * NC;
  int lda = transA ? M : K;
  int ldb = transB ? K : N;
  if (K == 0) {
    for (int i = 0; i < M; i++) {
      for (int j = 0; j < N; j++) C[i * N + j] = bias ? bias[j] : 0.0f;
    }
    return;
  }
  for (int jc = 0; jc < N; jc += NC) {
    int nc = min_int(NC, N - jc);
    for (int pc = 0; pc < K; pc += KC) {
      int kc = min_int(KC, K - pc);
      /* Corner (pc, jc) of op(B): b[pc][jc], or b[jc][pc] stored transposed. */
      pack_b(pb, transB ? B + jc * ldb + pc : B + pc * ldb + jc, ldb, transB, kc, nc);
      for (int ic = 0; ic < M; ic += MC) {
        int mc = min_int(MC, M - ic);
        pack_a(pa, transA ? A + pc * lda + ic : A + ic * lda + pc, lda, transA, mc, kc);
        for (int jr = 0; jr < nc; jr += NR) {
          const float *bp = pb + jr * kc;
          const float *bias_j = bias ? bias + jc + jr : 0;
          for (int ir = 0; ir < mc; ir += MR) {
            micro_kernel(kc, pa + ir * kc, bp, C + (ic + ir) * N + jc + jr, N, min_int(MR, mc - ir),
                         min_int(NR, nc - jr), pc == 0, bias_j, tile);
          }
        }
      }
    }
  }
}

/*
 * The export. Pointers are byte addresses in the imported memory; strides are in floats.
 * scratch: GEMM_SCRATCH_FLOATS floats (gemm_scratch_floats()), 16-byte aligned or not.
 */
__attribute__((export_name("gemm"))) void gemm(int batch, int M, int N, int K,
                                               const float *A, int strideA, int transA,
                                               const float *B, int strideB, int transB,
                                               float *C, const float *bias, float *scratch) {
  for (int b = 0; b < batch; b++) {
    gemm_one(M, N, K, A + b * strideA, transA, B + b * strideB, transB, C + b * M * N, bias, scratch);
  }
}
