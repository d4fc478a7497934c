"""The Argo CD health checks in docs/argocd/, run in Lua 5.1 (Argo CD's gopher-lua dialect).

The objects they judge are the ones the operator really writes: the reconciler runs against
the in-memory API of test_reconciler, so a renamed phase, reason or condition breaks these
tests rather than the users' dashboards.
"""

from __future__ import annotations

import copy
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import lupa.lua51 as lua51
import pytest
import yaml
from test_loop import T0, Clock, FakeKube, job, make, settle

from stoker.state import Kind

DOCS = Path(__file__).resolve().parents[2] / "docs"
ARGOCD = DOCS / "argocd"
KINDS = ("BackgroundJob", "RecurringJob", "JobQueue")


def health(kind: str, obj: dict[str, Any]) -> tuple[str, str]:
    """What Argo CD shows for obj: its health.lua run with `obj` as a global, as Argo CD does."""
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = runtime.table_from(copy.deepcopy(obj), recursive=True)
    result = runtime.execute((ARGOCD / f"{kind.lower()}.lua").read_text())
    return result["status"], result["message"]


def bare(kind: str, spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "stoker.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": "x", "namespace": "ns", "generation": 1},
        "spec": spec,
    }
    if status is not None:
        obj["status"] = status
    return obj


def queue(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "stoker.dev/v1alpha1",
        "kind": "JobQueue",
        "metadata": {"name": name, "namespace": "ns"},
        "spec": spec,
    }


def recurring(name: str, **spec: Any) -> dict[str, Any]:
    template = {"spec": {"template": {"spec": {"containers": [{"name": "m", "image": "x"}]}}}}
    return {
        "apiVersion": "stoker.dev/v1alpha1",
        "kind": "RecurringJob",
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"jobTemplate": template, **spec},
    }


# ---------------------------------------------------------------- BackgroundJob


async def test_background_job_health_follows_the_phase_the_operator_writes() -> None:
    kube, clock = FakeKube(), Clock()
    kube.add("backgroundjobs", job("ok"))
    kube.add("backgroundjobs", job("broken", retry={"attempts": 0}))
    kube.add("backgroundjobs", job("later", startAfter="1h"))
    kube.add("backgroundjobs", job("held", suspend=True))
    kube.add("backgroundjobs", job("child", after=[{"name": "ok"}]))
    r = await make(kube, clock)
    await settle(r)

    def seen(name: str) -> tuple[str, str]:
        return health("BackgroundJob", kube.objects["backgroundjobs", "ns", name])

    # The message: phase, (reason), and the operator's own message.
    assert seen("ok") == ("Progressing", "Running (Started): attempt 1 of 4 running in pod ok-1")
    assert seen("later")[0] == "Progressing"
    assert seen("later")[1].startswith("Scheduled (Delayed): does not start before ")
    assert seen("child") == ("Progressing", "Awaiting (WaitingForJobs): waiting for ok (Running)")
    assert seen("held") == (
        "Suspended",
        "Enqueued (Suspended): the job is suspended (spec.suspend)",
    )

    r.on_pod("MODIFIED", kube.finish_pod("ns", "ok-1"))
    r.on_pod("MODIFIED", kube.finish_pod("ns", "broken-1", exit_code=3))
    await settle(r)
    assert seen("ok") == ("Healthy", "Succeeded (Completed): attempt 1 succeeded")
    status, message = seen("broken")
    assert status == "Degraded"
    assert message.startswith("Failed (AttemptsExhausted): ")
    assert "exit code 3" in message


def test_a_background_job_without_status_is_progressing() -> None:
    spec = {"template": {"spec": {"containers": [{"name": "m"}]}}}
    assert health("BackgroundJob", bare("BackgroundJob", spec)) == (
        "Progressing",
        "Waiting for the Stoker operator to pick the job up",
    )
    assert health("BackgroundJob", bare("BackgroundJob", spec, {}))[0] == "Progressing"


# ---------------------------------------------------------------- RecurringJob


async def test_recurring_job_health() -> None:
    kube, clock = FakeKube(), Clock()
    kube.add("recurringjobs", recurring("nightly", schedule="0 2 * * *"))
    kube.add("recurringjobs", recurring("paused", schedule="0 2 * * *", suspend=True))
    kube.add("recurringjobs", recurring("bad-zone", schedule="0 2 * * *", timeZone="Mars/Base"))
    kube.add("recurringjobs", recurring("bad-and-paused", schedule="61 * * * *", suspend=True))
    r = await make(kube, clock)
    await settle(r)

    def seen(name: str) -> tuple[str, str]:
        return health("RecurringJob", kube.objects["recurringjobs", "ns", name])

    assert seen("nightly") == ("Healthy", "next run at 2026-11-22T02:00:00Z")
    assert seen("paused") == ("Suspended", "spec.suspend is true: no run is scheduled")
    status, message = seen("bad-zone")
    assert status == "Degraded"
    assert message.startswith("InvalidSchedule: ") and "Mars/Base" in message
    # A broken schedule shows even while the job is suspended: resuming would not fix it.
    assert seen("bad-and-paused")[0] == "Degraded"

    # A changed spec the operator has not read yet: the old Valid condition no longer counts.
    stale = copy.deepcopy(kube.objects["recurringjobs", "ns", "nightly"])
    stale["metadata"]["generation"] = 2
    assert health("RecurringJob", stale)[0] == "Progressing"


def test_a_recurring_job_without_status_is_progressing() -> None:
    spec = {"schedule": "0 2 * * *", "jobTemplate": {"spec": {}}}
    assert health("RecurringJob", bare("RecurringJob", spec)) == (
        "Progressing",
        "Waiting for the Stoker operator to read the schedule",
    )


# ---------------------------------------------------------------- JobQueue


async def test_job_queue_health_follows_the_active_condition() -> None:
    kube, clock = FakeKube(), Clock()
    kube.add("jobqueues", queue("open", concurrency=1))
    kube.add("jobqueues", queue("closed", suspend=True))
    kube.add("backgroundjobs", job("a", queue="open"))
    kube.add("backgroundjobs", job("b", queue="open"))
    kube.add("backgroundjobs", job("c", queue="closed"))
    r = await make(kube, clock)
    await settle(r)
    clock.now = T0 + timedelta(seconds=2)  # queue figures are written at most once a second
    r.dirty |= {(Kind.QUEUE, "ns", "open"), (Kind.QUEUE, "ns", "closed")}
    await settle(r)

    def seen(name: str) -> tuple[str, str]:
        return health("JobQueue", kube.objects["jobqueues", "ns", name])

    assert seen("open") == ("Healthy", "1 enqueued, 1 running")
    assert seen("closed") == (
        "Suspended",
        "spec.suspend is true: nothing is dispatched; 1 enqueued, 0 running",
    )
    stale = copy.deepcopy(kube.objects["jobqueues", "ns", "closed"])
    stale["metadata"]["generation"] = 2
    assert health("JobQueue", stale)[0] == "Progressing"


def test_a_job_queue_without_status_is_progressing() -> None:
    assert health("JobQueue", bare("JobQueue", {})) == (
        "Progressing",
        "Waiting for the Stoker operator to read the queue",
    )


# ---------------------------------------------------------------- what users copy


def test_the_config_map_carries_each_script_under_argo_cds_key() -> None:
    config_map = yaml.safe_load((ARGOCD / "argocd-cm.yaml").read_text())
    assert (config_map["kind"], config_map["metadata"]["name"]) == ("ConfigMap", "argocd-cm")
    assert config_map["data"] == {
        f"resource.customizations.health.stoker.dev_{kind}": (
            ARGOCD / f"{kind.lower()}.lua"
        ).read_text()
        for kind in KINDS
    }


def test_the_gitops_guide_shows_the_config_map_as_it_is() -> None:
    guide = (DOCS / "gitops.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", guide, flags=re.DOTALL)
    assert (ARGOCD / "argocd-cm.yaml").read_text() in blocks


@pytest.mark.parametrize("kind", KINDS)
def test_every_script_is_valid_lua_returning_a_status(kind: str) -> None:
    status, message = health(kind, bare(kind, {}))
    assert status in {"Healthy", "Progressing", "Degraded", "Suspended"}
    assert isinstance(message, str)
