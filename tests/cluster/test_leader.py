"""High availability: two replicas, one Lease; only the leader reconciles."""

from __future__ import annotations

import time
from pathlib import Path

from jobs_api import Jobs, job_spec

from harness import Cluster, wait_for
from operator_process import Operator


def lease_holder(cluster: Cluster) -> str:
    return cluster.kubectl(
        "get", "lease", "stoker-operator", "-n", "default", "-o", "jsonpath={.spec.holderIdentity}"
    )


def test_a_standby_waits_for_the_lease_then_takes_over(
    cluster: Cluster, operator: Operator, jobs: Jobs, tmp_path: Path
) -> None:
    standby = Operator(cluster, tmp_path / "standby.log", env={"STOKER_IDENTITY": "standby"})
    standby.start(wait=False)
    try:
        # A follower serves its probes and metrics while it waits (a liveness probe must not
        # kill it), and says it does not lead.
        wait_for(standby.serving, 60, description="the standby's metrics endpoint")
        wait_for(lambda: standby.healthz() == 200, 60, description="the standby's /healthz")
        time.sleep(3)
        assert "\nstoker_leader 0.0" in standby.metrics()
        assert lease_holder(cluster) == "stoker-test"

        operator.kill()  # the leader dies without releasing the Lease
        wait_for(standby.leading, 60, description="the standby taking the lead")
        assert lease_holder(cluster) == "standby"
        jobs.create("after-failover", job_spec())
        assert jobs.wait_phase("after-failover", "Succeeded")["attempt"] == 1
    finally:
        standby.kill()
        # The session's operator waits for the standby's Lease to expire, then leads again.
        operator.start()
    assert lease_holder(cluster) == "stoker-test"
