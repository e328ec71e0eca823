#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine, without Docker:
#
#   bash scripts/cluster.sh up       # build, start, print KUBECONFIG=<path> last
#   bash scripts/cluster.sh status   # what runs
#   bash scripts/cluster.sh down     # stop everything, remove everything it made
#   bash scripts/cluster.sh build    # only build the binaries and images
#   bash scripts/cluster.sh diagnose # state, events and log tails, for a failed run
#
# Upstream Kubernetes 1.34 (one multi-call binary built from the k8s.io/kubernetes
# Go module: apiserver, controller-manager, scheduler, kubelet, kube-proxy), etcd,
# containerd + runc + bridge CNI, CoreDNS, Traefik (Ingress and Gateway API) and
# kube-router's NetworkPolicy controller, all as processes started and stopped
# by PID. The node is a network namespace
# of its own ("wsrc-node", reached from this host at 10.250.0.2), so its
# bridge, iptables rules and routes vanish with it; its pods' cgroups live under
# "wsrc" in every cgroup hierarchy; every file, socket and mount is under
# $WSRING_CLUSTER_DIR (default /tmp/wsrc). Names all start with "wsrc" so they
# cannot collide with anything else on the host.
#
# Images: wsring's operator, router and ws-pod images are built from the
# current tree by cluster/images (the runtime stage of docker/*.Dockerfile:
# user, entrypoint, ports, labels) and imported into containerd under the names
# the chart pulls, so `helm install wsring charts/wsring` works unchanged.
# Two images this machine cannot pull are stand-ins built from local programs:
# the sandbox "pause" (cluster/images/cmd/pause) and the chart's quick-start
# Redis (Debian's redis-server, imported as docker.io/library/redis:7.4-alpine
# and labelled as a stand-in).
#
# Needs root, Go, cargo, and Debian's containerd, runc, containernetworking-plugins,
# etcd-server, iptables, conntrack, ipset, openssl (installed here when missing).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/tools.sh
source "$ROOT/scripts/tools.sh"

K8S_VERSION=v1.34.4
DIR="${WSRING_CLUSTER_DIR:-/tmp/wsrc}"
CACHE="${WSRING_CLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wsring-cluster}"
BIN="$CACHE/bin"
IMAGES="$CACHE/images"

NETNS=wsrc-node
NODE_NAME=wsrc-node
HOST_IF=wsrc-h0
NODE_IF=wsrc-n0
HOST_IP=10.250.0.1
NODE_IP=10.250.0.2
LINK_PREFIX=24
BRIDGE=wsrc-br0
POD_CIDR=10.251.0.0/24
SVC_CIDR=10.252.0.0/16
API_SVC_IP=10.252.0.1
DNS_SVC_IP=10.252.0.10
CGROUP=wsrc
CNI_NETWORK=wsrc-pods
API="https://$NODE_IP:6443"

PKI="$DIR/pki"
LOGS="$DIR/logs"
PIDS="$DIR/pids"
CONTAINERD_SOCK="$DIR/containerd/containerd.sock"
KUBECONFIG_ADMIN="$DIR/kubeconfig"

# Components in start order; `down` stops them in reverse.
COMPONENTS=(etcd apiserver controller-manager scheduler containerd kubelet proxy coredns traefik kube-router)

say() { printf '[cluster] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# in_node CMD...: run CMD in the node's network namespace (host mount namespace).
in_node() { nsenter --net="/run/netns/$NETNS" "$@"; }

# ---------------------------------------------------------------------------
# Build: Go binaries (cached by content), wsring's release binaries, images
# ---------------------------------------------------------------------------

# go_binary NAME MODULE_DIR PACKAGE [GO BUILD FLAGS...]: build into $BIN/NAME
# unless a binary of the same sources (go.mod, go.sum, *.go, Go version) exists.
go_binary() {
  local name="$1" mod="$2" pkg="$3"
  shift 3
  local stamp
  stamp="$( (go version; cat "$mod/go.mod" "$mod/go.sum" 2>/dev/null; find "$mod" -name '*.go' -print0 | sort -z | xargs -0 cat; echo "$*") | sha256sum | cut -c1-16)"
  if [[ -x "$BIN/$name" && "$(cat "$BIN/.$name.stamp" 2>/dev/null)" == "$stamp" ]]; then
    return 0
  fi
  say "go build $name ($pkg)"
  local started=$SECONDS
  mkdir -p "$BIN"
  (cd "$mod" && go build -trimpath "$@" -o "$BIN/$name.new" "$pkg")
  mv "$BIN/$name.new" "$BIN/$name"
  echo "$stamp" >"$BIN/.$name.stamp"
  say "built $name in $((SECONDS - started)) s"
}

build_go() {
  local version_flags=(
    -X "k8s.io/component-base/version.gitVersion=$K8S_VERSION"
    -X "k8s.io/component-base/version.gitMajor=1"
    -X "k8s.io/component-base/version.gitMinor=34"
    -X "k8s.io/component-base/version.gitTreeState=clean"
    -X "k8s.io/component-base/version.gitCommit="
    -X "k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"
  )
  go_binary kube "$ROOT/cluster/kube" . -ldflags "-s -w ${version_flags[*]}"
  go_binary coredns "$ROOT/cluster/coredns" . -ldflags "-s -w"
  local traefik_version
  traefik_version="$(cd "$ROOT/cluster/traefik" && go list -m -f '{{.Version}}' github.com/traefik/traefik/v3)"
  go_binary traefik "$ROOT/cluster/traefik" github.com/traefik/traefik/v3/cmd/traefik \
    -ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$traefik_version"
  go_binary kube-router "$ROOT/cluster/kube-router" github.com/cloudnativelabs/kube-router/v2/cmd/kube-router -ldflags "-s -w"
  CGO_ENABLED=0 go_binary pause "$ROOT/cluster/images" ./cmd/pause -ldflags "-s -w"
  go_binary ociimage "$ROOT/cluster/images" ./cmd/ociimage
}

# The three wsring images from the current tree, plus the two stand-ins.
build_images() {
  say "cargo build --release (operator, router, ws-pod)"
  (cd "$ROOT" && cargo build --release --locked \
    -p wsring-operator -p wsring-router -p ws-pod \
    --bin wsring-operator --bin wsring-router --bin ws-pod)
  local version
  version="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$ROOT/charts/wsring/Chart.yaml")"
  [[ -n "$version" ]] || die "no appVersion in charts/wsring/Chart.yaml"
  mkdir -p "$IMAGES"
  local image bin
  for image in operator:wsring-operator router:wsring-router ws-pod:ws-pod; do
    bin="${image#*:}"
    "$BIN/ociimage" dockerfile --dockerfile "$ROOT/docker/${image%%:*}.Dockerfile" \
      --binary "$ROOT/target/release/$bin" --tag "ghcr.io/wsring/$bin:$version" \
      --out "$IMAGES/$bin.tar"
  done
  "$BIN/ociimage" binary --binary "$BIN/pause" --dest /pause --entrypoint /pause \
    --user 65535:65535 --tag wsring.local/pause:3.10 \
    --label "org.opencontainers.image.description=pod sandbox pause process (cluster/images/cmd/pause)" \
    --out "$IMAGES/pause.tar"
  "$BIN/ociimage" binary --binary "$(command -v redis-server)" --dest /usr/local/bin/redis-server \
    --entrypoint /usr/local/bin/redis-server --user 999:999 --expose 6379 \
    --tag docker.io/library/redis:7.4-alpine \
    --label "org.opencontainers.image.description=test-cluster stand-in: Debian's $(redis-server --version | cut -d' ' -f3), not the official image" \
    --out "$IMAGES/redis.tar"
}

install_packages() {
  local need=()
  command -v containerd >/dev/null || need+=(containerd)
  command -v runc >/dev/null || need+=(runc)
  [[ -x /usr/lib/cni/bridge ]] || need+=(containernetworking-plugins)
  command -v etcd >/dev/null || need+=(etcd-server)
  command -v iptables >/dev/null || need+=(iptables)
  command -v conntrack >/dev/null || need+=(conntrack)
  # kube-router's NetworkPolicy firewall refuses to start without it.
  command -v ipset >/dev/null || need+=(ipset)
  command -v openssl >/dev/null || need+=(openssl)
  command -v redis-server >/dev/null || need+=(redis-server)
  command -v nsenter >/dev/null || need+=(util-linux)
  command -v ip >/dev/null || need+=(iproute2)
  ((${#need[@]} == 0)) || tools_apt "${need[@]}"
}

# ---------------------------------------------------------------------------
# PKI and kubeconfigs
# ---------------------------------------------------------------------------

# cert NAME CN O EKU [SAN]: an EC P-256 key and a certificate signed by the CA.
cert() {
  local name="$1" cn="$2" org="$3" eku="$4" san="${5:-}"
  local subj="/CN=$cn"
  [[ -n "$org" ]] && subj="/O=$org$subj"
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$PKI/$name.key" -out "$PKI/$name.csr" -subj "$subj" 2>/dev/null
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature"
    echo "extendedKeyUsage=$eku"
    [[ -n "$san" ]] && echo "subjectAltName=$san"
  } >"$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -CAcreateserial -days 30 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

# kubeconfig FILE USER: a kubeconfig for the client certificate USER.{crt,key}.
kubeconfig() {
  local file="$1" user="$2"
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: wsrc
    cluster:
      server: $API
      certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
  - name: $user
    user:
      client-certificate-data: $(base64 -w0 "$PKI/$user.crt")
      client-key-data: $(base64 -w0 "$PKI/$user.key")
contexts:
  - name: wsrc
    context: {cluster: wsrc, user: $user}
current-context: wsrc
EOF
  chmod 0600 "$file"
}

make_pki() {
  mkdir -p "$PKI"
  openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$PKI/ca.key" -out "$PKI/ca.crt" -days 30 -subj "/CN=wsrc-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  cert apiserver kube-apiserver "" serverAuth \
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:$API_SVC_IP,IP:$NODE_IP,IP:127.0.0.1"
  cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters clientAuth
  cert kubelet-serving "system:node:$NODE_NAME" system:nodes serverAuth "DNS:$NODE_NAME,IP:$NODE_IP"
  cert admin kubernetes-admin system:masters clientAuth
  cert controller-manager system:kube-controller-manager "" clientAuth
  cert scheduler system:kube-scheduler "" clientAuth
  cert kubelet "system:node:$NODE_NAME" system:nodes clientAuth
  cert proxy system:kube-proxy "" clientAuth
  cert coredns wsrc:coredns "" clientAuth
  cert traefik wsrc:traefik "" clientAuth
  cert kube-router wsrc:kube-router "" clientAuth
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/sa.key" 2>/dev/null
  openssl ec -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  local user
  for user in admin controller-manager scheduler kubelet proxy coredns traefik kube-router; do
    kubeconfig "$DIR/$user.kubeconfig" "$user"
  done
  cp "$DIR/admin.kubeconfig" "$KUBECONFIG_ADMIN"
}

# ---------------------------------------------------------------------------
# Node: network namespace, cgroups, private mount
# ---------------------------------------------------------------------------

check_conflicts() {
  local cidr
  for cidr in 10.250.0.0/24 "$POD_CIDR" "$SVC_CIDR"; do
    if ip route show to match "${cidr%/*}" | grep -v '^default' | grep -q .; then
      die "this host already routes $cidr ($(ip route show to match "${cidr%/*}" | grep -v '^default' | head -n 1)); the test cluster needs it"
    fi
  done
}

make_node() {
  ip netns add "$NETNS"
  ip link add "$HOST_IF" type veth peer name "$NODE_IF"
  ip link set "$NODE_IF" netns "$NETNS"
  ip addr add "$HOST_IP/$LINK_PREFIX" dev "$HOST_IF"
  ip link set "$HOST_IF" up
  in_node ip link set lo up
  in_node ip addr add "$NODE_IP/$LINK_PREFIX" dev "$NODE_IF"
  in_node ip link set "$NODE_IF" up
  # The node's default gateway is this host, which does not forward: the node
  # reaches nothing but this host, its pods and its services.
  in_node ip route add default via "$HOST_IP"
  in_node sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 net.ipv4.conf.all.route_localnet=1
  # This host reaches pods and services through the node, as a router would.
  ip route add "$POD_CIDR" via "$NODE_IP" dev "$HOST_IF"
  ip route add "$SVC_CIDR" via "$NODE_IP" dev "$HOST_IF"

  # A cgroup named wsrc in every hierarchy: the kubelet's cgroupRoot.
  local root dir
  while read -r root; do
    dir="$root/$CGROUP"
    mkdir -p "$dir"
    if [[ -f "$root/cpuset.cpus" ]]; then
      cat "$root/cpuset.cpus" >"$dir/cpuset.cpus"
      cat "$root/cpuset.mems" >"$dir/cpuset.mems"
    fi
  done < <(cgroup_roots)

  # Mounts the kubelet makes (volumes) are shared below $DIR only.
  mount --bind "$DIR" "$DIR"
  mount --make-rshared "$DIR"
}

cgroup_roots() {
  awk '$9 == "cgroup" || $9 == "cgroup2" { print $5 }' /proc/self/mountinfo
}

# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------

# start NAME CMD...: run CMD in the node's network namespace, logging to $LOGS/NAME.log; its PID goes to $PIDS/NAME.
start() {
  local name="$1"
  shift
  # exec: nsenter execs CMD in turn, so $! is CMD's own PID.
  (exec nsenter --net="/run/netns/$NETNS" "$@") >"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$PIDS/$name"
}

running() {
  local pid
  pid="$(cat "$PIDS/$1" 2>/dev/null)" || return 1
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}

# wait_for WHAT SECONDS CMD...: poll CMD every half second.
wait_for() {
  local what="$1" limit="$2"
  shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      say "$what: not ready after ${limit} s"
      return 1
    fi
    sleep 0.5
  done
}

# component_dead NAME: true (and the log tail shown) when NAME is not running.
component_dead() {
  running "$1" && return 1
  say "$1 exited; last lines of $LOGS/$1.log:"
  tail -n 30 "$LOGS/$1.log" >&2 || true
  return 0
}

# ready NAME SECONDS CMD...: wait for CMD, failing at once if NAME died.
ready() {
  local name="$1" limit="$2"
  shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    component_dead "$name" && die "$name did not start"
    ((SECONDS < deadline)) || { tail -n 30 "$LOGS/$name.log" >&2; die "$name not ready after $limit s"; }
    sleep 0.5
  done
  say "$name ready"
}

# kubectl against the cluster, its discovery cache under $DIR (not in ~/.kube).
kctl() { KUBECACHEDIR="$DIR/kube-cache" "$KUBECTL" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }

healthz() { in_node curl -sf --cacert "$PKI/ca.crt" "$1"; }

start_controller_manager() {
  start controller-manager "$BIN/kube" controller-manager \
    --kubeconfig="$DIR/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$DIR/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$DIR/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=10257 --leader-elect=false \
    --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
    --use-service-account-credentials=true \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key"
}

start_control_plane() {
  start etcd etcd --name wsrc --data-dir "$DIR/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster wsrc=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381
  ready etcd 30 in_node curl -sf http://127.0.0.1:2379/health

  start apiserver "$BIN/kube" apiserver \
    --etcd-servers=http://127.0.0.1:2379 \
    --bind-address=0.0.0.0 --secure-port=6443 --advertise-address="$NODE_IP" \
    --service-cluster-ip-range="$SVC_CIDR" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$PKI/ca.crt" \
    --kubelet-preferred-address-types=InternalIP \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --allow-privileged=true --profiling=false --event-ttl=1h
  ready apiserver 90 healthz "https://127.0.0.1:6443/readyz"

  start_controller_manager
  start scheduler "$BIN/kube" scheduler \
    --kubeconfig="$DIR/scheduler.kubeconfig" \
    --authentication-kubeconfig="$DIR/scheduler.kubeconfig" \
    --authorization-kubeconfig="$DIR/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=10259 --leader-elect=false
  ready controller-manager 60 in_node curl -skf https://127.0.0.1:10257/healthz
  ready scheduler 60 in_node curl -skf https://127.0.0.1:10259/healthz
}

write_containerd_config() {
  mkdir -p "$DIR/containerd" "$DIR/cni/net.d" "$DIR/cni/ipam"
  cat >"$DIR/containerd/config.toml" <<EOF
version = 2
root = "$DIR/containerd/root"
state = "$DIR/containerd/state"
# No CAP_SYS_RESOURCE here: a negative OOM score adjustment is refused.
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]

[grpc]
  address = "$CONTAINERD_SOCK"

[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$DIR/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "wsring.local/pause:3.10"
  # Without it every sandbox fails here ("can't get final child's PID from pipe: EOF").
  restrict_oom_score_adj = true
  disable_hugetlb_controller = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$DIR/cni/net.d"
EOF
  cat >"$DIR/cni/net.d/10-$CNI_NETWORK.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "$CNI_NETWORK",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$DIR/cni/ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

write_node_configs() {
  printf 'nameserver %s\n' "$DNS_SVC_IP" >"$DIR/resolv.conf"
  cat >"$DIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP
failCgroupV1: false
oomScoreAdj: 0
failSwapOn: false
clusterDomain: cluster.local
clusterDNS: [$DNS_SVC_IP]
resolvConf: $DIR/resolv.conf
podLogsDir: $DIR/pod-logs
serializeImagePulls: false
maxPods: 110
evictionHard:
  memory.available: 100Mi
  nodefs.available: 2%
  imagefs.available: 2%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
EOF
  cat >"$DIR/proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $DIR/proxy.kubeconfig
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE_NAME
bindAddress: 0.0.0.0
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
oomScoreAdj: 0
# Conntrack limits are host-wide, not the node namespace's: leave them alone.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
}

start_node() {
  write_containerd_config
  write_node_configs
  start containerd containerd --config "$DIR/containerd/config.toml"
  ready containerd 30 ctr --address "$CONTAINERD_SOCK" version
  import_images

  start kubelet "$BIN/kube" kubelet --config="$DIR/kubelet.yaml" \
    --kubeconfig="$DIR/kubelet.kubeconfig" --hostname-override="$NODE_NAME" \
    --node-ip="$NODE_IP" --root-dir="$DIR/kubelet" --cert-dir="$DIR/kubelet/pki"
  start proxy "$BIN/kube" proxy --config="$DIR/proxy.yaml"
  ready kubelet 90 kctl wait --for=condition=Ready "node/$NODE_NAME" --timeout=1s
  ready proxy 30 in_node curl -sf http://127.0.0.1:10256/healthz
}

import_images() {
  local f
  for f in "$IMAGES"/*.tar; do
    ctr --address "$CONTAINERD_SOCK" -n k8s.io images import "$f" >/dev/null
  done
  say "images: $(ctr --address "$CONTAINERD_SOCK" -n k8s.io images ls -q | grep -v '^sha256:' | tr '\n' ' ')"
}

# CoreDNS and Traefik run as processes on the node; their identities and RBAC
# come from cluster/manifests/.
start_addons() {
  kctl apply --server-side -f "$ROOT/cluster/manifests/coredns.yaml" >/dev/null
  cat >"$DIR/Corefile" <<EOF
.:53 {
    errors
    health 127.0.0.1:18080
    ready 127.0.0.1:18181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $DIR/coredns.kubeconfig wsrc
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 30
    loadbalance
}
EOF
  start coredns "$BIN/coredns" -conf "$DIR/Corefile"
  ready coredns 30 in_node curl -sf http://127.0.0.1:18181/ready

  kctl apply --server-side -f "$CACHE/gateway-api-crds.yaml" >/dev/null
  kctl wait --for=condition=Established crd --all --timeout=60s >/dev/null
  # Established comes a moment before discovery lists the new kinds.
  wait_for "Gateway API discovery" 30 kctl get gatewayclasses
  kctl apply --server-side -f "$ROOT/cluster/manifests/traefik.yaml" >/dev/null
  # Traefik takes its API credentials from KUBECONFIG (client certificates
  # work only that way); the Gateway listener ports must be entry point ports.
  # Its API and dashboard answer on the node's 127.0.0.1:8082 only
  # (nsenter --net=/run/netns/wsrc-node curl 127.0.0.1:8082/api/http/routers).
  start traefik env KUBECONFIG="$DIR/traefik.kubeconfig" "$BIN/traefik" \
    --global.checknewversion=false --global.sendanonymoususage=false \
    --entrypoints.web.address=:80 --entrypoints.websecure.address=:443 \
    --entrypoints.traefik.address=127.0.0.1:8082 --ping=true --ping.entrypoint=traefik \
    --api=true --api.insecure=true \
    --providers.kubernetesingress=true \
    --providers.kubernetesingress.ingressendpoint.ip="$NODE_IP" \
    --providers.kubernetesgateway=true \
    --providers.kubernetesgateway.statusaddress.ip="$NODE_IP" \
    --log.level=INFO
  ready traefik 30 in_node curl -sf http://127.0.0.1:8082/ping

  # NetworkPolicy enforcement only: the bridge CNI routes, kube-proxy proxies.
  kctl apply --server-side -f "$ROOT/cluster/manifests/kube-router.yaml" >/dev/null
  start kube-router "$BIN/kube-router" --kubeconfig="$DIR/kube-router.kubeconfig" \
    --hostname-override="$NODE_NAME" --run-firewall=true --run-router=false \
    --run-service-proxy=false --enable-cni=false --enable-ipv6=false \
    --service-cluster-ip-range="$SVC_CIDR" --health-port=20244 --metrics-port=0
  ready kube-router 60 in_node curl -sf http://127.0.0.1:20244/healthz
}

# smoke_test: one Deployment of the pause image must roll out and go away
# again. Healthy endpoints alone do not prove it: a controller-manager whose
# controllers never start still answers /healthz, and then every Deployment
# waits forever ("Waiting for deployment spec update to be observed").
smoke_test() {
  local ns=wsrc-smoke
  kctl create namespace "$ns" >/dev/null
  kctl -n "$ns" apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: smoke}
spec:
  replicas: 1
  selector: {matchLabels: {app: smoke}}
  template:
    metadata: {labels: {app: smoke}}
    spec:
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: 0
      containers:
        - name: pause
          image: wsring.local/pause:3.10
          imagePullPolicy: Never
          securityContext: {runAsNonRoot: true, allowPrivilegeEscalation: false}
EOF
  if ! kctl -n "$ns" rollout status deployment/smoke --timeout=120s >&2; then
    diagnose >&2
    # Seen once on a fresh CI machine: a controller-manager that answered
    # /healthz but never observed a Deployment. One restart, then give up.
    say "smoke test: no rollout in 120 s; restarting the controller-manager once (diagnosis above)"
    stop_pid "$(cat "$PIDS/controller-manager")"
    mv "$LOGS/controller-manager.log" "$LOGS/controller-manager.first.log"
    start_controller_manager
    ready controller-manager 60 in_node curl -skf https://127.0.0.1:10257/healthz
    if ! kctl -n "$ns" rollout status deployment/smoke --timeout=120s >&2; then
      diagnose >&2
      die "a Deployment did not roll out on the fresh cluster, even after a controller-manager restart (diagnosis above)"
    fi
  fi
  kctl delete namespace "$ns" --wait=true --timeout=120s >/dev/null
  say "smoke test: a Deployment rolled out and was deleted"
}

# diagnose: what a failed run needs to be understood without the machine:
# component state, workloads, recent events, and the warnings and errors at
# the end of every component log.
diagnose() {
  say "diagnosis of the cluster in $DIR"
  status || true
  kctl get deployments,replicasets,statefulsets,pods -A -o wide 2>&1 || true
  kctl get events -A --sort-by=.lastTimestamp 2>&1 | tail -n 40 || true
  # The workloads' own words: the last lines of every pod outside kube-system.
  local ns pod
  while read -r ns pod; do
    echo "--- pod $ns/$pod: last log lines"
    kctl -n "$ns" logs "$pod" --all-containers --prefix --tail=15 2>&1 || true
  done < <(kctl get pods -A --no-headers -o custom-columns=NS:.metadata.namespace,NAME:.metadata.name 2>/dev/null |
    grep -v '^kube-system ' | head -n 20)
  local name
  for name in "${COMPONENTS[@]}"; do
    [[ -f "$LOGS/$name.log" ]] || continue
    echo "--- $name: last warnings and errors of $LOGS/$name.log"
    # klog's W/E lines and the JSON or logfmt levels of the others; the
    # requestheader CA noise of a cluster without an aggregation layer left out.
    grep -E '^[EWF][0-9]{4} |level=(error|warn|fatal)|"level":"(error|warn|fatal)"| (ERR|WRN|FTL) |panic' "$LOGS/$name.log" |
      grep -v 'requestheader-client-ca-file' | tail -n 12 || true
    echo "--- $name: last lines"
    tail -n 5 "$LOGS/$name.log"
  done
}

# ---------------------------------------------------------------------------
# Teardown: by PID, then whatever the runtime left (shims, containers, cgroups,
# mounts), then the namespace, which takes the bridge, veths and rules along.
# ---------------------------------------------------------------------------

stop_pid() {
  local pid="$1"
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 40); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.25
  done
  kill -KILL "$pid" 2>/dev/null || true
}

# PIDs in our cgroups: pod containers and the runc-started processes.
cgroup_pids() {
  local root
  while read -r root; do
    [[ -d "$root/$CGROUP" ]] && find "$root/$CGROUP" -name cgroup.procs -exec cat {} + 2>/dev/null
  done < <(cgroup_roots)
}

# containerd shims started by our containerd (their command line names our socket).
shim_pids() {
  local pid
  for pid in $(pgrep -f containerd-shim 2>/dev/null); do
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$CONTAINERD_SOCK" && echo "$pid"
  done
  return 0
}

down() {
  local name pid
  # Stop the kubelet first so it does not restart what is being stopped.
  for name in kube-router traefik coredns proxy kubelet; do
    [[ -f "$PIDS/$name" ]] && stop_pid "$(cat "$PIDS/$name")"
  done
  # Containers and their shims, by the PIDs our cgroups and socket identify.
  for pid in $(cgroup_pids); do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in $(shim_pids); do kill -KILL "$pid" 2>/dev/null || true; done
  for name in containerd scheduler controller-manager apiserver etcd; do
    [[ -f "$PIDS/$name" ]] && stop_pid "$(cat "$PIDS/$name")"
  done
  for pid in $(cgroup_pids); do kill -KILL "$pid" 2>/dev/null || true; done

  # Mounts under $DIR, deepest first (volumes, rootfs, shm, netns files, the bind).
  local mnt
  while read -r mnt; do
    umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
  done < <(awk -v d="$DIR" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r)

  # cgroups, deepest first; a cgroup that still has tasks is reported, not hidden.
  local root
  while read -r root; do
    [[ -d "$root/$CGROUP" ]] || continue
    find "$root/$CGROUP" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    [[ -d "$root/$CGROUP" ]] && say "warning: could not remove cgroup $root/$CGROUP"
  done < <(cgroup_roots)

  ip netns del "$NETNS" 2>/dev/null || true
  ip link del "$HOST_IF" 2>/dev/null || true
  # libcni keeps results of our network in its host-wide cache.
  rm -rf /var/lib/cni/results/"$CNI_NETWORK"-* 2>/dev/null || true
  rm -rf "$DIR"
  say "down: nothing left (status: $(leftovers || true))"
}

# leftovers: print what of ours still exists; false when nothing does.
leftovers() {
  local found=()
  [[ -e "/run/netns/$NETNS" ]] && found+=("netns $NETNS")
  ip link show "$HOST_IF" >/dev/null 2>&1 && found+=("link $HOST_IF")
  [[ -d "$DIR" ]] && found+=("dir $DIR")
  pgrep -f -- "$DIR/" >/dev/null && found+=("processes using $DIR: $(pgrep -f -- "$DIR/" | tr '\n' ' ')")
  [[ -n "$(cgroup_pids)" ]] && found+=("processes in cgroup $CGROUP")
  [[ -n "$(shim_pids)" ]] && found+=("containerd shims")
  local root
  while read -r root; do [[ -d "$root/$CGROUP" ]] && found+=("cgroup $root/$CGROUP"); done < <(cgroup_roots)
  grep -qF " $DIR" /proc/self/mountinfo && found+=("mounts under $DIR")
  if ((${#found[@]})); then
    printf '%s; ' "${found[@]}"
    return 0
  fi
  echo "nothing"
  return 1
}

# keep_logs: a failed start keeps its logs (the rest is torn down).
keep_logs() {
  [[ -d "$LOGS" ]] || return 0
  rm -rf "$CACHE/failed-up-logs"
  cp -r "$LOGS" "$CACHE/failed-up-logs"
  say "up failed; logs kept in $CACHE/failed-up-logs; tearing down"
}

status() {
  if [[ ! -d "$PIDS" ]]; then
    echo "cluster: not up (leftovers: $(leftovers || true))"
    return 1
  fi
  local name state=0
  for name in "${COMPONENTS[@]}"; do
    if running "$name"; then
      printf '%-20s running (pid %s)\n' "$name" "$(cat "$PIDS/$name")"
    else
      printf '%-20s NOT RUNNING (log: %s)\n' "$name" "$LOGS/$name.log"
      state=1
    fi
  done
  if ((state == 0)); then
    kctl get nodes -o wide
    kctl get pods -A
  fi
  echo "KUBECONFIG=$KUBECONFIG_ADMIN"
  return "$state"
}

build() {
  install_packages
  tools_k8s
  local started=$SECONDS
  build_go
  bash "$ROOT/scripts/gateway-api-crds.sh" "$CACHE/gateway-api-crds.yaml"
  build_images
  say "build done in $((SECONDS - started)) s"
}

up() {
  [[ $(id -u) -eq 0 ]] || die "needs root (network namespace, cgroups, mounts)"
  if [[ -d "$DIR" || -e "/run/netns/$NETNS" ]]; then
    die "a cluster (or its leftovers) exists: bash scripts/cluster.sh down first"
  fi
  check_conflicts
  build
  local started=$SECONDS
  mkdir -p "$DIR" "$LOGS" "$PIDS"
  make_node
  make_pki
  start_control_plane
  start_node
  start_addons
  smoke_test
  say "cluster up in $((SECONDS - started)) s (after the build); logs in $LOGS"
  echo "KUBECONFIG=$KUBECONFIG_ADMIN"
}

case "${1:-}" in
  up)
    # A failed start leaves nothing behind either.
    trap 'rc=$?; if ((rc != 0)); then keep_logs; down; fi' EXIT
    up
    trap - EXIT
    ;;
  down) tools_k8s; down ;;
  status) tools_k8s; status ;;
  build) build ;;
  diagnose) tools_k8s; diagnose ;;
  *) echo "usage: bash scripts/cluster.sh up|down|status|build|diagnose" >&2; exit 2 ;;
esac
