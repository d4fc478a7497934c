#!/usr/bin/env bash
# Stoker's main job: a cluster (the current kube context when one answers, else the local
# control plane), the CRDs, the operator, and the examples in namespace stoker-demo.
# The operator runs in the foreground until Ctrl-C. STOKER_LOCAL=1 forces the local cluster.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
ns=${STOKER_DEMO_NAMESPACE:-stoker-demo}
bin=$(hack/build-control-plane.sh | tail -n 1)
local_cluster=
export PATH="$bin:$PATH"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [[ -z "${STOKER_LOCAL:-}" ]] && kubectl config current-context >/dev/null 2>&1 &&
  kubectl --request-timeout=5s get --raw /readyz >/dev/null 2>&1; then
  say "using the current kube context: $(kubectl config current-context)"
else
  say "starting the local control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok)"
  eval "$(hack/cluster.sh up)"
  local_cluster=1
fi

say "installing the CRDs"
kubectl apply --server-side --force-conflicts -f crds/
kubectl wait --for=condition=Established --timeout=60s \
  crd/backgroundjobs.stoker.dev crd/recurringjobs.stoker.dev crd/jobqueues.stoker.dev
kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f -

say "starting the operator (log: $repo/.stoker-operator.log)"
STOKER_LEASE_NAMESPACE=$ns .venv/bin/stoker operator >.stoker-operator.log 2>&1 &
operator=$!
trap 'kill "$operator" 2>/dev/null; wait "$operator" 2>/dev/null || true' EXIT

say "applying the examples"
kubectl apply -n "$ns" -f examples/queues.yaml -f examples/jobs.yaml -f examples/recurring.yaml

for _ in $(seq 1 12); do
  sleep 5
  kill -0 "$operator" 2>/dev/null || { tail -n 30 .stoker-operator.log; exit 1; }
  say "kubectl get stoker -n $ns"
  kubectl get stoker -n "$ns"
done

cat <<EOF

Stoker is running. In another shell:
  export KUBECONFIG=${KUBECONFIG:-~/.kube/config} PATH="$bin:\$PATH"
  kubectl get bgj,rj,jq -n $ns            # jobs, recurring jobs, queues
  kubectl describe bgj flaky-sync -n $ns   # status, attempts and Events
  kubectl annotate bgj flaky-sync -n $ns stoker.dev/requeue=\$(date +%s)   # Hangfire "Requeue"
  curl -s localhost:8080/metrics | grep ^stoker_
Ctrl-C stops the operator${local_cluster:+; 'make down' deletes the local cluster}.
EOF
wait "$operator"
