#!/usr/bin/env bash
# e2e-local.sh runs the e2e suite against a real node on this machine: it
# builds the gracekeeper image (no Docker), starts the cluster with it
# imported, installs the real chart with helm in self-managed certificate
# mode, runs `go test -tags e2e ./test/e2e/` and the node tests of
# test/cluster, and always brings the cluster down again.
# Linux and root only; elsewhere it says so and exits 0 (skipped).
#
# Environment: HELM (helm binary; the Makefile builds v3.22.0 into bin/),
# K8S_BIN, E2E_FLAGS (extra `go test` flags), E2E_TIMEOUT (default 20m).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
K8S_BIN=${K8S_BIN:-$REPO/bin/k8s/v1.37.2}
STATE_DIR=${CLUSTER_STATE_DIR:-$REPO/bin/cluster}
HELM=${HELM:-helm}
IMAGE_REPO=gracekeeper.local/gracekeeper
IMAGE_TAG=e2e
RELEASE=gracekeeper
NAMESPACE=gracekeeper-system

log() { echo ">> $(date -u +%H:%M:%S) $*"; }

if [[ $(uname -s) != Linux || $EUID -ne 0 ]]; then
	echo "e2e-local: SKIPPED: needs Linux and root to run a real node (this is $(uname -s), uid $EUID); 'make e2e-kind' needs only Docker"
	exit 0
fi
if [[ -e $STATE_DIR/state ]]; then
	echo "e2e-local: a cluster is already up ($STATE_DIR/state); run 'make cluster-down' first" >&2
	exit 1
fi

WORK=$(mktemp -d /tmp/gk-e2e.XXXXXX)
cleanup() {
	local rc=$?
	if [[ -f $STATE_DIR/kubeconfig ]] && ((rc != 0)); then
		log "failed (exit $rc); pods and gracekeeper's logs:"
		"$K8S_BIN/kubectl" --kubeconfig "$STATE_DIR/kubeconfig" get pods -A -o wide 2>&1 || true
		"$K8S_BIN/kubectl" --kubeconfig "$STATE_DIR/kubeconfig" -n "$NAMESPACE" logs -l app.kubernetes.io/name=gracekeeper --tail=40 --prefix 2>&1 || true
	fi
	local dir=
	[[ -f $STATE_DIR/state ]] && dir=$(sed -n 's/^DIR=//p' "$STATE_DIR/state" | tr -d "'\"")
	"$REPO/test/cluster/down.sh" || rc=1
	rm -rf "$WORK"
	# Prove it: nothing of the cluster may outlive it (issue: no process,
	# mount, bridge or temp dir left behind).
	if [[ -n $dir ]]; then
		local left=""
		pgrep -f -- "$dir" >/dev/null && left+=" processes naming $dir:$(pgrep -f -- "$dir" | tr '\n' ' ');"
		grep -q -- "$dir" /proc/self/mountinfo && left+=" mounts under $dir;"
		ip link show gk0 >/dev/null 2>&1 && left+=" bridge gk0;"
		[[ -e $dir ]] && left+=" temp dir $dir;"
		if [[ -n $left ]]; then
			echo "e2e-local: the cluster left traces:$left" >&2
			rc=1
		else
			log "verified: no process, mount, bridge or temp dir of $dir remains"
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT

log "building the gracekeeper image $IMAGE_REPO:$IMAGE_TAG (static binary, user 65532)"
(cd "$REPO" && go run ./test/images/build -o "$WORK/gracekeeper.tar" -gracekeeper-ref "$IMAGE_REPO:$IMAGE_TAG" gracekeeper)

EXTRA_IMAGE_TARBALLS=$WORK/gracekeeper.tar K8S_BIN=$K8S_BIN "$REPO/test/cluster/up.sh"
export KUBECONFIG=$STATE_DIR/kubeconfig

log "helm install $RELEASE (certificates.mode=self)"
"$HELM" install "$RELEASE" "$REPO/charts/gracekeeper" --namespace "$NAMESPACE" --create-namespace \
	--set image.repository="$IMAGE_REPO" --set image.tag="$IMAGE_TAG" --set image.pullPolicy=Never \
	--set certificates.mode=self --wait --timeout 3m
"$K8S_BIN/kubectl" -n "$NAMESPACE" get pods -o wide

log "running the node tests and the e2e suite (which ends with helm uninstall) against the local node"
# -p 1: one package at a time, so that the timing checks do not share the 2 cores.
(cd "$REPO" && HELM=$HELM GRACEKEEPER_E2E_NAMESPACE=$NAMESPACE GRACEKEEPER_E2E_RELEASE=$RELEASE GRACEKEEPER_E2E_UNINSTALL=1 \
	go test -tags e2e -count=1 -p 1 -v -timeout "${E2E_TIMEOUT:-20m}" ${E2E_FLAGS:-} ./test/cluster/ ./test/e2e/)
if "$HELM" status "$RELEASE" --namespace "$NAMESPACE" >/dev/null 2>&1; then
	log "helm uninstall $RELEASE"
	"$HELM" uninstall "$RELEASE" --namespace "$NAMESPACE" --wait --timeout 2m
fi
left=$("$K8S_BIN/kubectl" get pods -A -o jsonpath='{range .items[*]}{.metadata.namespace}/{.metadata.name} {.metadata.finalizers}{"\n"}{end}' | grep gracekeeper.dev || true)
if [[ -n $left ]]; then
	echo "e2e-local: pods still carry gracekeeper finalizers after uninstall:" >&2
	echo "$left" >&2
	exit 1
fi
log "e2e-local passed"
