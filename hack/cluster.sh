#!/usr/bin/env bash
# The local control plane: etcd, kube-apiserver (RBAC, audit log of every write),
# kube-controller-manager, kube-scheduler and kwok-controller simulating one node and its
# kubelet (hack/kwok/stages), all from the binaries hack/build-control-plane.sh builds; plus,
# where this machine can host it, one real node (hack/node.sh: containerd + kubelet).
#
#   hack/cluster.sh up [name]    start the cluster, then print its env (a healthy cluster made
#                                from the same binaries and config is reused as it is)
#   hack/cluster.sh down [name]  delete the cluster and everything it wrote
#   hack/cluster.sh env [name]   print the env: eval "$(hack/cluster.sh env)"
#
# name defaults to "stoker". Clusters live in $STOKER_CACHE/kwok (default ~/.cache/stoker),
# every component listens on 127.0.0.1 only (the real node: on its pod bridge), and nothing is
# downloaded. STOKER_REAL_NODE=0 leaves the real node out; where the machine cannot host one
# (no root, no containerd) `up` says why in one line and the cluster has kwok's node only.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

usage() { echo "usage: $0 up|down|env [name]" >&2; exit 2; }
(( $# >= 1 && $# <= 2 )) || usage
cmd=$1
name=${2:-stoker}

cache=${STOKER_CACHE:-$HOME/.cache/stoker}
# kwokctl keeps clusters, logs and pki under KWOK_WORKDIR instead of ~/.kwok.
export KWOK_WORKDIR="$cache/kwok"
workdir="$KWOK_WORKDIR/clusters/$name"
kubeconfig="$workdir/kubeconfig.yaml"
audit_log="$workdir/logs/audit.log"

log() { printf '[cluster %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

bin=$("$here/build-control-plane.sh" | tail -n 1)
kwokctl=("$bin/kwokctl" --name "$name")
kubectl=("$bin/kubectl" --kubeconfig "$kubeconfig")

print_env() {
  printf 'export KUBECONFIG=%q\n' "$kubeconfig"
  printf 'export STOKER_BIN_DIR=%q\n' "$bin"
  printf 'export STOKER_AUDIT_LOG=%q\n' "$audit_log"
  printf 'export PATH=%q:"$PATH"\n' "$bin"
  if has_real_node; then "$here/node.sh" env "$name"; fi
}

exists() { [[ -f "$workdir/kwok.yaml" ]]; }

# The cluster was made with a real node (recorded at creation: the apiserver's certificate and
# flags depend on it).
has_real_node() { [[ -f "$workdir/stoker-real-node" ]]; }

# Whether to give a new cluster a real node: wanted unless STOKER_REAL_NODE=0, and possible.
want_real_node() {
  [[ ${STOKER_REAL_NODE:-1} != 0 ]] || return 1
  local why
  if ! why=$("$here/node.sh" check); then
    log "no real node on this machine ($why): pods run on kwok's simulated node only"
    return 1
  fi
}

# kwokctl settings that depend on the cluster: the real node's gateway in the apiserver's
# certificate (pods reach the apiserver there), and the apiserver's way to the kubelet
# (its InternalIP, with a client certificate the kubelet accepts).
real_node_config() {
  local gateway=$1
  cat <<EOF
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  kubeApiserverCertSANs: ["$gateway"]
componentsPatches:
  - name: kube-apiserver
    extraArgs:
      - {key: kubelet-preferred-address-types, value: InternalIP}
      - {key: kubelet-client-certificate, value: "$workdir/pki/admin.crt"}
      - {key: kubelet-client-key, value: "$workdir/pki/admin.key"}
EOF
}

# What a cluster was made from: binaries, kwok config and this script. A running cluster made
# from anything else is recreated, so edited stages never go unnoticed.
fingerprint() {
  { echo "$bin"; cat "$here/cluster.sh" "$here/node.sh" "$here"/kwok/*.yaml \
    "$here"/kwok/stages/*.yaml; } |
    sha256sum | cut -c1-16
}

healthy() {
  "${kubectl[@]}" get --raw /readyz >/dev/null 2>&1 &&
    [[ $("${kubectl[@]}" get node kwok-node-0 \
      -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

delete() {
  "$here/node.sh" down "$name" >&2 || true
  # kwokctl removes the cluster's context from --kubeconfig (default ~/.kube/config) and
  # refuses an empty path here: point it at the cluster's own kubeconfig, deleted anyway.
  "${kwokctl[@]}" delete cluster --kubeconfig "$kubeconfig" >&2
}

up() {
  local t0=$SECONDS
  if exists; then
    if [[ $(cat "$workdir/stoker-fingerprint" 2>/dev/null) != "$(fingerprint)" ]]; then
      log "cluster $name was made from other binaries or config: recreating it"
      delete
    elif ! healthy; then
      log "cluster $name exists but is not healthy: recreating it"
      delete
    else
      log "cluster $name is already running"
      # A stopped node is started again, a running one gets the newest images.
      if has_real_node; then "$here/node.sh" up "$name" >&2; fi
      print_env
      return
    fi
  fi

  log "creating cluster $name"
  # kwokctl picks free ports by looking at the listening sockets and the other clusters'
  # saved configs; creating one cluster at a time keeps two from picking the same ports.
  # (flock -o: the components kwokctl leaves running must not inherit the lock.)
  mkdir -p "$KWOK_WORKDIR"
  local node_config=() gateway
  if want_real_node; then
    gateway=$("$here/node.sh" plan "$name")
    node_config=(--config "$KWOK_WORKDIR/$name-real-node.yaml")
    real_node_config "$gateway" >"${node_config[1]}"
  fi
  # Binary paths are not http(s) URLs, so kwokctl uses them as they are; it reads each
  # binary's --version to pick flags. Giving any Stage replaces all of kwok's default stages.
  KWOK_KUBE_VERSION=$KUBERNETES_VERSION KWOK_KUBECTL_BINARY="$bin/kubectl" \
    flock -o "$KWOK_WORKDIR/create.lock" "${kwokctl[@]}" create cluster \
    --config "$here/kwok/kwokctl.yaml" \
    --config "$here/kwok/stages/node.yaml" \
    --config "$here/kwok/stages/pod.yaml" \
    --config <(sed "s|@KWOK_DIR@|$here/kwok|g" "$here/kwok/logs.yaml") \
    "${node_config[@]}" \
    --runtime binary \
    --kube-apiserver-binary "$bin/kube-apiserver" \
    --kube-controller-manager-binary "$bin/kube-controller-manager" \
    --kube-scheduler-binary "$bin/kube-scheduler" \
    --kwok-controller-binary "$bin/kwok" \
    --etcd-binary "$bin/etcd" \
    --kube-authorization \
    --kube-audit-policy "$here/kwok/audit-policy.yaml" \
    --kubeconfig "" \
    --wait 2m >&2 || {
      local rc=$?
      log "kwokctl create cluster failed (exit $rc); component logs: $workdir/logs"
      delete || true
      return "$rc"
    }

  "${kubectl[@]}" apply -f "$here/kwok/node.yaml" >&2
  "${kubectl[@]}" wait --for=condition=Ready node/kwok-node-0 --timeout=60s >&2
  if ((${#node_config[@]})); then
    mv "${node_config[1]}" "$workdir/stoker-real-node"
    "$here/node.sh" up "$name" >&2 || {
      local rc=$?
      log "the real node did not start (exit $rc); logs: /var/lib/stoker-node/$name/logs"
      delete || true
      return "$rc"
    }
  fi
  fingerprint >"$workdir/stoker-fingerprint"
  log "cluster $name ready in $((SECONDS - t0))s"
  print_env
}

case $cmd in
  up) up ;;
  down)
    if exists; then delete; else log "no cluster $name"; "$here/node.sh" down "$name" >&2; fi
    ;;
  env) print_env ;;
  *) usage ;;
esac
