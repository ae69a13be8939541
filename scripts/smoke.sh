#!/usr/bin/env bash
# CI smoke run of train_ddp. On a multi-GPU box: installs with tfjs-node-gpu's install script allowed (it downloads
# libtensorflow; offline boxes point TFJS_NODE_BASE_URI at a mirror), trains on every GPU with the tensorflow
# backend. Without GPUs: 2 CPU workers on the backend that loads (wasm here).
# Checks logs/train_ddp.log: written by rank 0 alone, eval lines present, ppl = exp(val loss).
#   scripts/smoke.sh [--no-install] [extra train_ddp flags]
set -euo pipefail
cd "$(dirname "$0")/.."
install=1
if [ "${1:-}" = "--no-install" ]; then install=0; shift; fi
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  gpus=1
  nproc=gpu
  backend=tensorflow
else
  gpus=0
  nproc=2
  backend=auto
fi
# The GPU path needs tfjs-node-gpu's native binding, which only its install script provides (npm 11 runs it
# only when allowed): install it even under --no-install when it does not load.
binding_loads() { node -e "require('@tensorflow/tfjs-node-gpu')" >/dev/null 2>&1; }
if [ "$gpus" = 1 ] && { [ "$install" = 1 ] || ! binding_loads; }; then
  npm install --no-audit --no-fund --allow-scripts=@tensorflow/tfjs-node-gpu
elif [ "$install" = 1 ]; then
  npm install --no-audit --no-fund
fi
log=logs/smoke/train_ddp.log
rm -rf logs/smoke
npx rosedist --nproc-per-node="$nproc" train_ddp --backend "$backend" --num-steps 6 --eval-interval 3 \
  --checkpoint-interval 6 --checkpoint-path logs/smoke/ckpt.safetensors --log-file "$log" "$@"
node --import tsx scripts/check_log.ts "$log" --expect-evals 2
