#!/bin/sh
# Rebuild worker/kernels/kernels.wasm from its C sources (gemm.c, adamw.c) with Debian's clang-19
# and lld-19 (apt-get install clang-19 lld-19). The built module is committed, so `npm install`
# needs no C compiler; test/worker/kernels.test.ts rebuilds it and checks the two are identical.
#
#   scripts/build_kernels.sh [OUT]      (default OUT: worker/kernels/kernels.wasm)
#
# Flags: plain 128-bit SIMD (relaxed SIMD gains nothing here and needs a flag on Node 20), no libc,
# no entry point, the memory imported (the GEMM runs in tfjs-backend-wasm's own memory), names
# stripped (exports keep theirs). CLANG overrides the compiler.
set -eu
cd "$(dirname "$0")/.."
out="${1:-worker/kernels/kernels.wasm}"
"${CLANG:-clang-19}" --target=wasm32 -O3 -msimd128 -mbulk-memory -nostdlib -fuse-ld=lld \
  -Wl,--no-entry -Wl,--import-memory -Wl,--strip-all \
  -o "$out" worker/kernels/gemm.c worker/kernels/adamw.c
