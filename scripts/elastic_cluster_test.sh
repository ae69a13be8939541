#!/usr/bin/env bash
# The elastic cluster test (issue 17): --nnodes 2:3 across 3 hosts made of network namespaces
# (../shared/cluster/netns-cluster.sh beside the checkout, or $ROSEDIST_CLUSTER_TOOLS), checked by
# scripts/elastic_cluster_check.ts: a launcher SIGKILLed, one joining, a host cut off, too few hosts.
#   scripts/elastic_cluster_test.sh [--require]        (npm run test:cluster:elastic)
# Needs root, network namespaces and the packages that scripts/cluster_test.sh installs (run it
# once first); elsewhere it prints "elastic cluster test SKIPPED: <why>" and exits 0, or 1 with
# --require. The cluster comes down on any exit (trap). About 3 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
REQUIRE=0
[ "${1:-}" = --require ] && REQUIRE=1
skip() { echo "elastic cluster test SKIPPED: $*" >&2; exit "$REQUIRE"; }
[ "$(id -u)" = 0 ] || skip "not root (network namespaces need root)"
command -v node >/dev/null || { echo "elastic cluster test: node is not on PATH" >&2; exit 1; }
TOOLS=${ROSEDIST_CLUSTER_TOOLS:-../shared/cluster}
[ -f "$TOOLS/netns-cluster.sh" ] || skip "no cluster tools at $TOOLS (the shared/ folder beside the checkout; set ROSEDIST_CLUSTER_TOOLS)"
for c in slurmctld slurmd munged gcc nft; do
  command -v "$c" >/dev/null || [ -x "/usr/sbin/$c" ] || skip "$c is missing: run scripts/cluster_test.sh once (it installs the cluster's packages)"
done
probe="rosedist-probe-$$"
ip netns add "$probe" 2>/dev/null || skip "cannot create network namespaces here (ip netns add failed)"
ip netns del "$probe"
source scripts/cluster_lib.sh
cluster_refuse_if_up "elastic cluster test"
cluster_new_dir
trap 'cluster_down; rm -rf "$NSCLUSTER_DIR"' EXIT
trap 'exit 130' INT TERM

start=$(date +%s)
bash "$TOOLS/netns-cluster.sh" up 3 >/dev/null
echo "elastic cluster test: namespace cluster up in $(( $(date +%s) - start )) s (n1 10.77.0.11, n2 10.77.0.12, n3 10.77.0.13)" >&2
node --import tsx scripts/elastic_cluster_check.ts
echo "elastic cluster test: $(( $(date +%s) - start )) s in all" >&2
