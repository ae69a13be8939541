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
# Needs root and the cluster's apt packages (see scripts/cluster_test.sh); prints markdown tables.
set -euo pipefail
cd "$(dirname "$0")/.."
NPROC=1 REPEAT=2 SIZES=4K,1M,16M,64M,gpt LINKS=none,slow,lossy TOPOLOGY=flat GLOO=--gloo TRANSPORT=zmq
while [ $# -gt 0 ]; do
  case "$1" in
    --nproc) NPROC=$2; shift 2 ;;
    --repeat) REPEAT=$2; shift 2 ;;
    --sizes) SIZES=$2; shift 2 ;;
    --links) LINKS=$2; shift 2 ;;
    --topology) TOPOLOGY=$2; shift 2 ;;
    --no-gloo) GLOO=; shift ;;
    --transport) TRANSPORT=$2; shift 2 ;;
    *) echo "links bench: unknown option $1 (--nproc, --repeat, --sizes, --links, --topology, --no-gloo, --transport)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "links bench: needs root (network namespaces)" >&2; exit 1; }
TOOLS=${ROSEDIST_CLUSTER_TOOLS:-../shared/cluster}
[ -f "$TOOLS/netns-cluster.sh" ] || { echo "links bench: no cluster tools at $TOOLS (set ROSEDIST_CLUSTER_TOOLS)" >&2; exit 1; }
source scripts/cluster_lib.sh
cluster_refuse_if_up "links bench"
cluster_new_dir
trap 'cluster_down; rm -rf "$NSCLUSTER_DIR"' EXIT
trap 'exit 130' INT TERM

ANCHORS=${ROSEDIST_ANCHORS:-$TOOLS/../anchors}
bench() { node --import tsx scripts/bench_allreduce.ts --netns n1,n2 --nproc "$NPROC" --anchors "$ANCHORS" --topology "$TOPOLOGY" --transport "$TRANSPORT" "$@"; }
for link in ${LINKS//,/ }; do
  case "$link" in
    none) up=(0 none 0); what="no emulation (veth through a bridge)" ;;
    slow) up=(2500 1gbit 0); what="1gbit + 2500 µs one way" ;;
    lossy) up=(2500 1gbit 1); what="1gbit + 2500 µs one way + 1 % loss" ;;
    *) echo "links bench: unknown link $link (none, slow, lossy)" >&2; exit 2 ;;
  esac
  bash "$TOOLS/netns-cluster.sh" up 2 "${up[@]}" >/dev/null
  echo "## link: $what, 2 hosts × $NPROC worker(s)"
  bench --sizes "$SIZES" $GLOO --repeat "$REPEAT"
  if [ "$link" = slow ]; then
    echo "## the default GPT's step buffer (2,973,185 floats) on $what: float32 vs bf16 on the wire"
    bench --sizes gpt --repeat "$REPEAT" --iters 10 --compression none
    bench --sizes gpt --repeat "$REPEAT" --iters 10 --compression bf16
  fi
  cluster_down
done
