#!/usr/bin/env bash
# e2e-local.sh runs the e2e suite against a real node on this machine: it
# builds the gracekeeper image (no Docker), starts the cluster with it
# imported, installs the real chart with helm in self-managed certificate
# mode, runs `go test -tags e2e ./test/e2e/` and the node tests of
# test/cluster, and always brings the cluster down again.
# The cluster runs in a network namespace of its own (up.sh), and so do helm,
# kubectl and the tests (test/cluster/exec.sh): all of the run's traffic stays
# inside it. The script records the host's links, routes, network namespaces,
# kube/CNI iptables rules and the sysctls the node may touch before it starts
# and fails when any of them differs after cluster-down.
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
IN() { "$REPO/test/cluster/exec.sh" "$@"; }

if [[ $(uname -s) != Linux || $EUID -ne 0 ]]; then
	echo "e2e-local: SKIPPED: needs Linux and root to run a real node (this is $(uname -s), uid $EUID); 'make e2e-kind' needs only Docker"
	exit 0
fi
if [[ -e $STATE_DIR/state ]]; then
	echo "e2e-local: a cluster is already up ($STATE_DIR/state); run 'make cluster-down' first" >&2
	exit 1
fi

# What the checks below need, on a fresh machine too (up.sh installs the rest).
missing=()
command -v ip >/dev/null || missing+=(iproute2)
command -v nsenter >/dev/null || missing+=(util-linux)
command -v iptables-save >/dev/null || missing+=(iptables)
if ((${#missing[@]})); then
	command -v apt-get >/dev/null || { echo "e2e-local: missing ${missing[*]} and no apt-get to install them" >&2; exit 1; }
	log "installing ${missing[*]} with apt-get"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# host_net prints what of the host's network the cluster could change, in a
# form that does not change by itself: link names, routes of every table
# (without IPv6 lifetimes), network namespaces and nsfs mounts, the kube/CNI
# iptables rules (without counters), and the sysctls the node may write.
host_net() {
	echo "## links"
	ip -o link show | awk -F': ' '{sub(/@.*/, "", $2); print $2}' | sort
	echo "## IPv4 routes"
	ip -4 route show table all | sort
	echo "## IPv6 routes"
	ip -6 route show table all | sed -E 's/ expires [0-9]+sec//' | sort
	echo "## network namespaces"
	ip netns list 2>/dev/null | awk '{print $1}' | sort
	awk '$9 == "nsfs" || $5 == "/run/netns" {print "mount " $5}' /proc/self/mountinfo | sort
	echo "## iptables rules naming KUBE-/CNI- chains or the cluster's networks"
	local save
	for save in iptables-save ip6tables-save; do
		command -v "$save" >/dev/null || continue
		{ "$save" 2>/dev/null || true; } | { grep -E 'KUBE-|CNI-|gk0|10\.88\.|10\.87\.|10\.0\.0\.' || true; } | sed -E 's/\[[0-9]+:[0-9]+\]//' | sed "s/^/$save: /"
	done
	echo "## sysctls"
	sysctl net.ipv4.ip_forward net.ipv6.conf.all.forwarding net.ipv4.conf.all.route_localnet net.bridge.bridge-nf-call-iptables \
		vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes 2>/dev/null || true
}

WORK=$(mktemp -d /tmp/gk-e2e.XXXXXX)
host_net >"$WORK/host-net.before" || { rm -rf "$WORK"; echo "e2e-local: cannot read the host's network state" >&2; exit 1; }
cleanup() {
	local rc=$?
	if [[ -f $STATE_DIR/kubeconfig ]] && ((rc != 0)); then
		log "failed (exit $rc); pods and gracekeeper's logs:"
		IN "$K8S_BIN/kubectl" get pods -A -o wide 2>&1 || true
		IN "$K8S_BIN/kubectl" -n "$NAMESPACE" logs -l app.kubernetes.io/name=gracekeeper --tail=40 --prefix 2>&1 || true
	fi
	local dir= netns= inode=
	if [[ -f $STATE_DIR/state ]]; then
		dir=$(sed -n 's/^DIR=//p' "$STATE_DIR/state")
		netns=$(sed -n 's/^NETNS=//p' "$STATE_DIR/state")
		inode=$(sed -n 's/^NETNS_INODE=//p' "$STATE_DIR/state")
	fi
	"$REPO/test/cluster/down.sh" || rc=1
	# Prove it: nothing of the cluster may outlive it: no process, mount,
	# network namespace or temp dir, and the host's network as it was.
	if [[ -n $dir ]]; then
		local left="" f
		pgrep -f -- "$dir" >/dev/null && left+=" processes naming $dir:$(pgrep -f -- "$dir" | tr '\n' ' ');"
		grep -q -- "$dir" /proc/self/mountinfo && left+=" mounts under $dir;"
		[[ -n $netns ]] && ip netns list 2>/dev/null | grep -qw -- "$netns" && left+=" network namespace $netns;"
		if [[ -n $inode ]]; then
			for f in /proc/[0-9]*/ns/net; do
				[[ $(readlink "$f" 2>/dev/null) == "net:[$inode]" ]] && left+=" process ${f#/proc/} in $netns;"
			done
		fi
		[[ -e $dir ]] && left+=" temp dir $dir;"
		if [[ -n $left ]]; then
			echo "e2e-local: the cluster left traces:$left" >&2
			rc=1
		else
			log "verified: no process, mount, network namespace or temp dir of $dir remains"
		fi
	fi
	host_net >"$WORK/host-net.after"
	if ! diff -u "$WORK/host-net.before" "$WORK/host-net.after" >"$WORK/host-net.diff"; then
		echo "e2e-local: the host's network changed during the run (- before, + after):" >&2
		cat "$WORK/host-net.diff" >&2
		rc=1
	else
		log "verified: the host's links, routes, network namespaces, kube/CNI iptables rules and sysctls are as before"
	fi
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT

log "building the gracekeeper image $IMAGE_REPO:$IMAGE_TAG (static binary, user 65532)"
(cd "$REPO" && go run ./test/images/build -o "$WORK/gracekeeper.tar" -gracekeeper-ref "$IMAGE_REPO:$IMAGE_TAG" gracekeeper)

# The namespace has no way out, so compile the tests here, where the module
# proxy is reachable; inside, go test finds everything in the build cache.
log "compiling the node tests and the e2e suite"
(cd "$REPO" && go test -tags e2e -count=1 -run '^$' ./test/cluster/ ./test/e2e/ >/dev/null)

EXTRA_IMAGE_TARBALLS=$WORK/gracekeeper.tar K8S_BIN=$K8S_BIN "$REPO/test/cluster/up.sh"
NETNS=$(sed -n 's/^NETNS=//p' "$STATE_DIR/state")

log "helm install $RELEASE (certificates.mode=self) from inside $NETNS"
IN "$HELM" install "$RELEASE" "$REPO/charts/gracekeeper" --namespace "$NAMESPACE" --create-namespace \
	--set image.repository="$IMAGE_REPO" --set image.tag="$IMAGE_TAG" --set image.pullPolicy=Never \
	--set certificates.mode=self --set reports.installCRDs=true --set containerExits.readLogs=true --wait --timeout 3m
IN "$K8S_BIN/kubectl" -n "$NAMESPACE" get pods -o wide

log "running the node tests and the e2e suite (which ends with helm uninstall) inside $NETNS"
# -p 1: one package at a time, so that the timing checks do not share the 2 cores.
# GOPROXY=off: everything was compiled above; fail at once rather than reach out.
(cd "$REPO" && IN env HELM="$HELM" GRACEKEEPER_E2E_NAMESPACE=$NAMESPACE GRACEKEEPER_E2E_RELEASE=$RELEASE GRACEKEEPER_E2E_UNINSTALL=1 \
	GOPROXY=off GOTOOLCHAIN=local \
	go test -tags e2e -count=1 -p 1 -v -timeout "${E2E_TIMEOUT:-20m}" ${E2E_FLAGS:-} ./test/cluster/ ./test/e2e/)
if IN "$HELM" status "$RELEASE" --namespace "$NAMESPACE" >/dev/null 2>&1; then
	log "helm uninstall $RELEASE"
	IN "$HELM" uninstall "$RELEASE" --namespace "$NAMESPACE" --wait --timeout 2m
fi
left=$(IN "$K8S_BIN/kubectl" get pods -A -o jsonpath='{range .items[*]}{.metadata.namespace}/{.metadata.name} {.metadata.finalizers}{"\n"}{end}' | grep gracekeeper.dev || true)
if [[ -n $left ]]; then
	echo "e2e-local: pods still carry gracekeeper finalizers after uninstall:" >&2
	echo "$left" >&2
	exit 1
fi
log "e2e-local passed"
