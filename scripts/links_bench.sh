#!/usr/bin/env bash
# Across machines (issue 15): our all-reduce against Gloo's between 2 hosts made of network
# namespaces (../shared/cluster/netns-cluster.sh beside the checkout, or $ROSEDIST_CLUSTER_TOOLS),
# for three links: none; 1gbit + 2500 µs one way; 1gbit + 2500 µs + 1 % loss (each emulated on
# the receiving host's ingress and the sending host's egress). Per link: bench:allreduce --netns
# n1,n2 with --gloo (both interleaved, --repeat rounds), then on the 1 Gbit link the GPT step
# buffer's all-reduce with and without --compression bf16.
#   scripts/links_bench.sh [--nproc K] [--repeat R] [--sizes LIST] [--links none,slow,lossy]
#                          [--topology flat|hierarchical|flat,hierarchical] [--no-gloo] [--transport stream|zmq|both]
# --topology flat,hierarchical (with --nproc 2 or more) runs our flat ring and the hierarchical
# all-reduce interleaved (bench:allreduce --topology); --no-gloo leaves the Gloo anchor out;
# --transport: the world ring's data sockets (default zmq, as training runs; stream, both).
# --train: training instead (bench:train --netns n1,n2 at the defaults, --nproc K per host): per link
# ours against torch_ddp_ref.py on 1 host and on 2, interleaved, --repeat rounds (tokens/s, scaling
# 1 → 2 hosts); then on the 1 Gbit link, 2 hosts, ours with --grad-compression none and bf16
# interleaved, --repeat rounds: the gradient all-reduce's ms per step (train_trace.ts phases).
#   scripts/links_bench.sh --train [--nproc K] [--repeat R] [--steps S] [--links none,slow,lossy]
# Needs root and the cluster's apt packages (see scripts/cluster_test.sh); prints markdown tables.
set -euo pipefail
cd "$(dirname "$0")/.."
NPROC=1 REPEAT=2 SIZES=4K,1M,16M,64M,gpt LINKS=none,slow,lossy TOPOLOGY=flat GLOO=--gloo TRANSPORT=zmq TRAIN=0 STEPS=30
while [ $# -gt 0 ]; do
  case "$1" in
    --nproc) NPROC=$2; shift 2 ;;
    --repeat) REPEAT=$2; shift 2 ;;
    --sizes) SIZES=$2; shift 2 ;;
    --links) LINKS=$2; shift 2 ;;
    --topology) TOPOLOGY=$2; shift 2 ;;
    --no-gloo) GLOO=; shift ;;
    --transport) TRANSPORT=$2; shift 2 ;;
    --train) TRAIN=1; shift ;;
    --steps) STEPS=$2; shift 2 ;;
    *) echo "links bench: unknown option $1 (--nproc, --repeat, --sizes, --links, --topology, --no-gloo, --transport, --train, --steps)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "links bench: needs root (network namespaces)" >&2; exit 1; }
TOOLS=${ROSEDIST_CLUSTER_TOOLS:-../shared/cluster}
[ -f "$TOOLS/netns-cluster.sh" ] || { echo "links bench: no cluster tools at $TOOLS (set ROSEDIST_CLUSTER_TOOLS)" >&2; exit 1; }
source scripts/cluster_lib.sh
cluster_refuse_if_up "links bench"
cluster_new_dir
JSONS=$(mktemp -d /tmp/links-train-XXXXXX)
trap 'cluster_down; rm -rf "$NSCLUSTER_DIR" "$JSONS"' EXIT
trap 'exit 130' INT TERM

ANCHORS=${ROSEDIST_ANCHORS:-$TOOLS/../anchors}
bench() { node --import tsx scripts/bench_allreduce.ts --netns n1,n2 --nproc "$NPROC" --anchors "$ANCHORS" --topology "$TOPOLOGY" --transport "$TRANSPORT" "$@"; }
train() { ROSEDIST_ANCHORS="$ANCHORS" node --import tsx scripts/bench_train.ts --netns n1,n2 --nproc "$NPROC" --steps "$STEPS" "$@"; }
# The gradient all-reduce per step of the compression rounds: per round, then medians and the change.
compression_table() {
  node -e '
const fs = require("fs");
const [dir, rounds] = process.argv.slice(1);
const get = (c, r) => JSON.parse(fs.readFileSync(`${dir}/comp-${c}-${r}.json`, "utf8")).rows.find((x) => x.hosts === 2);
const med = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const cols = { none: [], bf16: [] };
console.log("| round | float32: all-reduce ms/step (collective, waiting) | tokens/s | bf16: all-reduce ms/step (collective, waiting) | tokens/s |");
console.log("|---|---|---|---|---|");
for (let r = 1; r <= Number(rounds); r++) {
  const cell = (c) => { const x = get(c, r); cols[c].push(x); return `${x.phase_ms.allreduce.toFixed(1)} (${x.allreduce_split_ms.collective.toFixed(1)}, ${x.allreduce_split_ms.wait.toFixed(1)}) | ${x.tokens_per_s.toFixed(0)}`; };
  console.log(`| ${r} | ${cell("none")} | ${cell("bf16")} |`);
}
const m = (c, f) => med(cols[c].map(f));
const ar = (x) => x.phase_ms.allreduce, co = (x) => x.allreduce_split_ms.collective;
console.log(`| median | ${m("none", ar).toFixed(1)} (${m("none", co).toFixed(1)}) | ${m("none", (x) => x.tokens_per_s).toFixed(0)} | ${m("bf16", ar).toFixed(1)} (${m("bf16", co).toFixed(1)}) | ${m("bf16", (x) => x.tokens_per_s).toFixed(0)} |`);
console.log(`bf16 vs float32, medians: all-reduce per step ${(100 * (m("bf16", ar) / m("none", ar) - 1)).toFixed(1)} %, its collective part ${(100 * (m("bf16", co) / m("none", co) - 1)).toFixed(1)} %, tokens/s ${(100 * (m("bf16", (x) => x.tokens_per_s) / m("none", (x) => x.tokens_per_s) - 1)).toFixed(1)} %`);
' "$JSONS" "$REPEAT"
}
for link in ${LINKS//,/ }; do
  case "$link" in
    none) up=(0 none 0); what="no emulation (veth through a bridge)" ;;
    slow) up=(2500 1gbit 0); what="1gbit + 2500 µs one way" ;;
    lossy) up=(2500 1gbit 1); what="1gbit + 2500 µs one way + 1 % loss" ;;
    *) echo "links bench: unknown link $link (none, slow, lossy)" >&2; exit 2 ;;
  esac
  bash "$TOOLS/netns-cluster.sh" up 2 "${up[@]}" >/dev/null
  if [ "$TRAIN" = 1 ]; then
    echo "## training at the defaults, link: $what, 1 and 2 hosts × $NPROC worker(s), ours vs torch_ddp_ref.py"
    train --repeat "$REPEAT" --json "$JSONS/train-$link.json"
    if [ "$link" = slow ]; then
      echo "## training at the defaults on $what, 2 hosts × $NPROC worker(s): --grad-compression none vs bf16"
      for r in $(seq 1 "$REPEAT"); do
        for c in none bf16; do
          train --nnodes 2 --no-torch --grad-compression "$c" --json "$JSONS/comp-$c-$r.json" >/dev/null
        done
      done
      compression_table
    fi
    cluster_down
    continue
  fi
  echo "## link: $what, 2 hosts × $NPROC worker(s)"
  bench --sizes "$SIZES" $GLOO --repeat "$REPEAT"
  if [ "$link" = slow ]; then
    echo "## the default GPT's step buffer (2,973,185 floats) on $what: float32 vs bf16 on the wire"
    bench --sizes gpt --repeat "$REPEAT" --iters 10 --compression none
    bench --sizes gpt --repeat "$REPEAT" --iters 10 --compression bf16
  fi
  cluster_down
done
