#!/usr/bin/env bash
# Builds the local control plane from Go modules: kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kubelet (the real node), etcd, kwok, kwokctl, helm, prometheus and
# promtool, at the versions in versions.env.
#
# Binaries land in $STOKER_CACHE/bin/<versions-hash>/ (default ~/.cache/stoker), so a change of
# any pinned version builds a fresh set and a warm cache costs nothing. Go's own module and
# build caches (GOMODCACHE, GOCACHE) live outside the repo too. Prints the bin dir last.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache=${STOKER_CACHE:-$HOME/.cache/stoker}
# Keyed by the pinned versions only: the same versions always give the same binaries.
hash=$(sha256sum "$here/versions.env" | cut -c1-12)
bin="$cache/bin/$hash"
src="$cache/src"
mkdir -p "$bin" "$src"

export CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local

log() { printf '[control-plane %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# step NAME BINARY... -- runs the function build_NAME unless every BINARY is already there.
step() {
  local name=$1; shift
  local missing=0 b
  for b in "$@"; do [[ -x "$bin/$b" ]] || missing=1; done
  if (( missing == 0 )); then log "$name: cached"; return; fi
  local t0=$SECONDS
  log "$name: building (first time only; this takes minutes)"
  # go build is silent while it compiles: say every 30 s that it is still at work.
  (while sleep 30; do log "$name: still building ($((SECONDS - t0))s)"; done) &
  local ticker=$!
  "build_$name" || { kill "$ticker"; return 1; }
  kill "$ticker"
  log "$name: done in $((SECONDS - t0))s"
}

build_kubernetes() {
  # k8s.io/kubernetes cannot be `go install`ed: its go.mod points the staging modules at
  # ./staging. A small consumer module replaces each with its published v0.Y.Z instead.
  local v=$KUBERNETES_VERSION minor staging=${KUBERNETES_VERSION/v1./v0.}
  minor=$(cut -d. -f2 <<<"$v")
  local dir="$src/kubernetes-$v"
  mkdir -p "$dir"
  {
    echo "module stoker.local/controlplane"
    echo "go 1.24.0"
    echo "require k8s.io/kubernetes $v"
    for m in api apiextensions-apiserver apimachinery apiserver cli-runtime client-go \
      cloud-provider cluster-bootstrap code-generator component-base component-helpers \
      controller-manager cri-api cri-client csi-translation-lib dynamic-resource-allocation \
      endpointslice externaljwt kms kube-aggregator kube-controller-manager kube-proxy \
      kube-scheduler kubectl kubelet metrics mount-utils pod-security-admission \
      sample-apiserver sample-cli-plugin sample-controller; do
      echo "replace k8s.io/$m => k8s.io/$m $staging"
    done
  } >"$dir/go.mod"
  local cmds=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet)
  local pkgs=("${cmds[@]/#/k8s.io/kubernetes/cmd/}")
  log "kubernetes: resolving modules"
  # Each package names the version: a bare `go get pkg` would upgrade to the newest release.
  (cd "$dir" && go get "${pkgs[@]/%/@$v}" >/dev/null)
  local x="" p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    x+=" -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
    x+=" -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  log "kubernetes: compiling ${cmds[*]} (one build, shared packages)"
  (cd "$dir" && go build -trimpath -tags selinux,notest,grpcnotrace -ldflags "-s -w$x" \
    -o "$bin/" "${pkgs[@]}")
}

build_etcd() {
  # etcd's server module has replace lines too; build it from a consumer module.
  local dir="$src/etcd-$ETCD_VERSION"
  mkdir -p "$dir"
  printf 'module stoker.local/etcd\ngo 1.24.0\nrequire go.etcd.io/etcd/server/v3 %s\n' \
    "$ETCD_VERSION" >"$dir/go.mod"
  (cd "$dir" && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null &&
    go build -trimpath -ldflags "-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3)
}

build_kwok() {
  GOBIN="$bin" go install -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION"
}

build_prometheus() {
  # No UI assets (no builtinassets tag): the tests use the HTTP API and promtool only.
  GOBIN="$bin" go install -trimpath -ldflags "-s -w" \
    "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_VERSION" \
    "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION"
}

build_helm() {
  GOBIN="$bin" go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

t0=$SECONDS
step kwok kwok kwokctl
step helm helm
step etcd etcd
step kubernetes kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet
step prometheus prometheus promtool
log "all binaries ready in $((SECONDS - t0))s: $bin"
echo "$bin"
