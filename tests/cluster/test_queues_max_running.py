"""The operator-wide limit maxRunning (STOKER_MAX_RUNNING; Hangfire's WorkerCount) across queues.

These tests need an operator started with STOKER_MAX_RUNNING=2, and exactly one operator may
serve a namespace. The session's `operator` fixture serves every namespace, so the module
fixture below takes it out of the way for this module only:
  - it asks for the session operator (starting it if no earlier module did: harmless) and
    kills it, then starts its own limited operator, and at the end kills that one and starts
    the session operator again (same identity: it takes its Lease back at once), so modules
    after this one find it as they expect;
  - the limited operator serves only namespaces this module creates (STOKER_NAMESPACES), so
    that jobs still running in other tests' namespaces (deleted without waiting) take none of
    its two slots;
  - it holds its own Lease (STOKER_LEASE_NAME/STOKER_IDENTITY): the two operators never run
    at once, and even if they did they would not share an identity.
Tests here take `limited_jobs`, never `jobs`/`namespace`: those namespaces are served by no
operator while this module runs.
"""

from __future__ import annotations

from collections.abc import Iterator

import kubernetes
import pytest
from jobs_api import Jobs, job_spec
from test_queues import (
    History,
    create_queue,
    job_of,
    live,
    max_live_pods,
    pod_creation_order,
    reasons_seen,
    wait_enqueued,
    wait_succeeded,
)

from harness import Cluster, create_namespace
from operator_process import Operator

MAX_RUNNING = 2
TESTS_IN_MODULE = 4  # namespaces: one per test, two for the fairness test


@pytest.fixture(scope="module")
def namespace_pool(
    request: pytest.FixtureRequest,
    cluster: Cluster,
    crds: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[str]]:
    """Namespaces served by an operator with maxRunning 2 (one per test, taken in turn)."""
    session_operator: Operator = request.getfixturevalue("operator")
    pool = [create_namespace(cluster) for _ in range(TESTS_IN_MODULE)]
    limited = Operator(
        cluster,
        tmp_path_factory.mktemp("operator-max-running") / "operator.log",
        env={
            "STOKER_MAX_RUNNING": str(MAX_RUNNING),
            "STOKER_NAMESPACES": ",".join(pool),
            "STOKER_LEASE_NAME": "stoker-test-max-running",
            "STOKER_IDENTITY": "stoker-test-max-running",
        },
    )
    # SIGKILL, not a graceful stop: kopf's shutdown takes seconds, and a killed operator is a
    # case the operator is built for (the crash tests of test_foundation rely on it too).
    session_operator.kill()
    try:
        limited.start()
        yield list(pool)
    finally:
        limited.kill()
        print(f"max-running operator log: {limited.log_path}")
        session_operator.start()
        for name in pool:
            cluster.kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture
def limited_jobs(
    namespace_pool: list[str],
    api: kubernetes.client.CustomObjectsApi,
    core: kubernetes.client.CoreV1Api,
) -> Jobs:
    assert namespace_pool, "raise TESTS_IN_MODULE: each test needs its own namespace"
    return Jobs(api, core, namespace_pool.pop(0))


def test_max_running_serves_the_higher_priority_queue_first(limited_jobs: Jobs) -> None:
    jobs = limited_jobs
    # The low-priority queue's name sorts first and its jobs are older: only queue priority
    # can put the high queue's jobs ahead.
    create_queue(jobs, "bulk", priority=0)
    create_queue(jobs, "critical", priority=100)
    pods, bgjs = History.pods(jobs), History.jobs(jobs)
    blockers = ["blocker-1", "blocker-2"]
    for name in blockers:
        jobs.create(name, job_spec(sim={"duration": "6s"}))
    for name in blockers:
        jobs.wait_phase(name, "Running")
    low = [f"bulk-{i}" for i in range(3)]
    high = [f"crit-{i}" for i in range(4)]
    for name in low:
        jobs.create(name, job_spec(sim={"duration": "2s"}, queue="bulk"))
    for name in high:
        jobs.create(name, job_spec(sim={"duration": "2s"}, queue="critical"))
    wait_enqueued(jobs, low + high, "MaxRunning")
    assert {jobs.status(n)["phase"] for n in blockers} == {"Running"}, "precondition"

    wait_succeeded(jobs, blockers + low + high)
    pods.stop()
    bgjs.stop()

    assert max_live_pods(pods) == MAX_RUNNING
    # A bulk job may start only in a pass with more free slots than enqueued critical jobs,
    # i.e. with at most one critical job left: so at the first bulk pod's creation at least
    # all but one critical pod exist (the last may be created in that same pass).
    created = pod_creation_order(pods)
    first_bulk = min(created.index(n) for n in low)
    assert sum(1 for n in created[:first_bulk] if n in high) >= len(high) - 1, created
    # Bulk jobs waited on the global limit the whole time, never on anything else.
    for name in low:
        waits = {r for p, r in reasons_seen(bgjs, name) if p == "Enqueued"}
        assert waits == {"MaxRunning"}, (name, reasons_seen(bgjs, name))


def test_a_capped_high_priority_queue_does_not_starve_a_lower_one(limited_jobs: Jobs) -> None:
    jobs = limited_jobs
    create_queue(jobs, "capped", priority=100, concurrency=1)
    create_queue(jobs, "lower", priority=0)
    pods, bgjs = History.pods(jobs), History.jobs(jobs)
    capped = [f"cap-{i}" for i in range(3)]
    lower = [f"low-{i}" for i in range(3)]
    for name in capped:
        jobs.create(name, job_spec(sim={"duration": "3s"}, queue="capped"))
    for name in lower:
        jobs.create(name, job_spec(sim={"duration": "3s"}, queue="lower"))
    wait_succeeded(jobs, capped + lower)
    pods.stop()
    bgjs.stop()

    assert max_live_pods(pods) == MAX_RUNNING
    assert max_live_pods(pods, capped) == 1
    # The global slot the capped queue cannot use went to the lower queue at once: a lower
    # job started before the capped queue's second one could, and ran alongside it.
    created = pod_creation_order(pods)
    capped_starts = [i for i, n in enumerate(created) if n in capped]
    assert min(created.index(n) for n in lower) < capped_starts[1], created
    assert any(
        any(live(p) and job_of(p) in capped for p in now.values())
        and any(live(p) and job_of(p) in lower for p in now.values())
        for _, now in pods.states()
    )
    # Capped jobs waited because of their queue, not the global limit.
    assert ("Enqueued", "QueueFull") in reasons_seen(bgjs, "cap-2")


def test_a_namespace_with_top_priority_jobs_cannot_starve_another(
    namespace_pool: list[str],
    api: kubernetes.client.CustomObjectsApi,
    core: kubernetes.client.CoreV1Api,
) -> None:
    """Priorities order jobs within a namespace only: the next slot of the operator-wide limit
    goes to the namespace with the fewest running jobs."""
    greedy, modest = (Jobs(api, core, namespace_pool.pop(0)) for _ in range(2))
    top = [f"top-{i}" for i in range(6)]
    for name in top:
        greedy.create(name, job_spec(sim={"duration": "6s"}, priority=2**31 - 1))
    wait_enqueued(greedy, top[MAX_RUNNING:], "MaxRunning")
    modest.create("humble", job_spec(sim={"duration": "1s"}, priority=-(2**31)))
    modest.wait_phase("humble", "Succeeded", timeout=60)
    # It started at the first free slot: while most of the greedy namespace still waited.
    waiting = [n for n in top if greedy.status(n).get("phase") == "Enqueued"]
    assert len(waiting) >= len(top) - MAX_RUNNING - 2, waiting
    wait_succeeded(greedy, top)
