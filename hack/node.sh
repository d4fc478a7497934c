#!/usr/bin/env bash
# The local cluster's real node: containerd + kubelet registered as node real-0, labelled
# stoker.dev/real-node=true and tainted stoker.dev/real-node=true:NoSchedule, beside kwok's
# simulated node(s). Pods there really run; the project's images are loaded into its
# containerd (hack/images.sh), nothing is ever pulled.
#
#   hack/node.sh check             exit 0 when this machine can host a real node, else say why
#   hack/node.sh plan NAME         choose the node's pod bridge for cluster NAME; prints its
#                                  gateway address (hack/cluster.sh adds it to the apiserver's
#                                  certificate before creating the cluster)
#   hack/node.sh up NAME           start containerd, the apiserver forwarder and the kubelet
#                                  (a running node only gets the newest images)
#   hack/node.sh down NAME         stop them, remove every container, mount and address
#   hack/node.sh status NAME       say whether each process runs
#   hack/node.sh env NAME          the env lines hack/cluster.sh prints for a planned node
#
# Each cluster gets its own containerd, kubelet and bridge (stk-<hash>, a /24 in 10.213.0.0/16):
# two clusters on one machine never share containers. Everything listens on 127.0.0.1 or the
# bridge's gateway address; pods get no default route, so their traffic never leaves this
# machine. The local apiserver listens on 127.0.0.1 only and there is no kube-proxy, so a
# forwarder (socat) offers it to pods at GATEWAY:6443; the apiserver certificate names that
# address (hack/cluster.sh).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${STOKER_CACHE:-$HOME/.cache/stoker}
export KWOK_WORKDIR="$cache/kwok"

NODE_NAME=real-0
LABEL=stoker.dev/real-node
PACKAGES=(containerd runc containernetworking-plugins socat busybox-static)

log() { printf '[node %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "$*"; exit 1; }

usage() { echo "usage: $0 check | plan|up|down|status|env NAME" >&2; exit 2; }

# Why this machine cannot host a real node, or nothing when it can.
why_not() {
  [[ $(id -u) == 0 ]] || { echo "not root (containerd and the kubelet need root)"; return; }
  [[ $(uname -s) == Linux ]] || { echo "not Linux"; return; }
  [[ -d /sys/fs/cgroup ]] || { echo "no cgroup filesystem"; return; }
  grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null ||
    { echo "no overlay filesystem for containerd's snapshots"; return; }
  command -v containerd >/dev/null || command -v apt-get >/dev/null ||
    { echo "no containerd and no apt-get to install it"; return; }
}

need() {
  local missing=() p
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
    missing+=("$p"); done
  ((${#missing[@]} == 0)) && return
  log "installing ${missing[*]} (apt-get)"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
}

# ------------------------------------------------------------------------------ layout

setup_paths() {
  name=$1
  workdir="$KWOK_WORKDIR/clusters/$name"
  kubeconfig="$workdir/kubeconfig.yaml"
  pki="$workdir/pki"
  root="/var/lib/stoker-node/$name"     # containerd's images and snapshots, kubelet, CNI
  state="/run/stoker-node/$name"        # sockets and pid files
  logs="$root/logs"
  socket="$state/containerd.sock"
  bridge="stk-$(printf '%s' "$name" | sha256sum | cut -c1-8)"
}

load_plan() {
  [[ -f $root/plan.env ]] || die "no real node planned for cluster $name (hack/node.sh plan $name)"
  # shellcheck disable=SC1091
  source "$root/plan.env"  # SUBNET GATEWAY
}

# A /24 in 10.213.0.0/16 that no route and no other cluster's plan uses yet.
plan() {
  if [[ -f $root/plan.env ]]; then load_plan; echo "$GATEWAY"; return; fi
  mkdir -p /var/lib/stoker-node
  exec 9>/var/lib/stoker-node/plan.lock
  flock 9
  local start i third taken
  start=$((16#$(printf '%s' "$name" | sha256sum | cut -c1-4) % 250 + 1))
  taken=$(ip -4 route show | awk '{print $1}'
    cat /var/lib/stoker-node/*/plan.env 2>/dev/null | sed -n 's/^SUBNET=//p' || true)
  for ((i = 0; i < 250; i++)); do
    third=$(((start + i - 1) % 250 + 1))
    grep -qx "10.213.$third.0/24" <<<"$taken" || break
  done
  ((i < 250)) || die "every /24 of 10.213.0.0/16 is taken"
  mkdir -p "$root"
  printf 'SUBNET=10.213.%s.0/24\nGATEWAY=10.213.%s.1\n' "$third" "$third" >"$root/plan.env"
  flock -u 9
  load_plan
  echo "$GATEWAY"
}

print_env() {
  load_plan
  printf 'export STOKER_REAL_NODE=%q\n' "$NODE_NAME"
  # How pods reach the apiserver (no kube-proxy here): the forwarder on the bridge.
  printf 'export STOKER_POD_APISERVER_HOST=%q\n' "$GATEWAY"
  printf 'export STOKER_POD_APISERVER_PORT=6443\n'
  printf 'export STOKER_CONTAINERD_SOCKET=%q\n' "$socket"
}

# ------------------------------------------------------------------------------ processes

running() { [[ -f $state/$1.pid ]] && kill -0 "$(cat "$state/$1.pid")" 2>/dev/null; }

# spawn NAME CMD... -- start a daemon in its own session (it outlives this script, and a
# Ctrl-C in the shell that ran `make` does not reach it); `down` stops it by its pid file.
spawn() {
  local what=$1; shift
  setsid "$@" </dev/null >>"$logs/$what.log" 2>&1 &
  echo $! >"$state/$what.pid"
}

stop() {
  local what=$1 pid i
  [[ -f $state/$what.pid ]] || return 0
  pid=$(cat "$state/$what.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$state/$what.pid"
}

wait_until() {  # wait_until SECONDS DESCRIPTION CMD...
  local limit=$1 what=$2 t0=$SECONDS; shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS - t0 < limit)) || die "timed out after ${limit}s waiting for $what"
    sleep 0.5
  done
}

write_containerd_config() {
  cat >"$root/containerd.toml" <<EOF
# Written by hack/node.sh for cluster $name.
version = 2
root = "$root/containerd"
state = "$state/containerd"
[grpc]
  address = "$socket"
[ttrpc]
  address = "$socket.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$root/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/stoker-pause:1"
  # This VM forbids lowering oom_score_adj: without this every sandbox fails to start.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$root/net.d"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "$state/runc"
        SystemdCgroup = false
EOF
  mkdir -p "$root/net.d"
  # bridge + host-local with no routes: a pod reaches this machine (the gateway) and the other
  # pods, nothing else. ipMasq off: nothing is forwarded, no iptables rules are written.
  cat >"$root/net.d/10-stoker.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "stoker-$name",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$SUBNET", "gateway": "$GATEWAY"}]],
        "dataDir": "$root/ipam"
      }
    }
  ]
}
EOF
}

write_kubelet_config() {
  cat >"$root/kubelet.yaml" <<EOF
# Written by hack/node.sh for cluster $name.
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# The bridge's gateway is the node's address: the apiserver reaches the kubelet there (logs,
# exec) and nothing listens beyond this machine.
address: $GATEWAY
port: 10250
readOnlyPort: 0
healthzBindAddress: $GATEWAY
healthzPort: 10248
containerRuntimeEndpoint: unix://$socket
podLogsDir: $root/pod-logs
# cgroup v1 VM without systemd as init; cadvisor cannot stat the root disk here.
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
cgroupsPerQOS: false
enforceNodeAllocatable: []
localStorageCapacityIsolation: false
# Loaded images are the only images: never garbage-collect them, never evict for disk.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {"memory.available": "0%"}
# No cluster DNS here: pods get no resolver rather than the host's (which they cannot reach).
resolvConf: ""
serializeImagePulls: false
# Only the apiserver (a client certificate signed by the cluster CA) may use the kubelet API.
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization:
  mode: Webhook
registerWithTaints:
  - {key: $LABEL, value: "true", effect: NoSchedule}
EOF
}

node_ready() {
  [[ $("$bin/kubectl" --kubeconfig "$kubeconfig" get node "$NODE_NAME" \
    -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}') == True ]]
}

up() {
  local why t0=$SECONDS
  why=$(why_not)
  [[ -z $why ]] || die "this machine cannot host a real node: $why"
  [[ -f $kubeconfig ]] || die "no cluster $name (hack/cluster.sh up $name)"
  need "${PACKAGES[@]}"
  plan >/dev/null
  mkdir -p "$root" "$state" "$logs"
  bin=$("$here/build-control-plane.sh" 2>/dev/null | tail -n 1)

  if ! ip link show "$bridge" >/dev/null 2>&1; then
    # Made here, not by the CNI plugin at the first pod: the kubelet and the forwarder listen
    # on its gateway address before any pod exists.
    ip link add "$bridge" type bridge
    ip addr add "$GATEWAY/24" dev "$bridge"
    ip link set "$bridge" up
  fi

  if ! running containerd; then
    log "starting containerd (log: $logs/containerd.log)"
    write_containerd_config
    spawn containerd containerd --config "$root/containerd.toml"
    wait_until 30 containerd ctr -a "$socket" version
  fi
  "$here/images.sh" load "$socket"

  if ! running apiserver-forward; then
    local server
    server=$(sed -n 's#^ *server: https://127.0.0.1:\([0-9]*\).*#\1#p' "$kubeconfig" | head -n 1)
    [[ -n $server ]] || die "no https://127.0.0.1 server in $kubeconfig"
    spawn apiserver-forward socat "TCP-LISTEN:6443,bind=$GATEWAY,fork,reuseaddr" \
      "TCP:127.0.0.1:$server"
  fi

  if ! running kubelet; then
    log "starting the kubelet as node $NODE_NAME (log: $logs/kubelet.log)"
    write_kubelet_config
    spawn kubelet "$bin/kubelet" --config "$root/kubelet.yaml" --kubeconfig "$kubeconfig" \
      --root-dir "$root/kubelet" --cert-dir "$root/kubelet-pki" \
      --hostname-override "$NODE_NAME" --node-ip "$GATEWAY" --node-labels "$LABEL=true"
  fi
  wait_until 120 "node $NODE_NAME Ready" node_ready
  log "node $NODE_NAME ready in $((SECONDS - t0))s"
}

# Every container of this node's containerd stopped and deleted, and the network namespaces
# of its pod sandboxes unmounted (the veths go with them).
remove_containers() {
  local ctr=(ctr -a "$socket" -n k8s.io) id netns=()
  for id in $("${ctr[@]}" containers ls -q 2>/dev/null); do
    netns+=($("${ctr[@]}" containers info "$id" 2>/dev/null |
      grep -o '"path": *"/var/run/netns/[^"]*"' | cut -d'"' -f4 || true))
    "${ctr[@]}" tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
  done
  for id in $("${ctr[@]}" containers ls -q 2>/dev/null); do
    "${ctr[@]}" tasks delete -f "$id" >/dev/null 2>&1 || true
    "${ctr[@]}" containers delete "$id" >/dev/null 2>&1 || true
  done
  local ns
  for ns in "${netns[@]}"; do umount "$ns" 2>/dev/null || true; rm -f "$ns"; done
}

down() {
  [[ -d $root || -d $state ]] || { log "no real node for cluster $name"; return; }
  stop kubelet
  stop apiserver-forward
  if running containerd; then remove_containers; fi
  stop containerd
  # Whatever the kubelet and containerd left mounted (service-account tokens, snapshots).
  local m
  while read -r m; do umount -l "$m" 2>/dev/null || true; done < <(
    findmnt -rn -o TARGET | grep -E "^($root|$state)/" | sort -r)
  ip link delete "$bridge" 2>/dev/null || true
  rm -rf "$root" "$state"
  log "node $NODE_NAME of cluster $name removed"
}

status() {
  local what rc=0
  for what in containerd apiserver-forward kubelet; do
    if running "$what"; then echo "$what: running (pid $(cat "$state/$what.pid"))"
    else echo "$what: stopped"; rc=1; fi
  done
  return "$rc"
}

case ${1:-} in
  check)
    (($# == 1)) || usage
    why=$(why_not)
    if [[ -n $why ]]; then echo "$why"; exit 1; fi
    ;;
  plan | up | down | status | env)
    (($# == 2)) || usage
    setup_paths "$2"
    case $1 in
      plan) plan ;;
      up) up ;;
      down) down ;;
      status) status ;;
      env) print_env ;;
    esac
    ;;
  *) usage ;;
esac
