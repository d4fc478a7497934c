"""The operator as users run it: the chart's Deployment on the real node, with the chart's
ServiceAccount and RBAC only, real probes, two replicas behind a Lease, and task code running
in pods whose logs the apiserver serves."""

from __future__ import annotations

import time
from datetime import datetime

from realnode_kit import (
    Release,
    apply,
    background_job,
    get_json,
    installed_chart,
    job_phase,
    job_pod_log,
    operator_logs,
    runner_task_spec,
    wait_job_phase,
)

from harness import Cluster, create_namespace, wait_for

# The chart's liveness probe gives up after initialDelaySeconds 10 + 3 failures x 10 s: a
# replica that lives past this window without a restart is served by /healthz.
LIVENESS_WINDOW_SECONDS = 45


def welcome(name: str, user_id: int) -> dict[str, object]:
    args = {"user_id": user_id, "email": f"u{user_id}@example.com"}
    return background_job(name, runner_task_spec("send_welcome_email", args))


def run_welcome(
    cluster: Cluster, namespace: str, name: str, user_id: int, release: Release
) -> None:
    apply(cluster, namespace, welcome(name, user_id))
    try:
        wait_job_phase(cluster, namespace, name, "Succeeded")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{operator_logs(release)}") from e
    expected = f"sent welcome email to user {user_id} at u{user_id}@example.com"
    assert expected in job_pod_log(cluster, namespace, name)


def started_at(release: Release, pod: str) -> float:
    (status,) = get_json(release.cluster, "pod", pod, "-n", release.namespace)["status"][
        "containerStatuses"
    ]
    return datetime.fromisoformat(status["state"]["running"]["startedAt"]).timestamp()


def test_two_replicas_standby_stays_healthy_and_takes_over(
    cluster: Cluster, namespace: str, real_node: str
) -> None:
    with installed_chart(cluster, namespace, {"replicas": 2}) as release:
        pods = {p["metadata"]["name"] for p in release.wait_ready(2)}
        leader = wait_for(release.leader, timeout=60, description="a leader")
        assert leader in pods
        (standby,) = pods - {leader}
        assert {p["spec"]["nodeName"] for p in release.pods()} == {real_node}

        run_welcome(cluster, namespace, "welcome-1", 1, release)

        # The standby waits for the Lease, healthy: the liveness probe never restarts it.
        time.sleep(max(0.0, started_at(release, standby) + LIVENESS_WINDOW_SECONDS - time.time()))
        assert release.restarts() == {leader: 0, standby: 0}, operator_logs(release)
        assert {p["metadata"]["name"] for p in release.ready_pods()} == pods

        # The leader's pod goes: a standby takes the Lease and carries on (the waiting one,
        # or the Deployment's replacement if it asks first once the Lease has expired).
        t0 = time.monotonic()
        cluster.kubectl("delete", "pod", leader, "-n", namespace, "--wait=false")
        successor = wait_for(
            lambda: (holder := release.leader()) not in (None, leader) and holder,
            timeout=120,
            interval=0.2,
            description=f"a leader other than {leader}",
        )
        print(f"failover: {successor} led {time.monotonic() - t0:.1f}s after the delete")
        run_welcome(cluster, namespace, "welcome-2", 2, release)

        # 2/2 ready again: the standby that waited was never restarted, nor anyone else.
        after = {p["metadata"]["name"] for p in release.wait_ready(2)}
        assert standby in after and leader not in after and successor in after
        assert set(release.restarts().values()) == {0}, operator_logs(release)


def test_namespaced_mode_serves_its_namespaces_with_the_chart_rbac_only(
    cluster: Cluster, namespace: str, real_node: str
) -> None:
    served, other = create_namespace(cluster, "served-"), create_namespace(cluster, "other-")
    try:
        values = {"namespaces": [served]}
        with installed_chart(cluster, namespace, values) as release:
            release.wait_ready(1)
            # Created first, so that it would be done by the time the served one is, if the
            # operator served every namespace.
            apply(cluster, other, welcome("elsewhere", 4))
            run_welcome(cluster, served, "served", 3, release)
            assert job_phase(cluster, other, "elsewhere") is None
            assert not get_json(cluster, "pods", "-n", other)["items"]
            assert set(release.restarts().values()) == {0}, operator_logs(release)
            assert "Forbidden" not in operator_logs(release)
    finally:
        for ns in (served, other):
            cluster.kubectl("delete", "namespace", ns, "--wait=false")
