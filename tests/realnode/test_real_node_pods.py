"""The real node: a kubelet + containerd node beside kwok's simulated one, where pods really
run the project's images, and whose logs the apiserver serves."""

from __future__ import annotations

import json
from typing import Any

from realnode_kit import ON_REAL_NODE, REAL_NODE_LABEL, RUNNER_IMAGE, apply, get_json

from harness import Cluster, wait_for


def pod(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def runner_container(**extra: Any) -> dict[str, Any]:
    return {"name": "main", "image": RUNNER_IMAGE, "imagePullPolicy": "Never", **extra}


def pod_status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    status: dict[str, Any] = get_json(cluster, "pod", name, "-n", namespace)["status"]
    return status


def wait_phase(cluster: Cluster, namespace: str, name: str, phase: str) -> dict[str, Any]:
    return wait_for(
        lambda: (s := pod_status(cluster, namespace, name)).get("phase") == phase and s,
        timeout=120,
        interval=0.5,
        description=f"pod {namespace}/{name} {phase}",
    )


def test_node_is_a_real_kubelet_labelled_and_tainted(cluster: Cluster, real_node: str) -> None:
    node = get_json(cluster, "node", real_node)
    assert node["metadata"]["labels"][REAL_NODE_LABEL] == "true"
    assert {"key": REAL_NODE_LABEL, "value": "true", "effect": "NoSchedule"} in node["spec"][
        "taints"
    ]
    info = node["status"]["nodeInfo"]
    assert info["containerRuntimeVersion"].startswith("containerd://")
    assert not info["kubeletVersion"].startswith("kwok")
    # kwok manages only its own node: it never took this one over.
    assert "kwok.x-k8s.io/node" not in node["metadata"].get("annotations", {})
    kwok = get_json(cluster, "node", "kwok-node-0")
    assert kwok["status"]["nodeInfo"]["kubeletVersion"].startswith("kwok")


def test_task_runs_in_the_runner_image_and_its_log_is_served(
    cluster: Cluster, namespace: str, real_node: str
) -> None:
    env = [
        {"name": "STOKER_TASK", "value": "send_welcome_email"},
        {"name": "STOKER_ARGS", "value": json.dumps({"user_id": 7, "email": "k@example.com"})},
    ]
    spec = {**ON_REAL_NODE, "restartPolicy": "Never", "containers": [runner_container(env=env)]}
    apply(cluster, namespace, pod("welcome", spec))
    status = wait_phase(cluster, namespace, "welcome", "Succeeded")
    assert get_json(cluster, "pod", "welcome", "-n", namespace)["spec"]["nodeName"] == real_node
    (container,) = status["containerStatuses"]
    assert container["state"]["terminated"]["exitCode"] == 0
    # Served by the kubelet through the apiserver, as `kubectl logs` users expect.
    log = cluster.kubectl("logs", "-n", namespace, "welcome")
    assert "sent welcome email to user 7 at k@example.com" in log


def test_exit_code_of_a_failing_task_reaches_the_pod_status(
    cluster: Cluster, namespace: str, real_node: str
) -> None:
    env = [
        {"name": "STOKER_TASK", "value": "send_welcome_email"},
        {"name": "STOKER_ARGS", "value": json.dumps({"user_id": 8, "email": "nowhere"})},
    ]
    spec = {**ON_REAL_NODE, "restartPolicy": "Never", "containers": [runner_container(env=env)]}
    apply(cluster, namespace, pod("bad-address", spec))
    status = wait_phase(cluster, namespace, "bad-address", "Failed")
    (container,) = status["containerStatuses"]
    assert container["state"]["terminated"]["exitCode"] == 2  # Fail(..., exit_code=2)


def test_pods_without_the_toleration_stay_off_the_real_node(
    cluster: Cluster, namespace: str, real_node: str
) -> None:
    plain = {"containers": [{"name": "main", "image": RUNNER_IMAGE}]}
    untolerated = {**plain, "nodeSelector": {REAL_NODE_LABEL: "true"}}
    apply(cluster, namespace, pod("anywhere", plain), pod("untolerated", untolerated))
    # The simulated node takes the plain pod, as before the real node existed...
    node = wait_for(
        lambda: get_json(cluster, "pod", "anywhere", "-n", namespace)["spec"].get("nodeName"),
        timeout=60,
        description="pod anywhere scheduled",
    )
    assert node == "kwok-node-0"

    # ... and the scheduler refuses the real node to a pod that does not tolerate its taint.
    def unschedulable() -> bool:
        conditions = pod_status(cluster, namespace, "untolerated").get("conditions", [])
        return any(
            c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable" for c in conditions
        )

    wait_for(unschedulable, timeout=60, description="pod untolerated Unschedulable")
    assert not get_json(cluster, "pod", "untolerated", "-n", namespace)["spec"].get("nodeName")
