"""The operator SIGKILLed ten times at random moments during a 1,000-job run.

Jobs arrive in ten waves of 100; after each wave the operator is killed at a random moment
while it works (the kill always lands mid-run, however fast the machine) and started again at
once, as its Deployment would. Nothing may be lost: every job Succeeded on its first attempt,
and the audit log shows each pod name created exactly once.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable

import kubernetes
from audit import AuditLog, created_twice, pod_creates
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

WAVES, WAVE = 10, 100


def test_a_thousand_jobs_survive_ten_sigkills(
    fault_cluster: Cluster,
    new_operator: Callable[..., Operator],
    admin: kubernetes.client.ApiClient,
    namespace: str,
    canary: Canary,
    audit: AuditLog,
    figures: Figures,
) -> None:
    seed = int(os.environ.get("STOKER_FAULT_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    print(f"kill moments from seed {seed} (STOKER_FAULT_SEED)")
    # The same identity: a restarted process renews the Lease it held, at once.
    operator = SupervisedOperator(new_operator(), restart_delay=0.0)
    operator.start()
    s = Stoker(admin, namespace)
    canary_before = canary.run()
    # A queue limit keeps jobs waiting, so each kill finds jobs in every phase.
    s.create("q", {"concurrency": 100}, "JobQueue")
    spec = job_spec(sim={"duration": "1s"}, queue="q")

    started = time.monotonic()
    names: list[str] = []
    back_after: list[float] = []
    for wave in range(WAVES):
        batch = [f"job-{wave}-{i:03d}" for i in range(WAVE)]
        create_many(fault_cluster, namespace, batch, spec)
        names += batch
        operator.wait_leading(120)
        time.sleep(rng.uniform(0.2, 3.0))
        operator.kill()
        killed = time.monotonic()
        operator.wait_leading(120)
        back_after.append(time.monotonic() - killed)

    wait_for(
        lambda: phase_counts(s.statuses())["Succeeded"] == len(names),
        600,
        1.0,
        f"all {len(names)} jobs Succeeded",
    )
    run_s = time.monotonic() - started
    statuses = s.statuses()
    entries = audit.entries()
    creates = pod_creates(entries, namespace)
    s_pods = s.all_pods()

    assert len(statuses) == WAVES * WAVE
    assert not_first_time_successes(statuses) == {}
    assert created_twice(entries, namespace) == {}
    # One pod per job, attempt 1. A create whose client died mid-request (a SIGKILL, an
    # outage) can be stored without a 201 in the log; a second create of a name is a 409.
    assert s_pods == {f"{n}-1" for n in names}
    assert set(creates) <= s_pods
    assert operator.operator.healthz() == 200
    canary_after = canary.run()
    operator.stop()

    figures.happened = (
        f"operator SIGKILLed {WAVES} times at random moments (seed {seed}) during a "
        f"{len(names)}-job run ({run_s:.0f} s); restarted at once each time"
    )
    figures.resumed_s = max(back_after)
    figures.lost = len(not_first_time_successes(statuses)) + len(created_twice(entries, namespace))
    figures.extra = {
        "serving again after a kill, mean/max s": (
            f"{sum(back_after) / len(back_after):.1f}/{max(back_after):.1f}"
        ),
        "pod names created": len(creates),
        "created twice": len(created_twice(entries, namespace)),
        "canary before/after s": f"{canary_before:.1f}/{canary_after:.1f}",
    }
