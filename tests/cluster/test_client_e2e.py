"""The Python client (stoker.client) against the real control plane and operator: every call
creates what it should, and the jobs it creates reach the expected phase."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import kubernetes
import pytest
from jobs_api import Jobs
from kubernetes.client.exceptions import ApiException

from harness import Cluster, wait_for
from operator_process import Operator
from stoker.client import Call, Client, JobHandle
from stoker.client_async import AsyncClient

IMAGE = "ghcr.io/acme/tasks:1.4"


def sim(**values: str) -> dict[str, str]:
    """Simulated-kubelet annotations for pod_annotations=."""
    return {f"sim.stoker.dev/{k.replace('_', '-')}": v for k, v in values.items()}


def ts(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def history(status: dict[str, Any]) -> list[tuple[int, str]]:
    return [(a["attempt"], a["result"]) for a in status.get("attempts") or []]


def pod_created(jobs: Jobs, job: str, attempt: int = 1) -> datetime:
    (pod,) = [p for p in jobs.pods(job) if p.metadata.labels["stoker.dev/attempt"] == str(attempt)]
    return ts(pod.metadata.creation_timestamp)


@pytest.fixture
def client(operator: Operator, cluster: Cluster, namespace: str) -> Client:
    api = kubernetes.client.CustomObjectsApi(cluster.api_client(user_agent="stoker-client-test"))
    return Client(namespace=namespace, api=api, image=IMAGE)


def test_enqueue_creates_a_job_that_runs_the_task(client: Client, jobs: Jobs) -> None:
    job = client.enqueue("send_welcome_email", {"user_id": 9}, retry=2, priority=5)
    assert job.namespace == jobs.namespace
    assert job.name.startswith("send-welcome-email-")
    spec = jobs.get(job.name)["spec"]
    assert spec["task"] == {"name": "send_welcome_email", "args": {"user_id": 9}}
    assert spec["template"]["spec"]["containers"][0]["image"] == IMAGE
    assert (spec["priority"], spec["retry"]["attempts"]) == (5, 2)

    status = jobs.wait_phase(job.name, "Succeeded")
    assert history(status) == [(1, "Succeeded")]
    (pod,) = jobs.pods(job.name)
    env = {e.name: e.value for e in pod.spec.containers[0].env}
    assert env["STOKER_TASK"] == "send_welcome_email"
    assert client.get(job)["status"]["phase"] == "Succeeded"

    # A chosen name is idempotent: enqueuing it again finds the job already there.
    named = client.enqueue("audit", name="audit-once")
    assert client.enqueue("audit", name="audit-once") == named
    jobs.wait_phase("audit-once", "Succeeded")
    assert len(jobs.pods("audit-once")) == 1


def test_schedule_with_a_delay_and_at_a_time(client: Client, jobs: Jobs) -> None:
    later = client.schedule("send_reminder", {"user_id": 9}, delay=timedelta(seconds=3))
    body = jobs.get(later.name)
    assert body["spec"]["startAfter"] == "3s"
    due = ts(body["metadata"]["creationTimestamp"]) + timedelta(seconds=3)

    at = (datetime.now(UTC) + timedelta(seconds=3)).replace(microsecond=0)
    timed = client.schedule("send_reminder", {"user_id": 10}, at=at)
    assert ts(jobs.get(timed.name)["spec"]["startAt"]) == at

    for job, when in ((later, due), (timed, at)):
        status = jobs.wait_phase(job.name, ("Scheduled", "Running", "Succeeded"), timeout=15)
        assert (status["phase"], status["reason"]) == ("Scheduled", "Delayed"), status
        assert ts(status["nextAttemptAt"]) == when
    for job, when in ((later, due), (timed, at)):
        jobs.wait_phase(job.name, "Succeeded", timeout=30)
        assert pod_created(jobs, job.name) >= when


def test_continue_with_waits_for_the_parent(client: Client, jobs: Jobs) -> None:
    parent = client.enqueue("create_invoice", pod_annotations=sim(duration="2s"))
    child = client.continue_with(parent, "send_invoice", {"id": 1})
    assert jobs.get(child.name)["spec"]["after"] == [{"name": parent.name}]
    status = jobs.wait_phase(child.name, ("Awaiting", "Running", "Succeeded"), timeout=15)
    assert status["phase"] == "Awaiting", status
    jobs.wait_phase(child.name, "Succeeded", timeout=60)
    assert pod_created(jobs, child.name) >= ts(jobs.status(parent.name)["finishedAt"])

    # condition="Finished": runs after a parent that failed, too.
    doomed = client.enqueue("charge", retry=0, pod_annotations=sim(fail_attempts="always"))
    cleanup = client.continue_with(doomed, "release_hold", condition="Finished")
    assert jobs.get(cleanup.name)["spec"]["afterCondition"] == "Finished"
    jobs.wait_phase(cleanup.name, "Succeeded", timeout=60)
    assert jobs.status(doomed.name)["phase"] == "Failed"


def test_batch_with_a_continuation_after_all(client: Client, jobs: Jobs) -> None:
    calls = [
        Call("resize", {"image": i}, {"pod_annotations": sim(duration=f"{i % 3}s")})
        for i in range(5)
    ]
    batch = client.batch(calls, then=Call("notify", {"done": True}))
    assert len(batch.jobs) == 5
    assert batch.continuation is not None
    after = jobs.get(batch.continuation.name)["spec"]["after"]
    assert after == [{"name": j.name} for j in batch.jobs]

    jobs.wait_phase(batch.continuation.name, "Succeeded", timeout=60)
    statuses = [jobs.status(j.name) for j in batch.jobs]
    assert all(s["phase"] == "Succeeded" for s in statuses)
    last = max(ts(s["finishedAt"]) for s in statuses)
    assert pod_created(jobs, batch.continuation.name) >= last


def test_requeue_runs_a_failed_job_again_once(client: Client, jobs: Jobs) -> None:
    job = client.enqueue("import_feed", retry=0, pod_annotations=sim(fail_attempts="1"))
    jobs.wait_phase(job.name, "Failed")
    token = client.requeue(job)
    status = wait_for(
        lambda: (s := jobs.status(job.name)).get("phase") == "Succeeded" and s,
        60,
        description="the requeued run",
    )
    assert history(status) == [(1, "Failed"), (2, "Succeeded")]
    assert status["requeueToken"] == token
    # Sending the same token again (with another change, so the operator does look) is a no-op.
    client.requeue(job, token=token)
    jobs.annotate(job.name, "touched", "yes")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        assert len(jobs.pods(job.name)) == 2
        assert jobs.status(job.name)["phase"] == "Succeeded"
        time.sleep(0.2)


def test_retry_now_skips_the_retry_delay(client: Client, jobs: Jobs) -> None:
    job = client.enqueue(
        "sync_crm",
        retry={"attempts": 1, "delays": ["1h"]},
        pod_annotations=sim(fail_attempts="1"),
    )
    status = wait_for(
        lambda: (s := jobs.status(job.name)).get("reason") == "Retrying" and s,
        30,
        description="the 1h retry delay",
    )
    assert status["phase"] == "Scheduled"
    client.retry_now(job)
    status = jobs.wait_phase(job.name, "Succeeded", timeout=30)
    assert history(status) == [(1, "Failed"), (2, "Succeeded")]
    assert pod_created(jobs, job.name, 2) < ts(status["attempts"][0]["finishedAt"]) + timedelta(
        minutes=5
    )


def test_delete_cancels_a_running_job(client: Client, jobs: Jobs) -> None:
    job = client.enqueue("long_export", pod_annotations=sim(duration="10m"))
    jobs.wait_phase(job.name, "Running")
    wait_for(lambda: jobs.pods(job.name), 30, description="the running pod")
    assert client.delete(job) is True

    def gone() -> bool:
        try:
            jobs.get(job.name)
        except ApiException as e:
            if e.status == 404:
                return True
            raise
        return False

    wait_for(gone, 30, description="the job to go")
    wait_for(lambda: not jobs.pods(job.name), 60, description="its pod to go")
    assert client.delete(job) is False


def test_async_client_enqueues_and_reads_back(
    cluster: Cluster, operator: Operator, jobs: Jobs
) -> None:
    async def run() -> tuple[JobHandle, dict[str, Any]]:
        client = await AsyncClient.from_kubeconfig(
            config_file=str(cluster.kubeconfig), namespace=jobs.namespace, image=IMAGE
        )
        async with client:
            job = await client.enqueue("send_welcome_email", {"user_id": 9})
            deadline = time.monotonic() + 60
            while True:
                body = await client.get(job)
                if (body.get("status") or {}).get("phase") == "Succeeded":
                    return job, body
                assert time.monotonic() < deadline, body.get("status")
                await asyncio.sleep(0.2)

    job, body = asyncio.run(run())
    assert job.namespace == jobs.namespace
    assert body["spec"]["task"] == {"name": "send_welcome_email", "args": {"user_id": 9}}
    assert history(body["status"]) == [(1, "Succeeded")]
