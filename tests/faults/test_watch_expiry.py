"""Forced watch expiry: the operator misses deletions and must not keep their ghosts.

The operator's connection is cut while kube-apiserver restarts (its watch cache starts anew,
so the operator's resourceVersions are too old to resume from) and, behind the operator's
back, a Running job and an Enqueued job are deleted.
When the connection is restored the operator relists. What it must do, as client-go's
informers do: drop what the relist no longer has. A ghost would keep its queue slot (the job
waiting behind it never runs) or be dispatched (a pod created for a deleted job, garbage-
collected, created again), which the audit log shows as a pod create after the deletion.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import kubernetes
from audit import AuditLog, created_twice, pods_created_after
from controlplane import APISERVER, ControlPlane
from faultkit import Canary, Figures, Stoker, job_gauge, job_spec
from proxy import TcpProxy

from harness import wait_for
from operator_process import Operator


def test_jobs_deleted_while_the_watch_was_away_are_dropped(
    plane: ControlPlane,
    proxy: TcpProxy,
    new_operator: Callable[..., Operator],
    admin: kubernetes.client.ApiClient,
    namespace: str,
    canary: Canary,
    audit: AuditLog,
    figures: Figures,
) -> None:
    # A Lease that outlasts the cut: this test is about the watch, not leadership (a
    # restarted process would relist from scratch and prove nothing).
    operator = new_operator(STOKER_LEASE_DURATION="10m")
    operator.start()
    assert operator.proc is not None
    pid = operator.proc.pid
    s = Stoker(admin, namespace)
    canary_before = canary.run()

    s.create("q1", {"concurrency": 1}, "JobQueue")
    s.create("q2", {"suspend": True}, "JobQueue")
    s.create("running", job_spec(sim={"duration": "10m"}, queue="q1"))
    s.wait_phase("running", "Running")
    s.create("enqueued", job_spec(queue="q2"))
    assert s.wait_phase("enqueued", "Enqueued")["reason"] == "QueueSuspended"
    s.create("waiter", job_spec(queue="q1"))
    assert s.wait_phase("waiter", "Enqueued")["reason"] == "QueueFull"

    proxy.cut()
    cut = time.monotonic()
    plane.outage(APISERVER, 0)
    deleted = time.time()
    s.delete("running")
    s.delete("enqueued")
    # The deleted job's queue is resumed too: its relist may come before the jobs' relist.
    s.patch("q2", {"spec": {"suspend": False}}, "JobQueue")
    # What the garbage collector does, without waiting for a controller-manager that has
    # just resynced after the restart.
    s.core.delete_namespaced_pod("running-1", namespace, grace_period_seconds=0)
    wait_for(lambda: s.pods("running") == {}, 60, 0.1, "running-1 gone")
    proxy.restore()
    restored = time.monotonic()

    # The slot the deleted job held is free: the job waiting for it runs.
    s.wait_phase("waiter", "Succeeded", 60)
    resumed = time.monotonic() - restored
    # The operator's own view holds no ghost: only the waiter, Succeeded.
    wait_for(
        lambda: job_gauge(operator.metrics(), namespace) == {"Succeeded": 1},
        30,
        0.2,
        "the operator counting only the waiter",
    )
    # Long enough for a ghost to be dispatched and its pod garbage-collected and re-created.
    time.sleep(5)
    entries = audit.entries()
    ghosts = pods_created_after(entries, namespace, "running", deleted) + pods_created_after(
        entries, namespace, "enqueued", deleted
    )
    assert [g.name for g in ghosts] == []
    assert created_twice(entries, namespace) == {}
    assert operator.proc.pid == pid and operator.proc.poll() is None, "the same process relisted"
    assert operator.healthz() == 200
    canary_after = canary.run()

    figures.happened = (
        f"operator cut off for {restored - cut:.1f} s while kube-apiserver restarted; a Running "
        "and an Enqueued job deleted behind its back, the latter's queue resumed"
    )
    figures.resumed_s = resumed
    figures.lost = 0
    figures.extra = {
        "pods created for deleted jobs": len(ghosts),
        "canary before/after s": f"{canary_before:.1f}/{canary_after:.1f}",
    }
