#!/usr/bin/env bash
# Stoker's main job, as users run it: the local cluster (control plane + kwok's simulated node
# + one real kubelet/containerd node), the images built and loaded there, the chart installed
# as release `stoker` in `stoker-system` with two replicas on the real node, the examples in
# namespace stoker-demo, one leader failover, and a task's output from a real pod's log.
#
#   hack/run.sh              in-cluster (falls back to --process where the machine cannot
#                            host the real node, saying why in one line)
#   hack/run.sh --process    the fast development loop: the operator as a local process,
#                            against the current kube context when one answers, else the
#                            local cluster; runs in the foreground until Ctrl-C
#
# STOKER_LOCAL=1 makes --process use the local cluster even when a kube context answers.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
ns=${STOKER_DEMO_NAMESPACE:-stoker-demo}
release=stoker
release_ns=stoker-system
bin=$(hack/build-control-plane.sh | tail -n 1)
export PATH="$bin:$PATH"
mode=cluster
case ${1:-} in
  --process) mode=process ;;
  "") ;;
  *) echo "usage: $0 [--process]" >&2; exit 2 ;;
esac

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

install_crds() {
  say "installing the CRDs"
  kubectl apply --server-side --force-conflicts -f crds/
  kubectl wait --for=condition=Established --timeout=60s \
    crd/backgroundjobs.stoker.dev crd/recurringjobs.stoker.dev crd/jobqueues.stoker.dev
  kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f -
}

apply_examples() {
  say "applying the examples (simulated pods on kwok's node)"
  kubectl apply -n "$ns" -f examples/queues.yaml -f examples/jobs.yaml -f examples/recurring.yaml
}

# ------------------------------------------------------------------------------ --process

run_process() {
  local local_cluster=
  if [[ -z "${STOKER_LOCAL:-}" ]] && kubectl config current-context >/dev/null 2>&1 &&
    kubectl --request-timeout=5s get --raw /readyz >/dev/null 2>&1; then
    say "using the current kube context: $(kubectl config current-context)"
  else
    say "starting the local control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok)"
    eval "$(STOKER_REAL_NODE=${STOKER_REAL_NODE:-0} hack/cluster.sh up)"
    local_cluster=1
  fi
  if helm status "$release" -n "$release_ns" >/dev/null 2>&1; then
    say "uninstalling the in-cluster release $release: one operator at a time"
    helm uninstall "$release" -n "$release_ns" --wait
  fi
  install_crds

  say "starting the operator (log: $repo/.stoker-operator.log)"
  STOKER_LEASE_NAMESPACE=$ns .venv/bin/stoker operator >.stoker-operator.log 2>&1 &
  operator=$!
  trap 'kill "$operator" 2>/dev/null; wait "$operator" 2>/dev/null || true' EXIT

  apply_examples
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
  .venv/bin/stoker ls -n $ns                 # the same through the stoker CLI
  .venv/bin/stoker requeue --phase Failed -n $ns   # Hangfire's "requeue all failed"
  kubectl describe bgj flaky-sync -n $ns   # status, attempts and Events
  kubectl annotate bgj flaky-sync -n $ns stoker.dev/requeue=\$(date +%s)   # Hangfire "Requeue"
  curl -s localhost:8080/metrics | grep ^stoker_
Ctrl-C stops the operator${local_cluster:+; 'make down' deletes the local cluster}.
EOF
  wait "$operator"
}

# ------------------------------------------------------------------------------ in-cluster

leader() {
  kubectl get lease "$release" -n "$release_ns" -o 'jsonpath={.spec.holderIdentity}' 2>/dev/null
}

pods() {
  kubectl get pods -n "$release_ns" -l "app.kubernetes.io/instance=$release" \
    -o 'custom-columns=NAME:.metadata.name,READY:.status.containerStatuses[0].ready,RESTARTS:.status.containerStatuses[0].restartCount,NODE:.spec.nodeName'
}

# The values of the local cluster: hack/local-values.yaml, plus where pods reach the apiserver.
apiserver_values() {
  cat <<EOF
extraEnv:
  - {name: KUBERNETES_SERVICE_HOST, value: "$STOKER_POD_APISERVER_HOST"}
  - {name: KUBERNETES_SERVICE_PORT, value: "$STOKER_POD_APISERVER_PORT"}
EOF
}

run_in_cluster() {
  local why
  if ! why=$(hack/node.sh check); then
    say "this machine cannot host the real node ($why): running the operator as a local process on kwok's simulated node instead"
    STOKER_LOCAL=1 run_process
    return
  fi
  say "starting the local cluster: control plane, kwok's simulated node, the real node (containerd + kubelet) and the images"
  eval "$(STOKER_REAL_NODE=1 hack/cluster.sh up)"
  [[ -n ${STOKER_REAL_NODE:-} ]] || { echo "the local cluster has no real node" >&2; exit 1; }
  install_crds

  say "installing the chart: release $release in $release_ns, 2 replicas on node $STOKER_REAL_NODE"
  local digest
  # A rebuilt image has a new digest: the pod template changes, so the pods roll.
  digest=$(ctr -a "$STOKER_CONTAINERD_SOCKET" -n k8s.io images ls \
    name==localhost/stoker-operator:dev | awk 'NR == 2 {print $3}')
  helm upgrade --install "$release" charts/stoker --namespace "$release_ns" --create-namespace \
    --values hack/local-values.yaml --values <(apiserver_values) \
    --set replicas=2 --set-string "podAnnotations.stoker\.dev/image=$digest" \
    --wait --timeout 180s
  pods

  apply_examples
  say "a task on the real node: queue 'real' runs the runner image there"
  kubectl apply -n "$ns" -f hack/real-node-example.yaml
  # A new job each run, so that the log below is this run's.
  local job pod
  job=welcome-$(date +%s)
  kubectl create -n "$ns" -f - <<EOF
apiVersion: stoker.dev/v1alpha1
kind: BackgroundJob
metadata: {name: $job}
spec:
  queue: real
  task: {name: send_welcome_email, args: {user_id: 9, email: a@example.com}}
EOF
  kubectl wait -n "$ns" --for=jsonpath='{.status.phase}'=Succeeded --timeout=120s "bgj/$job"
  pod=$(kubectl get pods -n "$ns" -l "stoker.dev/job-name=$job" \
    -o 'jsonpath={.items[0].metadata.name}')
  say "kubectl logs -n $ns $pod   (on node $(kubectl get pod -n "$ns" "$pod" -o 'jsonpath={.spec.nodeName}'))"
  kubectl logs -n "$ns" "$pod"

  local old new t0
  old=$(leader)
  say "failover: deleting the leader's pod $old"
  t0=$SECONDS
  kubectl delete pod -n "$release_ns" "$old" --wait=false
  until new=$(leader) && [[ -n $new && $new != "$old" ]]; do
    ((SECONDS - t0 < 120)) || { echo "no new leader after 120 s" >&2; exit 1; }
    sleep 0.5
  done
  echo "$new leads, $((SECONDS - t0)) s after the delete"
  kubectl rollout status deployment/"$release" -n "$release_ns" --timeout=180s
  pods

  say "kubectl get stoker -n $ns"
  kubectl get stoker -n "$ns"
  cat <<EOF

Stoker runs in the cluster (release $release in $release_ns). In another shell:
  eval "\$(hack/cluster.sh env)"
  kubectl get bgj,rj,jq -n $ns             # jobs, recurring jobs, queues
  .venv/bin/stoker ls -n $ns                  # the same through the stoker CLI
  .venv/bin/stoker requeue --phase Failed -n $ns    # Hangfire's "requeue all failed"
  kubectl get pods -n $release_ns -o wide  # the operator: leader + standby on node $STOKER_REAL_NODE
  kubectl logs -n $ns -l stoker.dev/job-name=$job   # task output
  hack/run.sh --process                     # the fast loop: operator as a local process
'make down' deletes the local cluster (and the real node's containers).
EOF
}

if [[ $mode == process ]]; then run_process; else run_in_cluster; fi
