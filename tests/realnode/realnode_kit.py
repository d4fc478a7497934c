"""What the real-node tests share: pods for the real node, the chart installed as users
install it (with the local cluster's values file), and reads of what the kubelet reports."""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness import Cluster, KubectlError, wait_for

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "stoker"
LOCAL_VALUES = REPO / "hack" / "local-values.yaml"
REAL_NODE_LABEL = "stoker.dev/real-node"
RUNNER_IMAGE = "localhost/stoker-runner:dev"
GROUP, VERSION = "stoker.dev", "v1alpha1"

# Puts a pod on the real node (API.md, "Local cluster").
ON_REAL_NODE: dict[str, Any] = {
    "nodeSelector": {REAL_NODE_LABEL: "true"},
    "tolerations": [
        {"key": REAL_NODE_LABEL, "operator": "Equal", "value": "true", "effect": "NoSchedule"}
    ],
}


def runner_task_spec(task: str, args: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """A BackgroundJob spec whose pod runs `task` in the runner image on the real node."""
    return {
        "task": {"name": task, "args": args},
        "template": {
            "spec": {
                **ON_REAL_NODE,
                "containers": [{"name": "main", "image": RUNNER_IMAGE, "imagePullPolicy": "Never"}],
            }
        },
        **spec,
    }


def get_json(cluster: Cluster, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-o", "json"))


def apply(cluster: Cluster, namespace: str, *objects: dict[str, Any]) -> None:
    cluster.kubectl("apply", "--namespace", namespace, "-f", "-", input=yaml.safe_dump_all(objects))


def background_job(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "BackgroundJob",
        "metadata": {"name": name},
        "spec": spec,
    }


def job_phase(cluster: Cluster, namespace: str, name: str) -> str | None:
    status = get_json(cluster, "backgroundjob", name, "-n", namespace).get("status") or {}
    phase: str | None = status.get("phase")
    return phase


def wait_job_phase(
    cluster: Cluster, namespace: str, name: str, phase: str, timeout: float = 120
) -> None:
    wait_for(
        lambda: job_phase(cluster, namespace, name) == phase,
        timeout=timeout,
        interval=0.5,
        description=f"BackgroundJob {namespace}/{name} {phase}",
    )


def job_pod_log(cluster: Cluster, namespace: str, job: str) -> str:
    (pod,) = get_json(cluster, "pods", "-n", namespace, "-l", f"stoker.dev/job-name={job}")["items"]
    assert pod["spec"]["nodeName"] == cluster.real_node
    return cluster.kubectl("logs", "-n", namespace, pod["metadata"]["name"])


@dataclass(frozen=True)
class Release:
    cluster: Cluster
    name: str
    namespace: str

    @property
    def selector(self) -> str:
        return f"app.kubernetes.io/instance={self.name}"

    @property
    def lease(self) -> str:
        return f"{self.name}-stoker"

    def pods(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = get_json(
            self.cluster, "pods", "-n", self.namespace, "-l", self.selector
        )["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    def ready_pods(self) -> list[dict[str, Any]]:
        return [p for p in self.pods() if _ready(p)]

    def restarts(self) -> dict[str, int]:
        return {
            p["metadata"]["name"]: sum(
                c.get("restartCount", 0) for c in p["status"].get("containerStatuses", [])
            )
            for p in self.pods()
        }

    def leader(self) -> str | None:
        try:
            lease = get_json(self.cluster, "lease", self.lease, "-n", self.namespace)
        except KubectlError:
            return None
        holder: str | None = lease["spec"].get("holderIdentity")
        return holder

    def wait_ready(self, replicas: int, timeout: float = 180) -> list[dict[str, Any]]:
        return wait_for(
            lambda: (ready := self.ready_pods()) and len(ready) == replicas and ready,
            timeout=timeout,
            interval=0.5,
            description=f"{replicas} ready operator pod(s) of release {self.name}",
        )


def _ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def local_values(cluster: Cluster) -> list[Path]:
    """The values files of the local cluster: the committed one, and where pods reach the
    apiserver (per cluster)."""
    assert cluster.pod_apiserver, "the cluster has no real node (hack/cluster.sh env)"
    host, _, port = cluster.pod_apiserver.rpartition(":")
    env = {
        "extraEnv": [
            {"name": "KUBERNETES_SERVICE_HOST", "value": host},
            {"name": "KUBERNETES_SERVICE_PORT", "value": port},
        ]
    }
    generated = Path(tempfile.mkdtemp(prefix="stoker-values-")) / "apiserver.yaml"
    generated.write_text(yaml.safe_dump(env))
    return [LOCAL_VALUES, generated]


@contextmanager
def installed_chart(cluster: Cluster, namespace: str, values: dict[str, Any]) -> Iterator[Release]:
    """`helm install` of charts/stoker as release `namespace` in `namespace` (cluster-scoped
    names never collide), waited for, uninstalled after."""
    helm = [str(cluster.bin_dir / "helm"), "--kubeconfig", str(cluster.kubeconfig)]
    files = [arg for path in local_values(cluster) for arg in ("--values", str(path))]
    install = [
        *helm, "install", namespace, str(CHART), "--namespace", namespace, *files,
        "--values", "-", "--wait", "--timeout", "180s",
    ]  # fmt: skip
    done = subprocess.run(
        install, input=json.dumps(values), capture_output=True, text=True, check=False
    )
    release = Release(cluster, namespace, namespace)
    try:
        if done.returncode != 0:
            raise AssertionError(f"helm install failed:\n{done.stderr}\n{_describe_pods(release)}")
        yield release
    finally:
        subprocess.run(
            [*helm, "uninstall", namespace, "--namespace", namespace, "--wait"],
            capture_output=True,
            check=False,
        )
        # The next test's operator must not meet this one's, still terminating.
        wait_for(
            lambda: not get_json(cluster, "pods", "-n", namespace, "-l", release.selector)["items"],
            timeout=120,
            description=f"the pods of release {namespace} gone",
        )


def _describe_pods(release: Release) -> str:
    try:
        return release.cluster.kubectl(
            "describe", "pods", "-n", release.namespace, "-l", release.selector
        )
    except KubectlError as e:
        return str(e)


def operator_logs(release: Release) -> str:
    """Every operator container's log (for failure messages)."""
    out = []
    for pod in release.pods():
        name = pod["metadata"]["name"]
        try:
            out.append(
                f"--- {name}\n" + release.cluster.kubectl("logs", "-n", release.namespace, name)
            )
        except KubectlError as e:
            out.append(f"--- {name}: {e}")
    return "\n".join(out)
