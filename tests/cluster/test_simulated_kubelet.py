"""The simulated kubelet (hack/kwok/stages) and the control plane around it, on a real cluster.

Pods here are plain Pods shaped like the operator's (label stoker.dev/attempt, the
sim.stoker.dev/* annotations of API.md "Simulated cluster").
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from harness import REPO, Cluster, KubectlError, wait_for

POD_STAGES = REPO / "hack" / "kwok" / "stages" / "pod.yaml"
TERMINAL = frozenset({"Succeeded", "Failed"})
SIM_DURATION = "sim.stoker.dev/duration"
SIM_FAIL_ATTEMPTS = "sim.stoker.dev/fail-attempts"
SIM_EXIT_CODE = "sim.stoker.dev/exit-code"
# Generous: nothing here waits for anything but the simulated kubelet.
TIMEOUT = 60.0


class Pods:
    """Plain pods in one namespace, read back as JSON (the field names of the kwok stages)."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.namespace = namespace

    def create(self, manifest: dict[str, Any]) -> str:
        body = client.V1Pod.from_dict(manifest)
        assert body is not None
        self.core.create_namespaced_pod(self.namespace, body)
        return str(manifest["metadata"]["name"])

    def read(self, name: str) -> dict[str, Any]:
        pod: dict[str, Any] = self.api.sanitize_for_serialization(  # type: ignore[no-untyped-call]
            self.core.read_namespaced_pod(name, self.namespace)
        )
        return pod

    def wait_phase(self, name: str, phases: frozenset[str]) -> dict[str, Any]:
        def in_phase() -> dict[str, Any] | None:
            pod = self.read(name)
            return pod if pod["status"].get("phase") in phases else None

        return wait_for(in_phase, TIMEOUT, description=f"pod {name} to reach {sorted(phases)}")

    def exists(self, name: str) -> bool:
        try:
            self.core.read_namespaced_pod(name, self.namespace)
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True


@pytest.fixture
def pods(cluster: Cluster, namespace: str) -> Iterator[Pods]:
    with cluster.api_client() as api:
        yield Pods(api, namespace)


def pod_manifest(
    name: str,
    attempt: int = 1,
    annotations: dict[str, str] | None = None,
    active_deadline_seconds: int | None = None,
    containers: tuple[str, ...] = ("main",),
    init_containers: tuple[str, ...] = (),
    sidecars: tuple[str, ...] = (),
) -> dict[str, Any]:
    # Never pulled: no kubelet runs.
    image = "registry.invalid/stoker/task:1"
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [{"name": c, "image": image} for c in containers],
    }
    if init_containers or sidecars:
        spec["initContainers"] = [{"name": c, "image": image} for c in init_containers] + [
            {"name": c, "image": image, "restartPolicy": "Always"} for c in sidecars
        ]
    if active_deadline_seconds is not None:
        spec["activeDeadlineSeconds"] = active_deadline_seconds
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"stoker.dev/attempt": str(attempt)},
            "annotations": annotations or {},
        },
        "spec": spec,
    }


def terminated(pod: dict[str, Any], kind: str = "containerStatuses") -> list[dict[str, Any]]:
    """The terminated state of every container of a kind (fails if one is not terminated)."""
    states = [status["state"] for status in pod["status"][kind]]
    assert all("terminated" in state for state in states), states
    return [state["terminated"] for state in states]


def seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def test_pod_without_annotations_succeeds_at_once(pods: Pods) -> None:
    manifest = pod_manifest(
        "plain", containers=("main", "helper"), init_containers=("setup",), sidecars=("proxy",)
    )
    name = pods.create(manifest)

    pod = pods.wait_phase(name, TERMINAL)

    assert pod["status"]["phase"] == "Succeeded"
    assert pod["spec"]["nodeName"] == "kwok-node-0"
    assert pod["status"]["podIP"]
    assert pod["status"]["hostIP"]
    assert [(s["exitCode"], s["reason"]) for s in terminated(pod)] == [(0, "Completed")] * 2
    init = terminated(pod, "initContainerStatuses")
    assert [(s["exitCode"], s["reason"]) for s in init] == [(0, "Completed")] * 2


def test_pod_runs_for_its_duration_then_succeeds(pods: Pods) -> None:
    name = pods.create(pod_manifest("three-seconds", annotations={SIM_DURATION: "3s"}))

    pod = pods.wait_phase(name, frozenset({"Running"}))

    assert pod["status"]["podIP"]
    (container,) = pod["status"]["containerStatuses"]
    assert container["ready"]
    assert container["state"]["running"]["startedAt"]
    conditions = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert conditions["Ready"] == "True"

    pod = pods.wait_phase(name, TERMINAL)

    assert pod["status"]["phase"] == "Succeeded"
    (state,) = terminated(pod)
    assert (state["exitCode"], state["reason"]) == (0, "Completed")
    assert seconds_between(pod["status"]["startTime"], state["finishedAt"]) >= 3


@pytest.mark.parametrize(
    ("annotations", "attempt", "phase", "exit_code"),
    [
        ({SIM_FAIL_ATTEMPTS: "2"}, 1, "Failed", 1),
        ({SIM_FAIL_ATTEMPTS: "2"}, 2, "Failed", 1),
        ({SIM_FAIL_ATTEMPTS: "2"}, 3, "Succeeded", 0),
        ({SIM_FAIL_ATTEMPTS: "0"}, 1, "Succeeded", 0),
        ({SIM_FAIL_ATTEMPTS: "always"}, 1, "Failed", 1),
        ({SIM_FAIL_ATTEMPTS: "always"}, 12, "Failed", 1),
        ({SIM_FAIL_ATTEMPTS: "1", SIM_EXIT_CODE: "75"}, 1, "Failed", 75),
        ({SIM_FAIL_ATTEMPTS: "1", SIM_EXIT_CODE: "75"}, 2, "Succeeded", 0),
    ],
)
def test_attempt_outcome_follows_the_annotations(
    pods: Pods, annotations: dict[str, str], attempt: int, phase: str, exit_code: int
) -> None:
    name = pods.create(pod_manifest("attempt", attempt, annotations))

    pod = pods.wait_phase(name, TERMINAL)

    assert pod["status"]["phase"] == phase
    (state,) = terminated(pod)
    assert state["exitCode"] == exit_code
    if phase == "Failed":
        assert state["reason"] == "Error"
        assert state["message"] == f"simulated failure of attempt {attempt}"
    else:
        assert state["reason"] == "Completed"


def test_active_deadline_ends_a_longer_run(pods: Pods) -> None:
    manifest = pod_manifest(
        "deadline",
        annotations={SIM_DURATION: "60s"},
        active_deadline_seconds=2,
        sidecars=("proxy",),
    )
    name = pods.create(manifest)

    pod = pods.wait_phase(name, TERMINAL)

    assert (pod["status"]["phase"], pod["status"]["reason"]) == ("Failed", "DeadlineExceeded")
    (state,) = terminated(pod)
    assert state["exitCode"] == 137
    (sidecar,) = terminated(pod, "initContainerStatuses")
    assert sidecar["exitCode"] == 137
    # Timestamps have 1 s precision: a 2 s deadline can read as 1 s between them.
    assert seconds_between(pod["status"]["startTime"], state["finishedAt"]) >= 2 - 1


def test_a_shorter_run_ends_before_the_deadline(pods: Pods) -> None:
    manifest = pod_manifest(
        "in-time",
        annotations={SIM_DURATION: "1s", SIM_FAIL_ATTEMPTS: "1"},
        active_deadline_seconds=120,
    )
    name = pods.create(manifest)

    pod = pods.wait_phase(name, TERMINAL)

    assert pod["status"]["phase"] == "Failed"
    assert "reason" not in pod["status"]
    (state,) = terminated(pod)
    assert (state["exitCode"], state["message"]) == (1, "simulated failure of attempt 1")


def test_a_pod_that_restarts_its_containers_keeps_running(pods: Pods) -> None:
    manifest = pod_manifest("server")
    manifest["spec"]["restartPolicy"] = "Always"
    name = pods.create(manifest)
    pods.wait_phase(name, frozenset({"Running"}))

    # Without the annotations a pod that can finish does so at once; this one must not.
    time.sleep(2)

    assert pods.read(name)["status"]["phase"] == "Running"


def test_the_deadline_ends_a_pod_that_would_run_forever(pods: Pods) -> None:
    manifest = pod_manifest("server-with-deadline", active_deadline_seconds=1)
    manifest["spec"]["restartPolicy"] = "Always"
    name = pods.create(manifest)

    pod = pods.wait_phase(name, TERMINAL)

    assert (pod["status"]["phase"], pod["status"]["reason"]) == ("Failed", "DeadlineExceeded")


def test_deleting_a_running_pod_completes(pods: Pods) -> None:
    name = pods.create(pod_manifest("long", annotations={SIM_DURATION: "1h"}))
    pods.wait_phase(name, frozenset({"Running"}))

    # A grace period far beyond the wait: the simulated kubelet ends the pod at once.
    pods.core.delete_namespaced_pod(name, pods.namespace, grace_period_seconds=3600)

    wait_for(lambda: not pods.exists(name), TIMEOUT, description="the deleted pod to go")


def test_garbage_collector_deletes_dependents(pods: Pods) -> None:
    owner = pods.core.create_namespaced_config_map(
        pods.namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    assert owner.metadata is not None
    manifest = pod_manifest("dependent", annotations={SIM_DURATION: "1h"})
    manifest["metadata"]["ownerReferences"] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    ]
    name = pods.create(manifest)

    pods.core.delete_namespaced_config_map("owner", pods.namespace)

    wait_for(lambda: not pods.exists(name), TIMEOUT, description="the owned pod to be collected")


def test_rbac_refuses_a_service_account_without_permissions(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    cluster.kubectl("create", "serviceaccount", "nobody", "--namespace", namespace)
    token = cluster.kubectl("create", "token", "nobody", "--namespace", namespace).strip()
    nobody = as_token(cluster, token, tmp_path / "nobody.kubeconfig")

    with pytest.raises(KubectlError, match="Forbidden"):
        nobody.kubectl("get", "pods", "--namespace", namespace)

    # The same token works once a Role grants the verb: the refusal above was authorization.
    cluster.kubectl(
        "create", "role", "pod-reader", "--verb=list", "--resource=pods", "--namespace", namespace
    )
    cluster.kubectl(
        "create", "rolebinding", "nobody-reads-pods", "--role=pod-reader",
        f"--serviceaccount={namespace}:nobody", "--namespace", namespace,
    )  # fmt: skip

    def can_list() -> bool:
        try:
            nobody.kubectl("get", "pods", "--namespace", namespace)
        except KubectlError:
            return False
        return True

    wait_for(can_list, TIMEOUT, description="the RoleBinding to take effect")


def as_token(cluster: Cluster, token: str, kubeconfig: Path) -> Cluster:
    """The cluster as seen by the bearer of `token` instead of the admin certificate."""
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    for user in config["users"]:
        user["user"] = {"token": token}
    kubeconfig.write_text(yaml.safe_dump(config))
    return dataclasses.replace(cluster, kubeconfig=kubeconfig, _watchdog=None)


def test_audit_log_records_writes_by_user_agent(cluster: Cluster, namespace: str) -> None:
    if cluster.audit_log is None:
        pytest.skip("the cluster's audit log is unknown (set STOKER_TEST_AUDIT_LOG)")
    audit_log = cluster.audit_log
    agent = f"stoker-audit-probe/{uuid.uuid4().hex[:8]}"
    with cluster.api_client(user_agent=agent) as api:
        core = client.CoreV1Api(api)
        probe = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="probe"))
        core.create_namespaced_config_map(namespace, probe)
        core.read_namespaced_config_map("probe", namespace)
        core.patch_namespaced_config_map("probe", namespace, {"data": {"k": "v"}})
        core.list_namespaced_config_map(namespace)
        core.delete_namespaced_config_map("probe", namespace)

    def probe_events() -> list[dict[str, Any]]:
        lines = audit_log.read_text().splitlines()
        events = [json.loads(line) for line in lines if agent in line]
        return events if len(events) >= 3 else []

    events = wait_for(probe_events, TIMEOUT, description="the probe's audit events")
    assert sorted(e["verb"] for e in events) == ["create", "delete", "patch"]
    assert {e["level"] for e in events} == {"Metadata"}
    assert {e["userAgent"] for e in events} == {agent}
    assert all("requestObject" not in e for e in events)


def test_the_finish_and_deadline_stages_split_running_pods_between_them() -> None:
    stages = {
        doc["metadata"]["name"]: doc["spec"] for doc in yaml.safe_load_all(POD_STAGES.read_text())
    }
    finish = {e["jq"]["key"]: e["jq"] for e in stages["pod-finish"]["selector"]["matchExpressions"]}
    deadline = {
        e["jq"]["key"]: e["jq"]
        for e in stages["pod-deadline-exceeded"]["selector"]["matchExpressions"]
    }
    (deadline_first,) = (
        key for key, jq in deadline.items() if jq["operator"] == "In" and "godur" in key
    )
    assert finish[deadline_first] == {
        "key": deadline_first,
        "operator": "NotIn",
        "values": ["true"],
    }
    assert deadline[deadline_first]["values"] == ["true"]


def test_every_copy_of_the_duration_parser_is_identical() -> None:
    copies = re.findall(r"^ *(def godur:.*)$", POD_STAGES.read_text(), flags=re.MULTILINE)
    assert len(copies) == 3
    assert len(set(copies)) == 1
