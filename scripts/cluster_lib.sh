# Sourced (not run) by the scripts that bring up a namespace cluster with
# $TOOLS/netns-cluster.sh: scripts/cluster_test.sh, elastic_cluster_test.sh, links_bench.sh.
# Only one such cluster can exist on a host (its namespaces are named sw, ctl, n1..).

# Exit 1 with a line naming the namespaces when a cluster is already up. $1: the script's name.
cluster_refuse_if_up() {
  if ip netns list | awk '{print $1}' | grep -qxE 'sw|ctl|n[0-9]+'; then
    echo "$1: a namespace cluster is already up ($(ip netns list | awk '{print $1}' | tr '\n' ' ')); take it down first: $TOOLS/netns-cluster.sh down" >&2
    exit 1
  fi
}

# A fresh state folder for this run's cluster (slurm.conf, spools, logs), exported as
# NSCLUSTER_DIR for netns-cluster.sh.
cluster_new_dir() {
  NSCLUSTER_DIR=$(mktemp -d /tmp/nscluster-XXXXXX)
  export NSCLUSTER_DIR
}

# Take this run's cluster down whatever state it is in: its jobs, whatever of theirs is left on
# the nodes, then the daemons and the namespaces. Keeps $NSCLUSTER_DIR (the caller may bring the
# cluster up again); never fails.
cluster_down() {
  ip netns exec ctl scancel --full --user="$(id -un)" >/dev/null 2>&1 || true
  local ns pid
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -xE 'n[0-9]+'); do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do
      case "$(cat "/proc/$pid/comm" 2>/dev/null)" in slurmd) ;; *) kill -KILL "$pid" 2>/dev/null || true ;; esac
    done
  done
  bash "$TOOLS/netns-cluster.sh" down >/dev/null 2>&1 || true
  # Its down stops Slurm with `scontrol shutdown`, which fails when munge is gone: end this
  # cluster's daemons by their config file (NSCLUSTER_DIR is this run's own).
  pkill -KILL -f -- "-f $NSCLUSTER_DIR/etc/slurm.conf" 2>/dev/null || true
  # Its down sends munged SIGTERM without waiting; the next `up` starts munged only if none is
  # running, so it must not find this one dying (Slurm would lose authentication).
  for _ in $(seq 1 50); do pgrep -x munged >/dev/null || break; sleep 0.2; done
  return 0
}
