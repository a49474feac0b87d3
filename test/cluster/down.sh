#!/usr/bin/env bash
# down.sh stops the cluster that up.sh started and removes every trace of it:
# its processes (by recorded PID, then containerd shims and container
# processes that carry its temp dir, sit in the kubepods cgroups it made or
# in its network namespace), the mounts under its temp dir, the network
# namespace (and with it the bridge, the iptables rules of the kubelet and
# kube-proxy, pod routes and net.* sysctls), the machine-wide sysctls the
# kubelet changed, and the temp dir. It then checks that the namespace is
# really gone. Safe to run after a failed start and to run twice.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
K8S_BIN=${K8S_BIN:-$REPO/bin/k8s/v1.37.2}
STATE_DIR=${CLUSTER_STATE_DIR:-$REPO/bin/cluster}
STATE_FILE=$STATE_DIR/state

log() { echo ">> $(date -u +%H:%M:%S) $*"; }

if [[ ! -f $STATE_FILE ]]; then
	log "no cluster state in $STATE_FILE: nothing to stop"
	exit 0
fi
[[ $EUID -eq 0 ]] || { echo "cluster-down: needs root" >&2; exit 1; }
DIR= NETNS= NETNS_INODE=
PRE_VAR_LOG_CONTAINERS=1 PRE_RUN_CONTAINERD=1 PRE_OPT_CNI=1 PRE_ETC_CNI=1 PRE_RUN_NETNS=1
# shellcheck disable=SC1090
source "$STATE_FILE"
D=$DIR
if [[ -z $D || $D != /tmp/gk-cluster.* ]]; then
	echo "cluster-down: $STATE_FILE names no gk-cluster temp dir (DIR=$D); refusing" >&2
	exit 1
fi
if [[ -n $NETNS && $NETNS != gk-* ]]; then
	echo "cluster-down: $STATE_FILE names no gk- network namespace (NETNS=$NETNS); refusing" >&2
	exit 1
fi
NSPATH=/run/netns/$NETNS
# The namespace's inode, to find what is still in it (recorded at creation;
# read now if up.sh died between creating and recording it).
if [[ -z $NETNS_INODE && -n $NETNS && -e $NSPATH ]]; then
	NETNS_INODE=$(stat -L -c %i "$NSPATH" 2>/dev/null)
fi
if [[ -n $NETNS_INODE && $(readlink /proc/self/ns/net) == "net:[$NETNS_INODE]" ]]; then
	echo "cluster-down: runs inside the cluster's network namespace $NETNS, whose processes it ends; run it from the host" >&2
	exit 1
fi
log "stopping the cluster in $D${NETNS:+ (network namespace $NETNS)}"

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
if [[ -e $NSPATH ]] && [[ -f $D/pids/kube-apiserver.pid ]] && alive "$(cat "$D/pids/kube-apiserver.pid")" kube-apiserver &&
	[[ -f $D/pids/kubelet.pid ]] && alive "$(cat "$D/pids/kubelet.pid")" kubelet; then
	K() { timeout 20 nsenter --net="$NSPATH" -- "$K8S_BIN/kubectl" --kubeconfig "$D/admin.kubeconfig" "$@"; }
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
#    arguments; container processes sit in the kubepods cgroups we made;
#    whatever still runs in the cluster's network namespace (not a pod's: pods
#    have namespaces of their own) was started by up.sh or a client of it.
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
# in_netns: PIDs of processes in the cluster's network namespace.
in_netns() {
	[[ -n $NETNS_INODE ]] || return 0
	local f
	for f in /proc/[0-9]*/ns/net; do
		[[ $(readlink "$f" 2>/dev/null) == "net:[$NETNS_INODE]" ]] || continue
		f=${f#/proc/}
		echo "${f%%/*}"
	done
}
for pid in $(in_netns); do
	[[ $pid == "$$" ]] && continue
	log "killing leftover process $pid in $NETNS: $({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | cut -c1-120)"
	kill -KILL "$pid" 2>/dev/null
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

# 7. Network: deleting the namespace takes its bridge, veths, routes,
#    iptables rules and net.* sysctls with it, once nothing is in it any more
#    (processes: step 4; pod namespaces' mounts: step 5). The host's network
#    namespace was never touched, so there is nothing to undo there.
netns_left=""
if [[ -n $NETNS ]]; then
	if [[ -e $NSPATH ]]; then
		ip netns del "$NETNS" 2>/dev/null || umount "$NSPATH" 2>/dev/null
		rm -f "$NSPATH" 2>/dev/null
	fi
	[[ -e $NSPATH ]] && netns_left+=" $NSPATH still exists;"
	left_pids=$(in_netns | grep -vx "$$" | tr '\n' ' ')
	[[ -n $left_pids ]] && netns_left+=" processes still in it: $left_pids;"
	# ip netns made /run/netns (a shared bind mount of itself) if it was not
	# there; undo that when no other namespace lives in it.
	if [[ $PRE_RUN_NETNS == 0 && -d /run/netns ]] && [[ -z $(ls -A /run/netns) ]]; then
		awk '$5 == "/run/netns" {found=1} END {exit !found}' /proc/self/mountinfo && umount /run/netns 2>/dev/null
		rmdir /run/netns 2>/dev/null
	fi
fi

# 8. Machine-wide sysctls back to what they were.
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
if [[ -n $netns_left ]]; then
	echo "cluster-down: network namespace $NETNS not gone:$netns_left left $STATE_FILE for another try" >&2
	exit 1
fi
rm -rf "$D"
rm -f "$STATE_FILE" "$STATE_DIR/kubeconfig"
log "cluster down; nothing of it remains${NETNS:+ (network namespace $NETNS deleted)}"
