#!/bin/sh
# Rebuild our wasm kernels from their C sources (gemm.c, adamw.c, xent.c, gelu.c, layernorm.c, dropout.c; simd_math.h) with
# Debian's clang-19 and lld-19 (apt-get install clang-19 lld-19), into two modules:
#   kernels.wasm       plain 128-bit SIMD: runs on every runtime with WebAssembly SIMD;
#   kernels_fma.wasm   the same sources with relaxed SIMD, so the GEMM's multiply-adds are
#                      f32x4.relaxed_madd (one FMA instruction where the CPU has it);
#                      worker/kernels/module.ts takes it where the runtime accepts it.
# Both are committed, so `npm install` needs no C compiler; test/worker/kernels.test.ts rebuilds
# them and checks that they are identical to the committed files.
#
#   scripts/build_kernels.sh [DIR]      (default DIR: worker/kernels)
#
# Flags: no libc, no entry point, the memory imported (the GEMM runs in tfjs-backend-wasm's own
# memory), names stripped (exports keep theirs). -ffp-contract=off in the relaxed build: only the
# multiply-adds the sources ask for may fuse, never one the compiler finds (AdamW stays as written).
# CLANG overrides the compiler.
set -eu
cd "$(dirname "$0")/.."
dir="${1:-worker/kernels}"
build() {
  out="$1"
  shift
  "${CLANG:-clang-19}" --target=wasm32 -O3 -msimd128 -mbulk-memory "$@" -nostdlib -fuse-ld=lld \
    -Wl,--no-entry -Wl,--import-memory -Wl,--strip-all \
    -o "$out" worker/kernels/gemm.c worker/kernels/adamw.c worker/kernels/xent.c worker/kernels/gelu.c worker/kernels/layernorm.c worker/kernels/dropout.c
}
build "$dir/kernels.wasm"
build "$dir/kernels_fma.wasm" -mrelaxed-simd -ffp-contract=off
