#!/usr/bin/env bash
# The cluster test (issue 14): train_ddp under the real Slurm 22.05 and Open MPI 4.1 on a 2-node
# cluster made of network namespaces on this host (../shared/cluster/netns-cluster.sh beside the
# checkout, or $ROSEDIST_CLUSTER_TOOLS: ctl runs
# slurmctld, n1 and n2 run slurmd, each with its own address, hostname and /etc/hosts), checked by
# scripts/cluster_check.ts: the three sbatch scripts of scripts/slurm/ against 4 workers on one
# host (same val loss to 1e-6), a worker killed on n2, a stranger launcher, scancel; then
# scripts/dead_link_check.ts: n2's link dropped by nftables for 30 s must end every rank with an
# error naming the collective and the other host after --collective-timeout (issue 15).
#   scripts/cluster_test.sh [--require]        (npm run test:cluster)
# Installs the missing apt packages first. The cluster comes down on any exit (trap). Needs root
# and network namespaces: elsewhere it prints "cluster test SKIPPED: <why>" and exits 0, or 1
# with --require. The repository and node_modules must be where every namespace sees them (the
# namespaces share this host's filesystem), node on PATH. About 2 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
REQUIRE=0
[ "${1:-}" = --require ] && REQUIRE=1
skip() { echo "cluster test SKIPPED: $*" >&2; exit "$REQUIRE"; }
[ "$(id -u)" = 0 ] || skip "not root (network namespaces and slurmd need root)"
command -v node >/dev/null || { echo "cluster test: node is not on PATH" >&2; exit 1; }
TOOLS=${ROSEDIST_CLUSTER_TOOLS:-../shared/cluster}
[ -f "$TOOLS/netns-cluster.sh" ] || skip "no cluster tools at $TOOLS (the shared/ folder beside the checkout; set ROSEDIST_CLUSTER_TOOLS)"

PKGS="slurmctld slurmd slurm-client munge openmpi-bin iproute2 iptables nftables libnetfilter-queue-dev gcc libc6-dev"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  command -v apt-get >/dev/null || skip "packages missing ($missing) and no apt-get to install them"
  echo "cluster test: installing$missing" >&2
  apt-get update -o DPkg::Lock::Timeout=600 >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=600 $missing >/dev/null
fi

probe="rosedist-probe-$$"
ip netns add "$probe" 2>/dev/null || skip "cannot create network namespaces here (ip netns add failed: a container without CAP_SYS_ADMIN?)"
ip netns del "$probe"
source scripts/cluster_lib.sh
cluster_refuse_if_up "cluster test"
cluster_new_dir
export SLURM_CONF="$NSCLUSTER_DIR/etc/slurm.conf"
trap 'cluster_down; rm -rf "$NSCLUSTER_DIR"' EXIT
trap 'exit 130' INT TERM

start=$(date +%s)
bash "$TOOLS/netns-cluster.sh" up 2 >/dev/null
echo "cluster test: namespace cluster up in $(( $(date +%s) - start )) s (ctl 10.77.0.10, n1 10.77.0.11, n2 10.77.0.12)" >&2
rc=0
node --import tsx scripts/cluster_check.ts || rc=1
node --import tsx scripts/dead_link_check.ts || rc=1
echo "cluster test: $(( $(date +%s) - start )) s in all" >&2
exit $rc
