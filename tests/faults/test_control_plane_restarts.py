"""kube-apiserver SIGKILLed and restarted mid-run; etcd SIGKILLed and restarted mid-run.

Jobs are in every phase when the component dies. Afterwards every job has Succeeded on its
first attempt, no pod name was created twice (audit log), and a canary in another namespace
succeeds. The operator runs with the production Lease (15 s: renew deadline 10 s): an outage
longer than that makes it exit, and it is restarted as its Deployment would be.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import kubernetes
import pytest
from audit import AuditLog, created_twice, pod_creates
from controlplane import APISERVER, ETCD, ControlPlane
from faultkit import (
    Canary,
    Figures,
    Stoker,
    SupervisedOperator,
    create_many,
    job_spec,
    not_first_time_successes,
    phase_counts,
)

from harness import Cluster, wait_for
from operator_process import Operator


@pytest.mark.parametrize(
    ("component", "jobs", "duration", "down_s"),
    [(APISERVER, 200, "5s", 15.0), (ETCD, 100, "3s", 8.0)],
    ids=["kube-apiserver", "etcd"],
)
def test_every_job_succeeds_once_through_a_control_plane_restart(
    component: str,
    jobs: int,
    duration: str,
    down_s: float,
    fault_cluster: Cluster,
    plane: ControlPlane,
    new_operator: Callable[..., Operator],
    admin: kubernetes.client.ApiClient,
    namespace: str,
    canary: Canary,
    audit: AuditLog,
    figures: Figures,
) -> None:
    operator = SupervisedOperator(new_operator(STOKER_LEASE_DURATION="15s"))
    operator.start()
    stoker = Stoker(admin, namespace)
    canary_before = canary.run()

    names = [f"job-{i:04d}" for i in range(jobs)]
    create_many(fault_cluster, namespace, names, job_spec(sim={"duration": duration}))
    # Mid-run: a quarter of the jobs have pods, the rest are still to be started.
    wait_for(
        lambda: phase_counts(stoker.statuses())["Running"] >= jobs // 4,
        120,
        0.2,
        f"{jobs // 4} jobs Running",
    )
    at_kill = phase_counts(stoker.statuses())

    killed = time.time()
    plane.outage(component, down_s)
    back = time.monotonic()
    resumed = canary.run(timeout=180)  # created as soon as the API answers

    wait_for(
        lambda: phase_counts(stoker.statuses())["Succeeded"] == jobs,
        300,
        0.5,
        f"all {jobs} jobs Succeeded",
    )
    finished = time.monotonic() - back
    statuses = stoker.statuses()
    entries = audit.entries()
    creates = pod_creates(entries, namespace)
    s_pods = stoker.all_pods()

    assert not_first_time_successes(statuses) == {}
    assert created_twice(entries, namespace) == {}
    # One pod per job, attempt 1. A create whose client died mid-request (a SIGKILL, an
    # outage) can be stored without a 201 in the log; a second create of a name is a 409.
    assert s_pods == {f"{n}-1" for n in names}
    assert set(creates) <= s_pods
    operator.wait_leading()
    assert operator.operator.healthz() == 200
    canary_after = canary.run()
    operator.stop()

    figures.happened = (
        f"{component} SIGKILLed with {jobs} jobs in flight ({dict(at_kill)}), "
        f"started again after {down_s:.0f} s; components restarted by the supervisor: "
        f"{plane.restarted_since(killed) or 'none'}; operator exits: {len(operator.exits)}"
    )
    figures.resumed_s = resumed
    figures.lost = len(not_first_time_successes(statuses)) + len(created_twice(entries, namespace))
    figures.extra = {
        "all jobs done after restart s": round(finished, 1),
        "canary before/after s": f"{canary_before:.1f}/{canary_after:.1f}",
    }
