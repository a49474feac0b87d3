#!/usr/bin/env bash
# up.sh starts a real single-node Kubernetes cluster on this machine from
# upstream parts only, the way kubernetes/hack/local-up-cluster.sh does:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and
# kube-proxy built by test/tools (`make node-assets`), plus Debian's
# containerd, runc and CNI plugins (installed with apt-get when missing).
#
# Every piece of state lives under one temp dir, recorded in $STATE_DIR/state
# before anything starts, so that down.sh can undo a failed start too.
# Linux and root only.
#
# The whole cluster runs in a network namespace of its own (`ip netns add
# gk-XXXXXX`), entered with `nsenter --net` so that every process keeps the
# host's mount namespace (the kubelet's volume mounts must be seen by
# containerd and runc, and down.sh must see them to unmount them). The pod
# bridge, the node address, kube-proxy's and the kubelet's iptables rules,
# pod routes and net.* sysctls all live in that namespace, which has no link
# to the host: nothing of the cluster touches the host's network namespace
# and no packet of it can leave the machine. Clients (kubectl, helm, go
# test) run inside it too: test/cluster/exec.sh.
#
# Environment: K8S_BIN (binaries), CLUSTER_STATE_DIR (state file + kubeconfig),
# NODE_IP (default 10.87.0.1: an address on the namespace's loopback device),
# CLUSTER_TIMEOUT (seconds to wait for the node and the smoke pod, default 120),
# KEEP_ON_FAILURE=1 (leave a failed cluster up for inspection).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
K8S_BIN=${K8S_BIN:-$REPO/bin/k8s/v1.37.2}
STATE_DIR=${CLUSTER_STATE_DIR:-$REPO/bin/cluster}
STATE_FILE=$STATE_DIR/state
TIMEOUT=${CLUSTER_TIMEOUT:-120}
NODE_NAME=gk-node
BRIDGE=gk0
# The node's address inside the namespace. Not in 127.0.0.0/8: it is the
# endpoint of the kubernetes Service, which pods reach through the bridge.
NODE_IP=${NODE_IP:-10.87.0.1}
POD_CIDR=10.88.0.0/16
SERVICE_CIDR=10.0.0.0/24
ETCD_PORT=23790
ETCD_PEER_PORT=23800
API_PORT=6443
PAUSE_IMAGE=gracekeeper.local/pause:1
TEST_IMAGE=gracekeeper.local/testbox:1
CNI_BIN=/usr/lib/cni
# Machine-wide (not per network namespace) sysctls the kubelet sets at start
# (container_manager_linux.go setupKernelTunables); down.sh restores them.
# The net.* ones that the kubelet, kube-proxy and the CNI plugin change are
# per namespace and go away with it.
SYSCTLS="vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes"

log() { echo ">> $(date -u +%H:%M:%S) $*"; }
die() { echo "cluster-up: $*" >&2; exit 1; }

[[ $(uname -s) == Linux ]] || die "needs Linux (this is $(uname -s))"
[[ $EUID -eq 0 ]] || die "needs root (the kubelet mounts, makes cgroups and networks)"
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
	[[ -x $K8S_BIN/$b ]] || die "$K8S_BIN/$b missing: run 'make node-assets'"
done
if [[ -e $STATE_FILE ]]; then
	die "$STATE_FILE exists: a cluster is up or a previous one was not cleaned; run 'make cluster-down' first"
fi
for d in memory cpu pids; do
	if [[ -d /sys/fs/cgroup/$d/kubepods ]]; then die "/sys/fs/cgroup/$d/kubepods exists: another kubelet runs on this machine"; fi
done
if [[ -e /sys/fs/cgroup/cgroup.controllers && -d /sys/fs/cgroup/kubepods ]]; then die "/sys/fs/cgroup/kubepods exists: another kubelet runs on this machine"; fi
[[ $NODE_IP != 127.* ]] || die "NODE_IP=$NODE_IP: a loopback address cannot be the kubernetes Service's endpoint"

# --- packages -----------------------------------------------------------------
missing=()
command -v containerd >/dev/null || missing+=(containerd)
command -v runc >/dev/null || missing+=(runc)
[[ -x $CNI_BIN/bridge && -x $CNI_BIN/host-local ]] || missing+=(containernetworking-plugins)
[[ -x /bin/busybox ]] || missing+=(busybox-static)
command -v iptables >/dev/null || missing+=(iptables)
command -v ip >/dev/null || missing+=(iproute2)
command -v nsenter >/dev/null || missing+=(util-linux)
command -v conntrack >/dev/null || missing+=(conntrack)
command -v openssl >/dev/null || missing+=(openssl)
if ((${#missing[@]})); then
	command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
	log "installing ${missing[*]} with apt-get"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- the temp dir, recorded first so that down.sh can always clean up --------
mkdir -p "$STATE_DIR"
D=$(mktemp -d /tmp/gk-cluster.XXXXXX)
chmod 755 "$D"
# The namespace is named after the temp dir, and recorded before it exists.
NETNS=gk-${D#/tmp/gk-cluster.}
{
	echo "DIR=$D"
	echo "NETNS=$NETNS"
} >"$STATE_FILE"
mkdir -p "$D"/{pids,logs,pki,etcd,containerd,cni/net.d,cni/data,kubelet/root,kubelet/certs,kubelet/volume-plugins,kubelet/pod-logs,images}
chmod 700 "$D/etcd" "$D/pki"
# What existed before, so that down.sh removes only what this run made.
{
	echo "PRE_VAR_LOG_CONTAINERS=$([[ -d /var/log/containers ]] && echo 1 || echo 0)"
	echo "PRE_RUN_CONTAINERD=$([[ -d /run/containerd ]] && echo 1 || echo 0)"
	echo "PRE_OPT_CNI=$([[ -d /opt/cni ]] && echo 1 || echo 0)"
	echo "PRE_ETC_CNI=$([[ -d /etc/cni ]] && echo 1 || echo 0)"
	# `ip netns add` makes /run/netns (a shared bind mount of itself) on first use.
	echo "PRE_RUN_NETNS=$([[ -d /run/netns ]] && echo 1 || echo 0)"
} >>"$STATE_FILE"
for s in $SYSCTLS; do
	v=$(sysctl -n "$s" 2>/dev/null) && echo "$s=$v" >>"$D/sysctls"
done

failed() {
	local rc=$?
	trap - EXIT
	((rc == 0)) && return 0
	echo "cluster-up FAILED (exit $rc); last lines of each component's log:" >&2
	for f in "$D"/logs/*.log; do
		[[ -e $f ]] || continue
		echo "----- $(basename "$f")" >&2
		tail -n 25 "$f" >&2
	done
	if [[ ${KEEP_ON_FAILURE:-0} == 1 ]]; then
		echo "KEEP_ON_FAILURE=1: left running; 'make cluster-down' removes it" >&2
	else
		"$REPO/test/cluster/down.sh" >&2 || true
	fi
	exit "$rc"
}
trap failed EXIT

# NS CMD...: runs CMD in the cluster's network namespace, in the host's mount
# namespace (`ip netns exec` would give it a private one).
NSPATH=/run/netns/$NETNS
NS() { nsenter --net="$NSPATH" -- "$@"; }

# start NAME CMD...: runs CMD in the namespace and in its own session (so ^C
# on make does not reach it), logs to logs/NAME.log and records its PID for
# down.sh (setsid and nsenter exec, so $! is CMD's PID).
start() {
	local name=$1
	shift
	setsid nsenter --net="$NSPATH" -- "$@" >"$D/logs/$name.log" 2>&1 </dev/null &
	echo $! >"$D/pids/$name.pid"
}

# wait_for WHAT SECONDS CMD...: polls CMD until it succeeds.
wait_for() {
	local what=$1 secs=$2 i
	shift 2
	for ((i = 0; i < secs * 5; i++)); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.2
	done
	die "timed out after ${secs}s waiting for $what"
}

# --- the network namespace: loopback, the node address, the pod bridge -------
# It has no route and no link out; addresses in it cannot clash with the
# host's. The node address sits on the namespace's loopback device (no dummy
# module needed); pods reach it from the bridge through kube-proxy's DNAT of
# the kubernetes Service.
ip netns add "$NETNS"
echo "NETNS_INODE=$(stat -L -c %i "$NSPATH")" >>"$STATE_FILE"
NS ip link set lo up
NS ip addr add "$NODE_IP/32" dev lo
NS ip link add "$BRIDGE" type bridge
NS ip addr add "${POD_CIDR%.*.*}.0.1/16" dev "$BRIDGE"
NS ip link set "$BRIDGE" up
echo "NODE_IP=$NODE_IP" >>"$STATE_FILE"
log "temp dir $D, network namespace $NETNS, node $NODE_NAME at $NODE_IP"

# --- PKI: a CA, the API server's serving cert, its kubelet client cert, the
# service-account signing key. Components authenticate with static tokens. ----
P=$D/pki
(
	cd "$P"
	openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj "/CN=gracekeeper-local-ca" 2>/dev/null
	cat >san.cnf <<EOF
[v3]
subjectAltName=IP:$NODE_IP,IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage=serverAuth
[client]
extendedKeyUsage=clientAuth
EOF
	openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
	openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 2 -extfile san.cnf -extensions v3 2>/dev/null
	openssl req -newkey rsa:2048 -nodes -keyout kubelet-client.key -out kubelet-client.csr -subj "/CN=kube-apiserver-kubelet-client/O=system:masters" 2>/dev/null
	openssl x509 -req -in kubelet-client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out kubelet-client.crt -days 2 -extfile san.cnf -extensions client 2>/dev/null
	openssl genrsa -out sa.key 2048 2>/dev/null
	openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
)
tok() { head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
ADMIN_TOKEN=$(tok) KCM_TOKEN=$(tok) SCHED_TOKEN=$(tok) KUBELET_TOKEN=$(tok) PROXY_TOKEN=$(tok)
cat >"$P/tokens.csv" <<EOF
$ADMIN_TOKEN,admin,admin,"system:masters"
$KCM_TOKEN,system:kube-controller-manager,kcm
$SCHED_TOKEN,system:kube-scheduler,sched
$KUBELET_TOKEN,system:node:$NODE_NAME,kubelet,"system:nodes"
$PROXY_TOKEN,system:kube-proxy,proxy
EOF
chmod 600 "$P"/*.key "$P/tokens.csv"

kubeconfig() { # FILE TOKEN
	cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {server: "https://$NODE_IP:$API_PORT", certificate-authority: "$P/ca.crt"}
users:
- name: u
  user: {token: "$2"}
contexts:
- name: local
  context: {cluster: local, user: u}
current-context: local
EOF
	chmod 600 "$1"
}
KUBECONFIG=$D/admin.kubeconfig
kubeconfig "$KUBECONFIG" "$ADMIN_TOKEN"
kubeconfig "$D/kcm.kubeconfig" "$KCM_TOKEN"
kubeconfig "$D/scheduler.kubeconfig" "$SCHED_TOKEN"
kubeconfig "$D/kubelet.kubeconfig" "$KUBELET_TOKEN"
kubeconfig "$D/proxy.kubeconfig" "$PROXY_TOKEN"
export KUBECONFIG
K() { NS "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG" "$@"; }

# --- control plane ---------------------------------------------------------------
log "starting etcd and kube-apiserver"
start etcd "$K8S_BIN/etcd" --name gk --data-dir "$D/etcd" \
	--listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
	--listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
	--initial-cluster "gk=http://127.0.0.1:$ETCD_PEER_PORT" --listen-metrics-urls "" --log-level warn
start kube-apiserver "$K8S_BIN/kube-apiserver" \
	--etcd-servers "http://127.0.0.1:$ETCD_PORT" \
	--advertise-address "$NODE_IP" --bind-address "$NODE_IP" --secure-port "$API_PORT" \
	--cert-dir "$P/apiserver" --tls-cert-file "$P/apiserver.crt" --tls-private-key-file "$P/apiserver.key" \
	--client-ca-file "$P/ca.crt" --token-auth-file "$P/tokens.csv" \
	--authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction --allow-privileged=true \
	--service-cluster-ip-range "$SERVICE_CIDR" \
	--service-account-issuer https://kubernetes.default.svc.cluster.local \
	--service-account-key-file "$P/sa.pub" --service-account-signing-key-file "$P/sa.key" \
	--enable-aggregator-routing=true \
	--kubelet-preferred-address-types InternalIP \
	--kubelet-client-certificate "$P/kubelet-client.crt" --kubelet-client-key "$P/kubelet-client.key"
wait_for "kube-apiserver /readyz (logs/kube-apiserver.log)" 60 K get --raw /readyz

log "starting kube-controller-manager and kube-scheduler"
start kube-controller-manager "$K8S_BIN/kube-controller-manager" \
	--kubeconfig "$D/kcm.kubeconfig" --authentication-kubeconfig "$D/kcm.kubeconfig" --authorization-kubeconfig "$D/kcm.kubeconfig" \
	--bind-address 127.0.0.1 --cert-dir "$P/kcm" --leader-elect=false \
	--use-service-account-credentials=true --service-account-private-key-file "$P/sa.key" --root-ca-file "$P/ca.crt" \
	--service-cluster-ip-range "$SERVICE_CIDR"
start kube-scheduler "$K8S_BIN/kube-scheduler" \
	--kubeconfig "$D/scheduler.kubeconfig" --authentication-kubeconfig "$D/scheduler.kubeconfig" --authorization-kubeconfig "$D/scheduler.kubeconfig" \
	--bind-address 127.0.0.1 --cert-dir "$P/scheduler" --leader-elect=false

# --- container runtime -----------------------------------------------------------
SOCK=$D/containerd/containerd.sock
cat >"$D/containerd/config.toml" <<EOF
version = 2
root = "$D/containerd/root"
state = "$D/containerd/state"
[grpc]
  address = "$SOCK"
[plugins."io.containerd.internal.v1.opt"]
  path = "$D/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # The VM lacks CAP_SYS_RESOURCE: runc cannot set a negative oom_score_adj
  # ("can't get final child's PID from pipe: EOF") unless CRI clamps it.
  restrict_oom_score_adj = true
  # Keep network namespaces under our state dir instead of /run/netns.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$D/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN"
    conf_dir = "$D/cni/net.d"
EOF
log "starting containerd ($(containerd --version | awk '{print $3}'))"
start containerd containerd --config "$D/containerd/config.toml"
CTR() { ctr -n k8s.io -a "$SOCK" "$@"; }
wait_for "containerd socket (logs/containerd.log)" 30 CTR version

log "building and importing the pause and test images"
(cd "$REPO" && go run ./test/images/build -o "$D/images/node.tar" pause testbox) >"$D/logs/images.log" 2>&1 ||
	die "building images failed: $(cat "$D/logs/images.log")"
CTR images import "$D/images/node.tar" >>"$D/logs/images.log" 2>&1 || die "ctr import failed: $(cat "$D/logs/images.log")"
for extra in ${EXTRA_IMAGE_TARBALLS:-}; do
	CTR images import "$extra" >>"$D/logs/images.log" 2>&1 || die "ctr import $extra failed"
done

# --- pod network: the namespace's bridge and our own host-local range --------
cat >"$D/cni/net.d/10-gk.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "gk",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$D/cni/data",
        "ranges": [[{"subnet": "$POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
EOF

# --- node ----------------------------------------------------------------------------
cat >"$D/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$SOCK
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
# Only the API server (its client cert, signed by our CA) may talk to us.
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $P/ca.crt}
authorization: {mode: AlwaysAllow}
# Facts of this VM: cgroup v1, swap possible, no systemd cgroup driver.
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
enforceNodeAllocatable: []
localStorageCapacityIsolation: false
volumePluginDir: $D/kubelet/volume-plugins
podLogsDir: $D/kubelet/pod-logs
# Our images are imported, never pulled: never garbage-collect or evict them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "1Mi", nodefs.available: "0%", imagefs.available: "0%", nodefs.inodesFree: "0%"}
serializeImagePulls: false
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
EOF
log "starting kubelet and kube-proxy"
start kubelet "$K8S_BIN/kubelet" --config "$D/kubelet/config.yaml" --kubeconfig "$D/kubelet.kubeconfig" \
	--root-dir "$D/kubelet/root" --cert-dir "$D/kubelet/certs" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --v=1

cat >"$D/proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $D/proxy.kubeconfig}
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_CIDR
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
# Leave the host's conntrack tuning alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
# No NodePorts on 127.0.0.1, so route_localnet stays as it is.
iptables: {localhostNodePorts: false}
EOF
start kube-proxy "$K8S_BIN/kube-proxy" --config "$D/proxy.yaml"

cp "$KUBECONFIG" "$STATE_DIR/kubeconfig"
echo "KUBECONFIG=$STATE_DIR/kubeconfig" >>"$STATE_FILE"

wait_for "node $NODE_NAME to register (logs/kubelet.log)" "$TIMEOUT" K get node "$NODE_NAME"
K wait --for=condition=Ready "node/$NODE_NAME" --timeout="${TIMEOUT}s" >/dev/null || die "node $NODE_NAME not Ready"
wait_for "the default ServiceAccount" "$TIMEOUT" K get serviceaccount default

log "node Ready; running a smoke pod"
K apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: gk-smoke, namespace: default}
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: c
    image: $TEST_IMAGE
    imagePullPolicy: Never
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
EOF
K wait --for=condition=Ready pod/gk-smoke --timeout="${TIMEOUT}s" >/dev/null || {
	K describe pod gk-smoke >&2 || true
	die "smoke pod not Running"
}
K delete pod gk-smoke --wait=true --timeout=60s >/dev/null
trap - EXIT
log "cluster up in ${SECONDS}s in network namespace $NETNS. Clients run inside it: test/cluster/exec.sh kubectl get pods -A ; make cluster-down stops it"
