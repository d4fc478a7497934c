"""One tenant's bad object never stops the operator for anyone (issue: fault isolation).

Each case puts a poison object in one namespace and checks both its outcome (refused at
admission, or a terminal or waiting status with a reason) and a canary job in another namespace
that succeeds before and after it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import kubernetes
import pytest
from jobs_api import Jobs, job_spec

from harness import Cluster, KubectlError, create_namespace, wait_for
from operator_process import Operator

CANARY_TIMEOUT = 30


@pytest.fixture
def canary(
    cluster: Cluster,
    operator: Operator,
    api: kubernetes.client.CustomObjectsApi,
    core: kubernetes.client.CoreV1Api,
) -> Callable[[str], None]:
    """Run a quick job in a namespace of its own and wait for it to succeed."""
    jobs = Jobs(api, core, create_namespace(cluster, prefix="canary-"))

    def run(name: str) -> None:
        jobs.create(name, job_spec())
        jobs.wait_phase(name, "Succeeded", timeout=CANARY_TIMEOUT)

    return run


@pytest.mark.parametrize("depth", [1200, 9000])
def test_deeply_nested_args_fail_their_own_job_only(
    cluster: Cluster, jobs: Jobs, canary: Callable[[str], None], depth: int
) -> None:
    canary("before")
    # Written out by hand and sent through kubectl: encoding it (or any Python client) would
    # hit this process's own recursion limit.
    spec = json.dumps(job_spec(task={"name": "t", "args": "ARGS"}))
    spec = spec.replace('"ARGS"', '{"a":' * depth + '"leaf"' + "}" * depth)
    body = {"apiVersion": "stoker.dev/v1alpha1", "kind": "BackgroundJob",
            "metadata": {"name": "deep", "namespace": jobs.namespace}, "spec": "SPEC"}  # fmt: skip
    cluster.kubectl("create", "-f", "-", input=json.dumps(body).replace('"SPEC"', spec))

    def failed() -> dict[str, Any] | None:
        out = cluster.kubectl(
            "get", "bgj", "deep", "-n", jobs.namespace, "-o", "jsonpath={.status}"
        )
        status: dict[str, Any] = json.loads(out or "{}")
        return status if status.get("phase") == "Failed" else None

    status = wait_for(failed, 60, description="the deep job Failed")
    assert status["reason"] == "InvalidSpec"
    assert status["message"] == f"task.args nests {depth} levels deep; the limit is 32"
    assert jobs.pods("deep") == []
    canary("after")


def _apply(cluster: Cluster, namespace: str, name: str, spec: dict[str, Any]) -> None:
    body = {
        "apiVersion": "stoker.dev/v1alpha1",
        "kind": "BackgroundJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(body))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("ttlAfterFinished", "100000000h", "spec.ttlAfterFinished"),
        ("startAfter", "100000000h", "spec.startAfter"),
        ("startAfter", "87649h", "must be at most 10 years (87648h)"),
        ("timeout", "90000h", "must be at most 10 years (87648h)"),
    ],
)
def test_durations_over_ten_years_are_refused_at_admission(
    cluster: Cluster, jobs: Jobs, field: str, value: str, message: str
) -> None:
    with pytest.raises(KubectlError) as refused:
        _apply(cluster, jobs.namespace, "forever", job_spec(**{field: value}))
    assert message in refused.value.stderr
    _apply(cluster, jobs.namespace, "ten-years", job_spec(**{field: "87648h"}))


def test_a_job_waiting_for_itself_is_refused_at_admission(cluster: Cluster, jobs: Jobs) -> None:
    with pytest.raises(KubectlError) as refused:
        _apply(cluster, jobs.namespace, "selfish", job_spec(after=[{"name": "selfish"}]))
    assert "a job cannot wait for itself" in refused.value.stderr


def test_jobs_waiting_for_each_other_fail_with_dependency_cycle(
    jobs: Jobs, canary: Callable[[str], None]
) -> None:
    canary("before")
    jobs.create("ping", job_spec(after=[{"name": "pong"}]))
    jobs.create("pong", job_spec(after=[{"name": "ping"}]))
    for name, chain in (("ping", "ping -> pong -> ping"), ("pong", "pong -> ping -> pong")):
        status = jobs.wait_phase(name, "Failed")
        assert status["reason"] == "DependencyCycle"
        assert status["message"] == f"jobs wait for each other: {chain}"
    canary("after")


def test_an_unschedulable_pod_gives_its_queue_slot_back_at_the_timeout(
    jobs: Jobs, canary: Callable[[str], None]
) -> None:
    jobs.create("queue-of-one", {"concurrency": 1}, kind="JobQueue", plural="jobqueues")
    stuck = job_spec(queue="queue-of-one", timeout="8s", retry={"attempts": 0})
    stuck["template"]["spec"]["nodeSelector"] = {"stoker.dev/no-such-node": "true"}
    jobs.create("stuck", stuck)
    jobs.wait_phase("stuck", "Running")
    jobs.create("next", job_spec(queue="queue-of-one"))
    assert jobs.wait_phase("next", "Enqueued")["reason"] == "QueueFull"
    status = jobs.wait_phase("stuck", "Failed", timeout=60)
    [attempt] = status["attempts"]
    assert attempt["reason"] == "Unschedulable"
    assert "didn't match" in attempt["message"] or "node" in attempt["message"]
    jobs.wait_phase("next", "Succeeded", timeout=60)
    wait_for(lambda: not jobs.pods("stuck"), 60, description="the unschedulable pod deleted")
    canary("after")


def test_a_pod_create_forbidden_by_quota_waits_with_its_reason_and_others_run(
    cluster: Cluster, jobs: Jobs, canary: Callable[[str], None]
) -> None:
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "no-pods", "namespace": jobs.namespace},
        "spec": {"hard": {"pods": "0"}},
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(quota))
    # The quota controller must have counted usage before it refuses anything.
    wait_for(
        lambda: cluster.kubectl(
            "get", "resourcequota", "no-pods", "-n", jobs.namespace, "-o", "jsonpath={.status.hard}"
        ),
        30,
    )
    jobs.create("over-quota", job_spec())

    def refused() -> dict[str, Any] | None:
        status = jobs.status("over-quota")
        return status if status.get("reason") == "PodCreateFailed" else None

    status = wait_for(refused, 60, description="PodCreateFailed")
    assert "forbidden" in status["message"] and "retrying in" in status["message"]
    canary("during")
    cluster.kubectl("delete", "resourcequota", "no-pods", "-n", jobs.namespace)
    # Retried with backoff (at most 5 minutes apart); it started soon after the quota went.
    jobs.wait_phase("over-quota", "Succeeded", timeout=120)


def test_a_name_whose_pods_were_orphaned_runs_under_the_fallback_pod_name(
    cluster: Cluster, jobs: Jobs, canary: Callable[[str], None]
) -> None:
    jobs.create("again", job_spec())
    jobs.wait_phase("again", "Succeeded")
    old_uid = jobs.get("again")["metadata"]["uid"]
    cluster.kubectl("delete", "bgj", "again", "-n", jobs.namespace, "--cascade=orphan")
    wait_for(lambda: not jobs.list(), 30, description="the old job gone")
    jobs.create("again", job_spec())
    status = jobs.wait_phase("again", "Succeeded")
    new_uid = jobs.get("again")["metadata"]["uid"]
    assert status["attempts"][0]["pod"] == f"again-1-{new_uid[:8]}"
    names = {p.metadata.name: p.metadata.labels["stoker.dev/job-uid"] for p in jobs.pods("again")}
    assert names == {"again-1": old_uid, f"again-1-{new_uid[:8]}": new_uid}
    canary("after")
