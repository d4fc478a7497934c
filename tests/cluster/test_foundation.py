"""Issue 2: a BackgroundJob runs end to end on the real control plane."""

from __future__ import annotations

import json
import time

import pytest
from jobs_api import Jobs, job_spec

from harness import Cluster, KubectlError, wait_for
from operator_process import Operator


def test_a_job_whose_pod_succeeds_reaches_succeeded(jobs: Jobs) -> None:
    spec = job_spec(
        task={"name": "send_welcome_email", "args": {"user_id": 9, "email": "a@example.com"}}
    )
    created = jobs.create("welcome", spec)
    status = jobs.wait_phase("welcome", "Succeeded")

    assert status["reason"] == "Completed"
    assert status["attempt"] == 1
    assert [(a["attempt"], a["result"], a["exitCode"]) for a in status["attempts"]] == [
        (1, "Succeeded", 0)
    ]
    assert {c["type"]: c["status"] for c in status["conditions"]} == {"Complete": "True"}
    assert status["observedGeneration"] == 1

    (pod,) = jobs.pods("welcome")
    assert pod.metadata.name == "welcome-1"
    assert pod.metadata.labels["stoker.dev/job-name"] == "welcome"
    assert pod.metadata.labels["stoker.dev/job-uid"] == created["metadata"]["uid"]
    assert pod.metadata.labels["stoker.dev/attempt"] == "1"
    assert pod.metadata.labels["stoker.dev/queue"] == "default"
    (owner,) = pod.metadata.owner_references
    assert (owner.kind, owner.name, owner.controller) == ("BackgroundJob", "welcome", True)
    assert pod.spec.restart_policy == "Never"
    env = {e.name: e.value for e in pod.spec.containers[0].env}
    assert env["STOKER_TASK"] == "send_welcome_email"
    assert json.loads(env["STOKER_ARGS"]) == {"user_id": 9, "email": "a@example.com"}
    assert env["STOKER_ATTEMPT"] == "1"


def test_an_always_failing_job_without_retries_fails_with_the_story(jobs: Jobs) -> None:
    spec = job_spec(sim={"fail-attempts": "always", "exit-code": "3"}, retry={"attempts": 0})
    jobs.create("doomed", spec)
    status = jobs.wait_phase("doomed", "Failed")

    assert status["reason"] == "AttemptsExhausted"
    assert "exit code 3" in status["message"]
    (attempt,) = status["attempts"]
    assert (attempt["result"], attempt["exitCode"], attempt["reason"]) == ("Failed", 3, "Error")
    assert attempt["message"] == "simulated failure of attempt 1"
    assert {c["type"]: c["status"] for c in status["conditions"]} == {"Failed": "True"}
    events = jobs.core.list_namespaced_event(
        jobs.namespace, field_selector="involvedObject.name=doomed"
    ).items
    assert "AttemptsExhausted" in {e.reason for e in events}


def test_deleting_a_running_job_removes_its_pod(jobs: Jobs) -> None:
    jobs.create("long", job_spec(sim={"duration": "10m"}))
    jobs.wait_phase("long", "Running")
    wait_for(lambda: jobs.pods("long"), 30, description="the pod of long")
    jobs.delete("long")
    wait_for(lambda: not jobs.pods("long"), 60, description="garbage collection of long-1")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"retry": {"attempts": -1}}, "spec.retry.attempts"),
        ({"afterCondition": "Whenever"}, 'supported values: "Succeeded", "Finished"'),
        ({"timeout": "5 minutes"}, "must be a duration such as 90s, 15m, 24h or 1h30m"),
        ({"retry": {"delays": ["1m", "soon"]}}, "spec.retry.delays[1]"),
        (
            {"startAt": "2026-11-22T10:00:00Z", "startAfter": "1h"},
            "set startAt or startAfter, not both",
        ),
        ({"template": {"spec": {"containers": []}}}, "spec.template.spec.containers"),
        ({"template": {"spec": {}}}, "spec.template.spec.containers: Required value"),
    ],
)
def test_malformed_jobs_are_rejected_at_admission(
    cluster: Cluster, crds: None, namespace: str, spec: dict[str, object], message: str
) -> None:
    body = {
        "apiVersion": "stoker.dev/v1alpha1",
        "kind": "BackgroundJob",
        "metadata": {"name": "bad", "namespace": namespace},
        "spec": {**job_spec(), **spec},
    }
    with pytest.raises(KubectlError) as refused:
        cluster.kubectl("apply", "-f", "-", input=json.dumps(body))
    assert message in refused.value.stderr


def test_a_name_too_long_for_a_pod_label_is_rejected(
    cluster: Cluster, crds: None, namespace: str
) -> None:
    body = {
        "apiVersion": "stoker.dev/v1alpha1",
        "kind": "BackgroundJob",
        "metadata": {"name": "x" * 64, "namespace": namespace},
        "spec": job_spec(),
    }
    with pytest.raises(KubectlError) as refused:
        cluster.kubectl("apply", "-f", "-", input=json.dumps(body))
    assert "name must be at most 63 characters" in refused.value.stderr


def test_task_args_over_32_kib_fail_the_job_at_once(jobs: Jobs) -> None:
    spec = job_spec(task={"name": "t", "args": {"blob": "x" * (33 * 1024)}})
    jobs.create("huge", spec)
    status = jobs.wait_phase("huge", "Failed")
    assert status["reason"] == "InvalidSpec"
    assert "32768" in status["message"]
    assert jobs.pods("huge") == []


def test_kubectl_get_shows_the_printer_columns(cluster: Cluster, jobs: Jobs) -> None:
    jobs.create("shown", job_spec())
    jobs.wait_phase("shown", "Succeeded")
    out = cluster.kubectl("get", "bgj", "-n", jobs.namespace)
    header = out.splitlines()[0].split()
    assert header == ["NAME", "PHASE", "QUEUE", "ATTEMPT", "REASON", "NEXT", "ATTEMPT", "AGE"]
    row = out.splitlines()[1].split()
    assert row[:5] == ["shown", "Succeeded", "default", "1", "Completed"]
    # Category and short name work too.
    assert "shown" in cluster.kubectl("get", "stoker", "-n", jobs.namespace)


def test_a_restarted_operator_adopts_the_pod_it_created_before_dying(
    operator: Operator, jobs: Jobs, cluster: Cluster
) -> None:
    """The operator died right after creating the pod of attempt 1, before any status write:
    we reproduce that state exactly with the operator stopped, then start it again."""
    operator.kill()
    try:
        created = jobs.create("adopted", job_spec(sim={"duration": "2s"}))
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "adopted-1",
                "labels": {
                    "stoker.dev/job-name": "adopted",
                    "stoker.dev/job-uid": created["metadata"]["uid"],
                    "stoker.dev/attempt": "1",
                    "stoker.dev/queue": "default",
                },
                "annotations": {"sim.stoker.dev/duration": "2s"},
                "ownerReferences": [
                    {
                        "apiVersion": "stoker.dev/v1alpha1",
                        "kind": "BackgroundJob",
                        "name": "adopted",
                        "uid": created["metadata"]["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "x"}]},
        }
        jobs.core.create_namespaced_pod(jobs.namespace, pod)
    finally:
        operator.start()
    status = jobs.wait_phase("adopted", "Succeeded")
    assert [p.metadata.name for p in jobs.pods("adopted")] == ["adopted-1"]
    assert [a["attempt"] for a in status["attempts"]] == [1]


def test_operator_killed_mid_run_finishes_every_job_once(operator: Operator, jobs: Jobs) -> None:
    names = [f"crash-{i}" for i in range(6)]
    for i, name in enumerate(names):
        sim = {"duration": "3s"} if i % 2 else {"duration": "3s", "fail-attempts": "1"}
        jobs.create(name, job_spec(sim=sim, retry={"attempts": 2, "delays": ["2s"]}))
    wait_for(lambda: len(jobs.pods()) >= 4, 30, description="pods running")
    operator.kill()
    time.sleep(3)
    operator.start()
    for i, name in enumerate(names):
        status = jobs.wait_phase(name, "Succeeded", timeout=90)
        expected = [1] if i % 2 else [1, 2]
        assert [a["attempt"] for a in status["attempts"]] == expected, name
        assert sorted(p.metadata.name for p in jobs.pods(name)) == [f"{name}-{n}" for n in expected]


def operator_writes(cluster: Cluster, namespace: str) -> list[tuple[str, str, str]]:
    """(verb, resource[/subresource], name) of every write by the operator (its own user agent,
    or kopf's) in `namespace`, from the API server's audit log."""
    assert cluster.audit_log is not None, "write counting needs the session's own cluster"
    writes = []
    for line in cluster.audit_log.read_text().splitlines():
        entry = json.loads(line)
        ref = entry.get("objectRef") or {}
        agent = entry.get("userAgent", "")
        if ref.get("namespace") != namespace or not agent.startswith(("stoker-operator", "kopf")):
            continue
        resource = ref.get("resource", "") + (
            f"/{ref['subresource']}" if ref.get("subresource") else ""
        )
        writes.append((entry["verb"], resource, ref.get("name", "")))
    return writes


def test_a_first_attempt_success_costs_at_most_four_writes(cluster: Cluster, jobs: Jobs) -> None:
    if cluster.audit_log is None:
        pytest.skip("STOKER_TEST_AUDIT_LOG is not set for this external cluster")
    jobs.create("budget", job_spec())
    jobs.wait_phase("budget", "Succeeded")
    time.sleep(2)  # anything the operator would still write after the final status
    writes = operator_writes(cluster, jobs.namespace)
    print(f"writes for one job that succeeds on attempt 1: {len(writes)}: {writes}")
    assert len(writes) <= 4, writes
    assert ("create", "pods", "budget-1") in writes
