#!/usr/bin/env bash
# down.sh stops the cluster that up.sh started and removes every trace of it:
# its processes (by recorded PID, then containerd shims and container
# processes that carry its temp dir or sit in the kubepods cgroups it made),
# the mounts under its temp dir, the bridge, the iptables chains the kubelet
# and kube-proxy created, the sysctls they changed, and the temp dir.
# Safe to run after a failed start and to run twice.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
K8S_BIN=${K8S_BIN:-$REPO/bin/k8s/v1.37.2}
STATE_DIR=${CLUSTER_STATE_DIR:-$REPO/bin/cluster}
STATE_FILE=$STATE_DIR/state
BRIDGE=gk0

log() { echo ">> $(date -u +%H:%M:%S) $*"; }

if [[ ! -f $STATE_FILE ]]; then
	log "no cluster state in $STATE_FILE: nothing to stop"
	exit 0
fi
[[ $EUID -eq 0 ]] || { echo "cluster-down: needs root" >&2; exit 1; }
DIR=
PRE_VAR_LOG_CONTAINERS=1 PRE_RUN_CONTAINERD=1 PRE_OPT_CNI=1 PRE_ETC_CNI=1
# shellcheck disable=SC1090
source "$STATE_FILE"
D=$DIR
if [[ -z $D || $D != /tmp/gk-cluster.* ]]; then
	echo "cluster-down: $STATE_FILE names no gk-cluster temp dir (DIR=$D); refusing" >&2
	exit 1
fi
log "stopping the cluster in $D"

# alive PID NAME: the PID still runs and is the process we started (its
# command line names our binary), not a recycled PID.
alive() {
	[[ -r /proc/$1/cmdline ]] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -q -- "$2"
}
stop_pid() { # PID NAME SECONDS
	local pid=$1 name=$2 secs=${3:-10}
	alive "$pid" "$name" || return 0
	kill -TERM "$pid" 2>/dev/null
	local t0=$SECONDS deadline=$((SECONDS + secs))
	while ((SECONDS < deadline)); do
		if ! alive "$pid" "$name"; then
			((SECONDS - t0 < 3)) || log "$name took $((SECONDS - t0))s to stop"
			return 0
		fi
		sleep 0.2
	done
	log "$name ($pid) ignored SIGTERM for ${secs}s: SIGKILL"
	kill -KILL "$pid" 2>/dev/null
	sleep 0.2
}
stop() { # NAME
	local f=$D/pids/$1.pid
	[[ -f $f ]] || return 0
	stop_pid "$(cat "$f")" "$1" "${2:-10}"
}

SOCK=$D/containerd/containerd.sock
CTR() { ctr -n k8s.io -a "$SOCK" "$@"; }

# 1. Let the kubelet end the pods while everything still runs, so that the CNI
#    plugin releases addresses and the kubelet unmounts volumes itself.
if [[ -f $D/pids/kube-apiserver.pid ]] && alive "$(cat "$D/pids/kube-apiserver.pid")" kube-apiserver &&
	[[ -f $D/pids/kubelet.pid ]] && alive "$(cat "$D/pids/kubelet.pid")" kubelet; then
	K() { timeout 20 "$K8S_BIN/kubectl" --kubeconfig "$D/admin.kubeconfig" "$@"; }
	# Finalizers would keep pods (and so their containers) around.
	K get pods -A -o 'jsonpath={range .items[?(@.metadata.finalizers)]}{.metadata.namespace} {.metadata.name}{"\n"}{end}' 2>/dev/null |
		while read -r ns name; do
			[[ -n $name ]] && K -n "$ns" patch pod "$name" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1
		done
	log "deleting all pods"
	K delete pods -A --all --grace-period=1 --wait=false >/dev/null 2>&1
	for ((i = 0; i < 150; i++)); do
		[[ -z $(CTR tasks ls -q 2>/dev/null) ]] && break
		sleep 0.2
	done
fi

# 2. Components: the API server's clients together, then the API server,
#    then etcd (an API server whose etcd is gone is slow to stop).
log "stopping the components"
for name in kube-proxy kubelet kube-scheduler kube-controller-manager; do
	stop "$name" &
done
wait
stop kube-apiserver
stop etcd

# 3. Containers the kubelet did not end: kill their tasks, then containerd.
if [[ -S $SOCK ]] && [[ -f $D/pids/containerd.pid ]] && alive "$(cat "$D/pids/containerd.pid")" containerd; then
	for id in $(CTR tasks ls -q 2>/dev/null); do
		CTR tasks kill -s SIGKILL "$id" >/dev/null 2>&1
	done
	sleep 0.5
	for id in $(CTR tasks ls -q 2>/dev/null); do
		CTR tasks delete -f "$id" >/dev/null 2>&1
	done
fi
stop containerd 15

# 4. Anything left that is ours: shims carry our socket path in their
#    arguments; container processes sit in the kubepods cgroups we made.
for f in $(grep -lsF -- "$D/" /proc/[0-9]*/cmdline); do
	pid=${f#/proc/}
	pid=${pid%/cmdline}
	# Skip the grep that found it (its own arguments name the dir, and it is gone).
	cmd=$({ tr '\0' ' ' <"$f"; } 2>/dev/null) || continue
	[[ -n $cmd ]] || continue
	log "killing leftover process $pid: ${cmd:0:120}"
	kill -KILL "$pid" 2>/dev/null
done
cgroup_dirs() {
	local c
	for c in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods /sys/fs/cgroup/kubepods.slice; do
		[[ -d $c ]] && echo "$c"
	done
}
for c in $(cgroup_dirs); do
	find "$c" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u | while read -r pid; do
		kill -KILL "$pid" 2>/dev/null
	done
done
sleep 0.3

log "unmounting and removing the network, cgroups and files"
# 5. Mounts under the temp dir (the kubelet bind-mounts its root dir onto
#    itself, volumes, container rootfs, shm, network namespaces), deepest first.
for ((round = 0; round < 3; round++)); do
	mapfile -t mnts < <(awk -v d="$D" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r -u)
	((${#mnts[@]})) || break
	for m in "${mnts[@]}"; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
	done
done
if awk -v d="$D" 'index($5, d) == 1 {found=1} END {exit !found}' /proc/self/mountinfo; then
	log "WARNING: mounts under $D remain:"
	awk -v d="$D" 'index($5, d) == 1 {print "   " $5}' /proc/self/mountinfo
fi

# 6. cgroups the kubelet made (empty now), deepest first.
for c in $(cgroup_dirs); do
	find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null
done

# 7. Network: the bridge, and the iptables chains that did not exist before.
ip link del "$BRIDGE" 2>/dev/null
if [[ -x $K8S_BIN/kube-proxy ]]; then
	"$K8S_BIN/kube-proxy" --cleanup --v=0 >"$D/logs/kube-proxy-cleanup.log" 2>&1
fi
clean_chains() { # iptables|ip6tables v4|v6
	local ipt=$1 fam=$2 t chain rule
	command -v "$ipt" >/dev/null || return 0
	for t in filter nat mangle; do
		local before=$D/chains.$fam.$t
		[[ -f $before ]] || continue
		for chain in $("$ipt" -t $t -S 2>/dev/null | awk '$1=="-N"{print $2}' | grep -E '^(KUBE-|CNI-)'); do
			grep -qx -- "$chain" "$before" && continue
			# Drop the jumps into it, then the chain itself.
			"$ipt" -t $t -S 2>/dev/null | grep -E -- "-j $chain( |$)" | while read -r rule; do
				# shellcheck disable=SC2086
				"$ipt" -t $t ${rule/-A /-D } 2>/dev/null
			done
			"$ipt" -t $t -F "$chain" 2>/dev/null
		done
		for chain in $("$ipt" -t $t -S 2>/dev/null | awk '$1=="-N"{print $2}' | grep -E '^(KUBE-|CNI-)'); do
			grep -qx -- "$chain" "$before" || "$ipt" -t $t -X "$chain" 2>/dev/null
		done
	done
}
clean_chains iptables v4
clean_chains ip6tables v6

# 8. Sysctls back to what they were.
if [[ -f $D/sysctls ]]; then
	while IFS='=' read -r k v; do
		[[ $(sysctl -n "$k" 2>/dev/null) == "$v" ]] || sysctl -q -w "$k=$v" >/dev/null 2>&1
	done <"$D/sysctls"
fi

# 9. Files outside the temp dir that the kubelet and containerd create.
if [[ -d /var/log/containers ]]; then
	find /var/log/containers -maxdepth 1 -type l -lname "$D/*" -delete 2>/dev/null
	[[ $PRE_VAR_LOG_CONTAINERS == 0 ]] && rmdir /var/log/containers 2>/dev/null
fi
[[ $PRE_RUN_CONTAINERD == 0 && -d /run/containerd ]] && rm -rf /run/containerd
[[ $PRE_OPT_CNI == 0 && -d /opt/cni ]] && rm -rf /opt/cni
[[ $PRE_ETC_CNI == 0 && -d /etc/cni ]] && rm -rf /etc/cni

# 10. The temp dir, the state file and the kubeconfig copy.
if awk -v d="$D" 'index($5, d) == 1 {found=1} END {exit !found}' /proc/self/mountinfo; then
	echo "cluster-down: mounts remain under $D; left it and $STATE_FILE for another try" >&2
	exit 1
fi
rm -rf "$D"
rm -f "$STATE_FILE" "$STATE_DIR/kubeconfig"
log "cluster down; nothing of it remains"
