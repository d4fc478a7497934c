#!/usr/bin/env bash
# The images of the local cluster, built without a Docker engine and without a registry:
#
#   hack/images.sh build           base rootfs (debootstrap) -> localhost/stoker-base, the pause
#                                  image, operator/Dockerfile and job_images/runner/Dockerfile
#                                  (buildah, FROM the local base) -> OCI archives in the cache;
#                                  prints one line per image: NAME ARCHIVE
#   hack/images.sh load SOCKET     build, then import every image into the containerd at SOCKET
#   hack/images.sh sizes           uncompressed size of each image
#
# The published images keep a normal public base (the Dockerfiles' BASE_IMAGE default); here
# the base is a Debian rootfs made by debootstrap, since no registry can be reached. Every
# artefact is cached under $STOKER_CACHE/images keyed by a hash of its inputs, so a warm run
# only imports archives. Needs root (debootstrap, buildah, containerd).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
cache=${STOKER_CACHE:-$HOME/.cache/stoker}
images="$cache/images"
mkdir -p "$images"

OPERATOR_IMAGE=localhost/stoker-operator:dev
RUNNER_IMAGE=localhost/stoker-runner:dev
# containerd's sandbox_image (hack/node.sh); no registry serves k8s.gcr.io/pause here.
PAUSE_IMAGE=localhost/stoker-pause:1
SUITE=bookworm
# python-is-python3: the runner's entrypoint is `python`, as in the python:3.11 images;
# python3-venv: the operator Dockerfile makes a venv; ca-certificates: pip over TLS.
BASE_PACKAGES=python3,python3-venv,python-is-python3,ca-certificates

log() { printf '[images %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "$*"; exit 1; }

# need PACKAGE... -- install the Debian packages that are missing (fresh machines).
need() {
  local missing=() p
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
    missing+=("$p"); done
  ((${#missing[@]} == 0)) && return
  log "installing ${missing[*]} (apt-get)"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
}

# busy LABEL CMD... -- run a long, quiet command with a heartbeat; its output goes to a log.
busy() {
  local label=$1; shift
  local out="$images/$label.log" t0=$SECONDS
  (while sleep 20; do log "$label: still at work ($((SECONDS - t0))s; log: $out)"; done) &
  local ticker=$!
  if "$@" >"$out" 2>&1; then
    kill "$ticker"; log "$label: done in $((SECONDS - t0))s"
  else
    kill "$ticker"; tail -n 30 "$out" >&2; die "$label failed (log: $out)"
  fi
}

key() { sha256sum | cut -c1-16; }

# The Debian mirror apt already uses (the only one reachable here).
mirror() {
  local uri
  uri=$(grep -hoE '^(URIs:|deb) +https?://[^ ]+' /etc/apt/sources.list.d/*.sources \
    /etc/apt/sources.list 2>/dev/null | grep -m1 -E '/debian/?$' | awk '{print $2}') || true
  echo "${uri:-http://deb.debian.org/debian}"
}

# Bump when the recipe in base() changes: the cached rootfs is then made again.
BASE_RECIPE=2
base_key() { echo "$SUITE $BASE_PACKAGES $(uname -m) $BASE_RECIPE" | key; }

# base -> prints the local base image name; builds the rootfs tarball once per key.
base() {
  local k tarball name
  k=$(base_key)
  tarball="$images/base-$k.tar"
  name="localhost/stoker-base:$k"
  if [[ ! -s $tarball ]]; then
    local dir
    dir=$(mktemp -d "$images/rootfs.XXXXXX")
    log "base: debootstrap $SUITE with $BASE_PACKAGES (first time only, about 2 minutes)"
    busy debootstrap debootstrap --variant=minbase --include="$BASE_PACKAGES" \
      "$SUITE" "$dir" "$(mirror)"
    # Nothing of the build host's apt state or caches belongs in an image, nor manuals and
    # translations (a third of the rootfs; licences stay), as in Debian's slim images.
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* "$dir"/tmp/* \
      "$dir"/usr/share/man "$dir"/usr/share/info "$dir"/usr/share/locale "$dir"/var/log/*
    find "$dir/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
    find "$dir/usr/share/doc" -mindepth 1 -type d -empty -delete
    tar -C "$dir" --numeric-owner -cf "$tarball.part" .
    mv "$tarball.part" "$tarball"
    supersede "$tarball"
    rm -rf "$dir"
  fi
  if ! buildah images -q "$name" >/dev/null 2>&1; then
    local c
    c=$(buildah from scratch)
    buildah add --quiet "$c" "$tarball" / >/dev/null
    buildah config --cmd '["python3"]' --env LANG=C.UTF-8 "$c"
    buildah commit --quiet "$c" "$name" >/dev/null
    buildah rm "$c" >/dev/null
    # Bases of other recipes are no longer built from.
    buildah images --format '{{.Repository}}:{{.Tag}}' | grep '^localhost/stoker-base:' |
      grep -vx "$name" | xargs -r buildah rmi >/dev/null 2>&1 || true
  fi
  echo "$name"
}

# archive NAME KEY -> the OCI archive path of an image built from inputs hashed to KEY.
archive() { echo "$images/$(basename "${1%%:*}")-$2.tar"; }

save() {  # save IMAGE ARCHIVE
  rm -f "$2.part"
  buildah push --quiet "$1" "oci-archive:$2.part:$1" >/dev/null
  mv "$2.part" "$2"
  supersede "$2"
}

# supersede FILE: the cache keeps one artefact per name, the newest (FILE is NAME-KEY.tar).
supersede() {
  local stem
  stem=$(basename "${1%-*}")
  find "$images" -maxdepth 1 -name "$stem-*.tar" ! -name "$(basename "$1")" -delete
}

pause_image() {
  local k out
  k=$(echo "pause $PAUSE_IMAGE $(sha256sum </bin/busybox)" | key)
  out=$(archive "$PAUSE_IMAGE" "$k")
  if [[ ! -s $out ]]; then
    log "pause: one static busybox, sleeping as the pod's sandbox"
    local c
    c=$(buildah from scratch)
    buildah copy --quiet "$c" /bin/busybox /bin/busybox >/dev/null
    buildah config --entrypoint '["/bin/busybox", "sleep", "2147483647"]' "$c"
    buildah commit --quiet "$c" "$PAUSE_IMAGE" >/dev/null
    buildah rm "$c" >/dev/null
    save "$PAUSE_IMAGE" "$out"
  fi
  echo "$PAUSE_IMAGE $out"
}

# dockerfile_image IMAGE DOCKERFILE CONTEXT FILE... -- FILEs (relative to the repo) are the
# inputs besides the base: the image is rebuilt when any of them changes.
dockerfile_image() {
  local image=$1 dockerfile=$2 context=$3; shift 3
  local base_name k out
  base_name=$(base)
  k=$( { echo "$base_name"; cd "$repo" && find "$@" -type f ! -name '*.pyc' \
    ! -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum; } | key)
  out=$(archive "$image" "$k")
  if [[ ! -s $out ]]; then
    log "$image: building $dockerfile FROM $base_name"
    # This machine reaches PyPI through a TLS-inspecting proxy: pip in the build needs the
    # host's CA bundle, mounted for RUN steps only (nothing of it lands in the image).
    local ca=/etc/ssl/certs/ca-certificates.crt
    busy "build-$(basename "${image%%:*}")" buildah bud --isolation chroot --layers \
      --build-arg "BASE_IMAGE=$base_name" \
      --build-arg PIP_CERT=/run/stoker-host-ca.crt --volume "$ca:/run/stoker-host-ca.crt:ro" \
      -f "$repo/$dockerfile" -t "$image" "$repo/$context"
    save "$image" "$out"
    buildah rmi --prune >/dev/null 2>&1 || true  # layers of the image this one replaced
  fi
  echo "$image $out"
}

build() {
  [[ $(id -u) == 0 ]] || die "building the images needs root (debootstrap, buildah)"
  need debootstrap buildah busybox-static
  pause_image
  dockerfile_image "$OPERATOR_IMAGE" operator/Dockerfile . \
    operator/Dockerfile operator/stoker pyproject.toml requirements-runtime.lock README.md \
    .gitignore
  dockerfile_image "$RUNNER_IMAGE" job_images/runner/Dockerfile job_images/runner \
    job_images/runner/Dockerfile job_images/runner/stoker_runner job_images/runner/examples
}

# load SOCKET: import what `build` made into the containerd at SOCKET (the CRI namespace),
# skipping images it already holds with the same content.
load() {
  local socket=$1 name file have want built
  built=$(build)  # not `< <(build)`: a failed build must fail the load
  while read -r name file; do
    have=$(ctr -a "$socket" -n k8s.io images ls "name==$name" 2>/dev/null |
      awk 'NR == 2 {print $3}')
    want=$(tar -xOf "$file" index.json | grep -o 'sha256:[0-9a-f]*' | head -n 1)
    if [[ -n $have && $have == "$want" ]]; then
      log "$name: already in containerd"
      continue
    fi
    log "$name: importing into containerd"
    ctr -a "$socket" -n k8s.io images import "$file" >/dev/null
  done <<<"$built"
}

sizes() {
  local name
  for name in "$OPERATOR_IMAGE" "$RUNNER_IMAGE" "$PAUSE_IMAGE"; do
    printf '%s %s\n' "$name" "$(buildah images --format '{{.Size}}' "$name" | head -n 1)"
  done
}

case ${1:-} in
  build) build ;;
  load) (($# == 2)) || die "usage: $0 load SOCKET"; load "$2" ;;
  sizes) sizes ;;
  *) echo "usage: $0 build | load SOCKET | sizes" >&2; exit 2 ;;
esac
