"""Write denials on every resource the operator writes: a ValidatingAdmissionPolicy refuses
one kind of write in one namespace for DENIAL_SECONDS, then goes away.

For each: the affected object shows a clear outcome during the denial, converges after the
lift with nothing lost and no pod created twice, and a canary job in another namespace
succeeds before, during and after: one refused write never stops Stoker for everyone.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import kubernetes
import pytest
from admission import (
    BGJ_CREATE,
    BGJ_DELETE,
    BGJ_STATUS,
    EVENTS_CREATE,
    JQ_STATUS,
    MESSAGE,
    PODS_CREATE,
    RJ_STATUS,
    Denial,
    Rule,
)
from audit import AuditLog, Entry, created_twice, pod_creates
from faultkit import Canary, Figures, Stoker, job_spec

from harness import wait_for
from operator_process import Operator

DENIAL_SECONDS = 10.0
# After the lift the operator's backoff (about 1 s doubling, so at most ~2x the denial) brings
# each object back; the timeout only bounds a test that would otherwise hang.
CONVERGE_TIMEOUT = 90.0
YEARLY = "0 0 1 1 *"  # a schedule that never comes due during a test: runs are triggered


@contextmanager
def denied(
    admin: kubernetes.client.ApiClient, rule: Rule, ns: str, probe: str | None
) -> Iterator[None]:
    d = Denial(admin, rule, ns, probe)
    d.on()
    try:
        yield
    finally:
        d.off()


def said(stoker: Stoker, kind: str, name: str) -> bool:
    """Whether the object's status or its Events carry the denial's message."""
    obj = stoker.get(name, kind) or {}
    texts = [json.dumps(obj.get("status") or {})] + [e.message or "" for e in stoker.events(name)]
    return any(MESSAGE in t for t in texts)


def operator_denials(entries: list[Entry], rule: Rule, ns: str) -> int:
    return sum(
        1
        for e in entries
        if e.operator and e.namespace == ns and e.code == 403 and e.resource == rule.resource
    )


@dataclass
class Case:
    """One denial. `arrange` runs before it (returns the object the policy is probed with),
    `during` inside it (returns what happened, in words), `after` after the lift (returns how
    many objects were lost: not in their expected final state)."""

    rule: Rule
    arrange: Callable[[Stoker], str | None]
    during: Callable[[Stoker], str]
    after: Callable[[Stoker, AuditLog], int]


# ---------------------------------------------------------------- pods create


def _pods_during(s: Stoker) -> str:
    s.create("job", job_spec())
    status = wait_for(
        lambda: (st := s.status("job")).get("reason") == "PodCreateFailed" and st,
        30,
        0.1,
        "job Enqueued with reason PodCreateFailed",
    )
    assert status["phase"] == "Enqueued", status
    assert MESSAGE in status["message"], status
    assert s.pods("job") == {}
    return f"job stays Enqueued, reason PodCreateFailed: {status['message']!r}"


def _one_job_succeeded(s: Stoker, audit: AuditLog) -> int:
    status = s.wait_phase("job", ("Succeeded", "Failed"), CONVERGE_TIMEOUT)
    assert status["phase"] == "Succeeded", status
    assert status["attempt"] == 1 and len(status["attempts"]) == 1, status
    return 0


# ---------------------------------------------------------------- BackgroundJob status


def _suspended_probe(s: Stoker) -> str:
    """A job the operator leaves alone once it has written its status (Suspended)."""
    s.create("probe", job_spec(suspend=True))
    s.wait_phase("probe", "Enqueued")
    return "probe"


def _bgj_status_during(s: Stoker) -> str:
    s.create("job", job_spec())
    wait_for(lambda: s.pods("job") == {"job-1": "Succeeded"}, 30, 0.1, "pod job-1 Succeeded")
    assert s.status("job").get("phase") is None  # every status write was refused
    return "the pod ran and Succeeded; the job's status could not be written"


# ---------------------------------------------------------------- RecurringJob status


def _recurring(s: Stoker) -> str:
    s.create("rj", {"schedule": YEARLY, "jobTemplate": {"spec": job_spec()}}, "RecurringJob")
    wait_for(lambda: s.status("rj", "RecurringJob").get("nextScheduleTime"), 30, 0.1, "rj status")
    return "rj"


def _trigger(s: Stoker) -> None:
    s.patch("rj", {"metadata": {"annotations": {"stoker.dev/trigger": "t1"}}}, "RecurringJob")


def _runs(s: Stoker) -> dict[str, dict[str, Any]]:
    return {n: st for n, st in s.statuses().items() if n.startswith("rj-")}


def _rj_status_during(s: Stoker) -> str:
    _trigger(s)
    wait_for(
        lambda: [st for st in _runs(s).values() if st.get("phase") == "Succeeded"],
        30,
        0.1,
        "the triggered run Succeeded",
    )
    assert not s.status("rj", "RecurringJob").get("lastJob")
    return "the triggered run was created and Succeeded; the RecurringJob's status was not written"


def _one_run(s: Stoker, audit: AuditLog) -> int:
    def recorded() -> dict[str, Any] | None:
        st = s.status("rj", "RecurringJob")
        return st if st.get("lastJob") and st.get("triggerToken") == "t1" else None

    status = wait_for(recorded, CONVERGE_TIMEOUT, 0.1, "rj status recording the triggered run")
    (run,) = _runs(s)
    assert status["lastJob"] == run
    s.wait_phase(run, "Succeeded", CONVERGE_TIMEOUT)
    creates = [
        e
        for e in audit.entries()
        if e.operator
        and e.verb == "create"
        and e.resource == "backgroundjobs"
        and e.code == 201
        and e.namespace == s.namespace
    ]
    assert [e.name for e in creates] == [run], "the run is created exactly once"
    return 0


# ---------------------------------------------------------------- JobQueue status


def _queue(s: Stoker) -> str:
    s.create("q", {"concurrency": 2}, "JobQueue")
    wait_for(lambda: s.status("q", "JobQueue").get("conditions"), 30, 0.1, "q status")
    return "q"


def _jq_status_during(s: Stoker) -> str:
    s.create("long", job_spec(sim={"duration": "10m"}, queue="q"))
    for i in range(3):
        s.create(f"short-{i}", job_spec(sim={"duration": "1s"}, queue="q"))
    for i in range(3):
        s.wait_phase(f"short-{i}", "Succeeded", 30)
    assert s.status("long")["phase"] == "Running"
    assert s.status("q", "JobQueue").get("running", 0) == 0  # as before: not written
    return "4 jobs dispatched through q (3 Succeeded, 1 Running); q's status not written"


def _queue_converged(s: Stoker, audit: AuditLog) -> int:
    wait_for(
        lambda: (
            (st := s.status("q", "JobQueue")).get("running") == 1 and st.get("enqueued", 0) == 0
        ),
        CONVERGE_TIMEOUT,
        0.1,
        "q status: running 1, enqueued 0",
    )
    return 0


# ---------------------------------------------------------------- events


def _events_during(s: Stoker) -> str:
    s.create("job", job_spec())
    status = s.wait_phase("job", ("Succeeded", "Failed"), 30)
    assert status["phase"] == "Succeeded" and status["attempt"] == 1, status
    return "the job Succeeded during the denial; only its Events were refused"


def _job_kept(s: Stoker, audit: AuditLog) -> int:
    status = s.status("job")
    assert status["phase"] == "Succeeded" and len(status["attempts"]) == 1, status
    return 0


# ---------------------------------------------------------------- BackgroundJob create


def _bgj_create_during(s: Stoker) -> str:
    _trigger(s)
    wait_for(lambda: said(s, "RecurringJob", "rj"), 30, 0.1, "rj saying its run was refused")
    assert _runs(s) == {}
    return "no run could be created; the RecurringJob says so"


# ---------------------------------------------------------------- BackgroundJob delete


def _bgj_delete_during(s: Stoker) -> str:
    s.create("job", job_spec(ttlAfterFinished="1s"))
    s.wait_phase("job", "Succeeded", 30)
    wait_for(lambda: said(s, "BackgroundJob", "job"), 30, 0.1, "job saying its deletion failed")
    assert s.get("job") is not None
    return "the job Succeeded; its TTL deletion was refused and it says so"


def _job_deleted(s: Stoker, audit: AuditLog) -> int:
    s.wait_gone("job", timeout=CONVERGE_TIMEOUT)
    return 0


CASES = {
    "pods-create": Case(PODS_CREATE, lambda s: None, _pods_during, _one_job_succeeded),
    "backgroundjobs-status": Case(
        BGJ_STATUS, _suspended_probe, _bgj_status_during, _one_job_succeeded
    ),
    "recurringjobs-status": Case(RJ_STATUS, _recurring, _rj_status_during, _one_run),
    "jobqueues-status": Case(JQ_STATUS, _queue, _jq_status_during, _queue_converged),
    "events-create": Case(EVENTS_CREATE, lambda s: None, _events_during, _job_kept),
    "backgroundjobs-create": Case(BGJ_CREATE, _recurring, _bgj_create_during, _one_run),
    "backgroundjobs-delete": Case(BGJ_DELETE, _suspended_probe, _bgj_delete_during, _job_deleted),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_denied_write_is_confined_to_its_object_and_converges_after_the_lift(
    case: Case,
    new_operator: Callable[..., Operator],
    admin: kubernetes.client.ApiClient,
    namespace: str,
    canary: Canary,
    audit: AuditLog,
    figures: Figures,
) -> None:
    operator = new_operator()
    operator.start()
    stoker = Stoker(admin, namespace)
    canary_before = canary.run()
    probe = case.arrange(stoker)

    with denied(admin, case.rule, namespace, probe):
        started = time.monotonic()
        happened = case.during(stoker)
        canary_during = canary.run()
        time.sleep(max(0.0, started + DENIAL_SECONDS - time.monotonic()))
    lifted = time.monotonic()

    lost = case.after(stoker, audit)
    converged = time.monotonic() - lifted
    canary_after = canary.run()
    entries = audit.entries()

    assert created_twice(entries, namespace) == {}
    assert all(n == 1 for n in pod_creates(entries, namespace).values())
    refused = operator_denials(entries, case.rule, namespace)
    assert refused >= 1, "the operator did try the write"
    # Retried with backoff (or when the object changes), never in a tight loop.
    assert refused <= 2 * DENIAL_SECONDS, refused
    assert operator.healthz() == 200
    assert lost == 0

    figures.happened = (
        f"{case.rule.label} denied in one namespace for {DENIAL_SECONDS:.0f} s: {happened}"
    )
    figures.resumed_s = converged
    figures.lost = lost
    figures.extra = {
        "refused writes": refused,
        "canary before/during/after s": "/".join(
            f"{t:.1f}" for t in (canary_before, canary_during, canary_after)
        ),
    }
