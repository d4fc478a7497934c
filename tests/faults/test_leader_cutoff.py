"""The leader cut off: it must stop writing at its renew deadline and exit; the standby takes
over once the Lease expires, and no write of the old leader reaches the API server after its
deadline (audit log, by the User-Agent that names each process's identity).

Two operator processes share one Lease: the leader reaches the API server through the test's
proxy, the standby directly. The proxy is cut either by refusing connections (a reset, noticed
at once) or by a blackhole (packets vanish: only the leader's request timeouts notice). It is
restored after the old leader's renew deadline, before its Lease would expire: a leader that
did not stop would resume writing, and renew, right then.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import kubernetes
import pytest
from audit import AuditLog, created_twice
from faultkit import (
    Canary,
    Figures,
    Stoker,
    create_many,
    job_spec,
    not_first_time_successes,
    phase_counts,
)
from proxy import TcpProxy

from harness import Cluster, wait_for
from operator_process import Operator

LEASE_S = 6.0
RENEW_DEADLINE_S = LEASE_S * 2 / 3
JOBS = 20


def lease(admin: kubernetes.client.ApiClient, name: str) -> kubernetes.client.V1LeaseSpec:
    spec: kubernetes.client.V1LeaseSpec = (
        kubernetes.client.CoordinationV1Api(admin).read_namespaced_lease(name, "default").spec
    )
    return spec


@pytest.mark.parametrize("cut", ["refused", "blackholed"])
def test_a_leader_cut_off_stops_writing_at_its_deadline_and_the_standby_takes_over(
    cut: str,
    fault_cluster: Cluster,
    proxy: TcpProxy,
    new_operator: Callable[..., Operator],
    admin: kubernetes.client.ApiClient,
    namespace: str,
    canary: Canary,
    audit: AuditLog,
    figures: Figures,
) -> None:
    env = {"STOKER_LEASE_DURATION": f"{LEASE_S:.0f}s"}
    leader = new_operator("old-leader", proxied=True, **env)
    standby = new_operator("standby", proxied=False, **env)
    lease_name = leader.env["STOKER_LEASE_NAME"]
    leader.start()
    standby.start(wait=False)
    s = Stoker(admin, namespace)
    canary_before = canary.run()
    assert lease(admin, lease_name).holder_identity == "old-leader"
    wait_for(standby.serving, 60, 0.1, "the standby's metrics endpoint")
    assert not standby.leading()

    first = [f"before-{i:02d}" for i in range(JOBS)]
    create_many(fault_cluster, namespace, first, job_spec(sim={"duration": "2s"}))
    wait_for(lambda: phase_counts(s.statuses())["Running"] >= 5, 60, 0.1, "the leader at work")

    (proxy.cut if cut == "refused" else proxy.blackhole)()
    cut_at = time.time()
    # Work the old leader must not touch once restored, and the standby must do.
    second = [f"during-{i:02d}" for i in range(JOBS)]
    create_many(fault_cluster, namespace, second, job_spec(sim={"duration": "2s"}))
    time.sleep(0.5)  # a renewal the API server received before the cut is stored by now
    deadline = lease(admin, lease_name).renew_time.timestamp() + RENEW_DEADLINE_S

    exited_at: float | None = None
    while time.time() < deadline + 0.5:
        if exited_at is None and leader.proc is not None and leader.proc.poll() is not None:
            exited_at = time.time()
        time.sleep(0.05)
    proxy.restore()
    restored_at = time.time()

    wait_for(standby.leading, 60, 0.1, "the standby taking over")
    took_over = time.time() - cut_at
    if exited_at is None:
        assert leader.proc is not None
        wait_for(lambda: leader.proc.poll() is not None, 30, 0.05, "the old leader to exit")
        exited_at = time.time()
    assert lease(admin, lease_name).holder_identity == "standby"

    names = first + second
    wait_for(
        lambda: phase_counts(s.statuses())["Succeeded"] == len(names),
        120,
        0.5,
        "every job Succeeded under the new leader",
    )
    entries = audit.entries()
    late = [e for e in entries if e.by("old-leader") and e.completed > deadline]
    assert [(e.verb, e.resource, e.name, e.completed - deadline) for e in late] == []
    assert any(e.by("old-leader") for e in entries), "the old leader's writes are recognisable"
    assert any(e.by("standby") for e in entries)
    statuses = s.statuses()
    assert not_first_time_successes(statuses) == {}
    assert created_twice(entries, namespace) == {}
    canary_after = canary.run()

    figures.happened = (
        f"leader's connection {cut} for {restored_at - cut_at:.1f} s (restored "
        f"{restored_at - deadline:.1f} s after its renew deadline); it exited "
        f"{exited_at - deadline:+.1f} s from its deadline; the standby led {took_over:.1f} s "
        "after the cut"
    )
    figures.resumed_s = took_over
    figures.lost = len(not_first_time_successes(statuses)) + len(late)
    figures.extra = {
        "old leader's writes after its deadline": len(late),
        "canary before/after s": f"{canary_before:.1f}/{canary_after:.1f}",
    }
