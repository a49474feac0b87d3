#!/usr/bin/env bash
# exec.sh CMD [ARGS...] runs CMD inside the local cluster's network namespace
# (the only place its API server can be reached), in the host's mount
# namespace and with KUBECONFIG set to the cluster's admin kubeconfig:
#
#   test/cluster/exec.sh bin/k8s/v1.37.2/kubectl get pods -A
#   test/cluster/exec.sh go test -tags e2e ./test/e2e/
#
# Root only (entering a network namespace needs CAP_SYS_ADMIN).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE_DIR=${CLUSTER_STATE_DIR:-$REPO/bin/cluster}
STATE_FILE=$STATE_DIR/state

(($#)) || { echo "usage: $0 CMD [ARGS...]" >&2; exit 2; }
[[ -f $STATE_FILE ]] || { echo "exec.sh: no cluster ($STATE_FILE missing): run 'make cluster-up'" >&2; exit 1; }
NETNS=$(sed -n 's/^NETNS=//p' "$STATE_FILE")
[[ -n $NETNS && -e /run/netns/$NETNS ]] || { echo "exec.sh: $STATE_FILE names no existing network namespace (NETNS=$NETNS)" >&2; exit 1; }
KUBECONFIG=$(sed -n 's/^KUBECONFIG=//p' "$STATE_FILE")
[[ -n $KUBECONFIG ]] || { echo "exec.sh: the cluster did not finish starting ($STATE_FILE has no KUBECONFIG)" >&2; exit 1; }
export KUBECONFIG
exec nsenter --net="/run/netns/$NETNS" -- "$@"
