#!/usr/bin/env bash
# kind.sh: the e2e path for machines with Docker (`make e2e-kind`).
# Creates a kind cluster (kind runs as `go run sigs.k8s.io/kind@v0.33.0`, so
# only Docker and Go are needed), builds and loads the image, installs
# cert-manager and the chart in certManager mode, runs the e2e suite (which
# ends with `helm uninstall`), then does the same in self mode, and always
# deletes the cluster. Without Docker it prints SKIP and exits 0.
#
# Environment: IMG (image, default gracekeeper:e2e), HELM (helm binary),
# KUBECTL (default: kubectl on PATH, else bin/k8s/v1.37.2/kubectl),
# KIND_CLUSTER (default gracekeeper-e2e), KIND_NODE_IMAGE (optional),
# CERT_MANAGER_MANIFEST (default: the v1.21.2 release's cert-manager.yaml).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
KIND=(go run sigs.k8s.io/kind@v0.33.0)
CLUSTER=${KIND_CLUSTER:-gracekeeper-e2e}
IMG=${IMG:-gracekeeper:e2e}
HELM=${HELM:-helm}
CERT_MANAGER_MANIFEST=${CERT_MANAGER_MANIFEST:-https://github.com/cert-manager/cert-manager/releases/download/v1.21.2/cert-manager.yaml}
NAMESPACE=gracekeeper-system
RELEASE=gracekeeper

if ! docker info >/dev/null 2>&1; then
	echo "e2e-kind: SKIP: Docker is needed (kind runs the Kubernetes node as a Docker container) and 'docker info' failed here"
	exit 0
fi
if [[ -z ${KUBECTL:-} ]]; then
	if command -v kubectl >/dev/null; then KUBECTL=kubectl; else KUBECTL=$REPO/bin/k8s/v1.37.2/kubectl; fi
fi

log() { echo ">> $(date -u +%H:%M:%S) $*"; }
WORK=$(mktemp -d)
export KUBECONFIG=$WORK/kubeconfig
cleanup() {
	local rc=$?
	if ((rc != 0)); then
		"$KUBECTL" -n "$NAMESPACE" logs -l app.kubernetes.io/name=gracekeeper --tail=50 --prefix 2>&1 || true
	fi
	log "deleting kind cluster $CLUSTER"
	"${KIND[@]}" delete cluster --name "$CLUSTER" || true
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT

log "creating kind cluster $CLUSTER"
"${KIND[@]}" create cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG" ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"} --wait 3m

log "building $IMG and loading it into the node"
(cd "$REPO" && docker build -t "$IMG" .)
"${KIND[@]}" load docker-image "$IMG" --name "$CLUSTER"

log "installing cert-manager from $CERT_MANAGER_MANIFEST"
"$KUBECTL" apply -f "$CERT_MANAGER_MANIFEST"
"$KUBECTL" -n cert-manager wait --for=condition=Available deployment --all --timeout 5m

install() { # $1 = certificates.mode
	log "helm install $RELEASE (certificates.mode=$1)"
	# cert-manager's own webhook may refuse Issuers for a while after its Deployments are
	# Available (its CA is still being injected): retry; upgrade --install is idempotent.
	for attempt in 1 2 3 4 5; do
		if "$HELM" upgrade --install "$RELEASE" "$REPO/charts/gracekeeper" --namespace "$NAMESPACE" --create-namespace \
			--set image.repository="${IMG%:*}" --set image.tag="${IMG##*:}" --set image.pullPolicy=Never \
			--set certificates.mode="$1" --set reports.installCRDs=true --set containerExits.readLogs=true --wait --timeout 5m; then
			return 0
		fi
		log "install attempt $attempt failed; retrying in 15s"
		sleep 15
	done
	return 1
}
run_suite() {
	log "running the e2e suite"
	(cd "$REPO" && HELM=$HELM GRACEKEEPER_E2E_UNINSTALL=1 GRACEKEEPER_E2E_NAMESPACE=$NAMESPACE GRACEKEEPER_E2E_RELEASE=$RELEASE \
		go test -tags e2e -count=1 -v -timeout 20m ./test/e2e/)
}

install certManager
run_suite # ends with helm uninstall
install self
run_suite
log "e2e-kind passed (certManager and self modes)"
