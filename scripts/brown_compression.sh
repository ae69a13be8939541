#!/usr/bin/env bash
# The learning cost of gradient compression (issue 15): the README's Brown run (2 workers on
# loopback, 300 steps) without and with --grad-compression, one run each, and the val loss
# after the last step of each with their relative difference (Done-when: within 1 %).
#   scripts/brown_compression.sh [--format bf16|fp16] [--steps N] [--out DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
FORMAT=bf16 STEPS=300 OUT=logs/brown_compression
while [ $# -gt 0 ]; do
  case "$1" in
    --format) FORMAT=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    *) echo "brown compression: unknown option $1 (--format, --steps, --out)" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT"
for c in none "$FORMAT"; do
  rm -f "$OUT/$c".*
  start=$(date +%s)
  npx rosedist --nproc-per-node=2 train_ddp --dataset brown --vocab-size 256 --seq-len 128 \
    --num-steps "$STEPS" --lr 1e-3 --eval-interval 20 --grad-compression "$c" \
    --checkpoint-interval "$STEPS" --checkpoint-path "$OUT/$c.safetensors" \
    --log-file "$OUT/$c.log" >"$OUT/$c.console" 2>&1 || { echo "brown compression: the $c run failed, see $OUT/$c.console" >&2; exit 1; }
  echo "$c $(( $(date +%s) - start ))" >>"$OUT/seconds"
done
node -e '
const fs = require("fs");
const [out, format, steps] = process.argv.slice(1);
const last = (c) => {
  const lines = fs.readFileSync(`${out}/${c}.metrics.jsonl`, "utf8").trim().split("\n").map((l) => JSON.parse(l));
  const v = lines.filter((m) => m.val_loss !== undefined || m.valLoss !== undefined).pop();
  if (v === undefined) throw new Error(`no val loss in ${out}/${c}.metrics.jsonl`);
  return { step: v.step, loss: v.val_loss ?? v.valLoss };
};
const a = last("none"), b = last(format);
console.log(`| wire | step | val loss |\n|---|---|---|\n| float32 | ${a.step} | ${a.loss.toFixed(6)} |\n| ${format} | ${b.step} | ${b.loss.toFixed(6)} |`);
console.log(`relative difference: ${(100 * (b.loss - a.loss) / a.loss).toFixed(3)} % (${format} vs float32, after ${steps} steps)`);
' "$OUT" "$FORMAT" "$STEPS"
