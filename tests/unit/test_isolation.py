"""One object's failure is confined to it: backoff, Events, a loop that cannot die, ghosts
dropped after a relist, pod name conflicts, start deadlines, the leader fence."""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest
from kubernetes_asyncio.client.exceptions import ApiException
from test_lifecycle import T0, job
from test_loop import Clock, FakeKube, GatedLimiter, make, phase, queue_body, settle
from test_loop import job as job_body

from stoker.core.backoff import ERROR_MAX, error_delay
from stoker.core.lifecycle import PodView, decide, pod_view
from stoker.kube.leader import Fence, NotLeader
from stoker.state import Kind


def denied(status: int = 403, retry_after: str | None = None) -> ApiException:
    error = ApiException(status=status, reason="Forbidden")
    error.body = b'{"message": "denied by policy"}'
    error.headers = {"Retry-After": retry_after} if retry_after else {}
    return error


class FlakyKube(FakeKube):
    """FakeKube whose status writes to chosen objects fail until allowed again."""

    def __init__(self) -> None:
        super().__init__()
        self.deny: set[tuple[str, str]] = set()  # (plural, name)
        self.deny_pods = 0

    async def patch_status(
        self, plural: str, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        if (plural, name) in self.deny:
            self.writes.append(("denied", f"{plural}/status"))
            raise denied()
        return await super().patch_status(plural, namespace, name, status)

    async def create_pod(
        self, namespace: str, body: Mapping[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        if self.deny_pods:
            self.deny_pods -= 1
            raise denied(403)
        return await super().create_pod(namespace, body)


# ---------------------------------------------------------------- backoff


def test_error_delay_doubles_from_a_second_up_to_five_minutes() -> None:
    delays = [error_delay(n, "k") for n in range(1, 14)]
    assert timedelta(seconds=0.8) <= delays[0] <= timedelta(seconds=1.2)
    assert timedelta(seconds=3.2) <= delays[2] <= timedelta(seconds=4.8)
    assert all(d <= ERROR_MAX * 1.2 for d in delays)
    assert delays[-1] >= ERROR_MAX * 0.8


def test_error_delay_honours_retry_after() -> None:
    assert error_delay(1, "k", timedelta(seconds=30)) == timedelta(seconds=30)


async def test_a_failing_status_write_is_confined_to_its_job_and_backs_off() -> None:
    kube, clock = FlakyKube(), Clock()
    kube.add("backgroundjobs", job_body("bad"))
    kube.add("backgroundjobs", job_body("good"))
    kube.deny.add(("backgroundjobs", "bad"))
    r = await make(kube, clock)
    await settle(r)
    assert phase(kube, "good") == "Running"
    key = (Kind.JOB, "ns", "bad")
    assert r.failures[key] == 1
    # Each wake-up that fails again waits about twice as long.
    waits = []
    for _ in range(5):
        due = r.wakeups.next_due()
        assert due is not None
        waits.append((due - clock.now).total_seconds())
        clock.now = due
        await settle(r)
    assert r.failures[key] == 6
    assert all(b > a * 1.4 for a, b in itertools.pairwise(waits)), waits
    # Warning Events on the 1st, 2nd and 4th failure in a row, not on every one.
    await r.drain()
    assert [reason for name, reason in kube.events if name == "bad"].count("ReconcileFailed") == 3
    kube.deny.clear()
    clock.now = r.wakeups.next_due() or clock.now
    await settle(r)
    assert phase(kube, "bad") == "Running"
    assert key not in r.failures


async def test_a_denied_queue_status_write_does_not_stop_the_loop() -> None:
    kube, clock = FlakyKube(), Clock()
    kube.add("jobqueues", queue_body("q"))
    kube.deny.add(("jobqueues", "q"))
    r = await make(kube, clock)
    await settle(r)
    assert r.failures[Kind.QUEUE, "ns", "q"] == 1
    # A job created afterwards is served as usual.
    r.on_object(Kind.JOB, "ADDED", kube.add("backgroundjobs", job_body("later", queue="q")))
    await settle(r)
    assert phase(kube, "later") == "Running"


async def test_a_refused_pod_create_waits_with_its_reason_and_retries_with_backoff() -> None:
    kube, clock = FlakyKube(), Clock()
    kube.add("backgroundjobs", job_body("quota"))
    kube.deny_pods = 2
    r = await make(kube, clock)
    await settle(r)
    status = kube.objects["backgroundjobs", "ns", "quota"]["status"]
    assert (status["phase"], status["reason"]) == ("Enqueued", "PodCreateFailed")
    assert "denied by policy" in status["message"]
    first = r.wakeups.next_due()
    assert first is not None and (first - clock.now) <= timedelta(seconds=1.2)
    clock.now = first
    await settle(r)
    second = r.wakeups.next_due()
    assert second is not None and (second - clock.now) >= timedelta(seconds=1.6)
    clock.now = second
    await settle(r)
    assert phase(kube, "quota") == "Running"
    assert (Kind.JOB, "ns", "quota") not in r.failures


# ---------------------------------------------------------------- ghosts


async def test_a_job_deleted_while_the_watch_was_away_frees_its_slot_after_resync() -> None:
    kube, clock = FakeKube(), Clock()
    kube.add("jobqueues", queue_body("q", concurrency=1))
    kube.add("backgroundjobs", job_body("a", queue="q"))
    kube.add("backgroundjobs", job_body("b", queue="q"))
    kube.objects["backgroundjobs", "ns", "b"]["metadata"]["creationTimestamp"] = (
        "2026-11-21T10:00:01Z"
    )
    r = await make(kube, clock)
    await settle(r)
    assert (phase(kube, "a"), phase(kube, "b")) == ("Running", "Enqueued")
    # Deleted behind the watch's back: no DELETED event ever comes.
    del kube.objects["backgroundjobs", "ns", "a"]
    del kube.pods["ns", "a-1"]
    await settle(r)
    assert phase(kube, "b") == "Enqueued"
    await r.resync(Kind.JOB)
    await r.resync(None)
    await settle(r)
    assert phase(kube, "b") == "Running"
    assert ("ns", "a") not in r.store.jobs


def test_resync_keeps_objects_newer_than_the_list() -> None:
    from stoker.state import Store

    store = Store()
    for name, rv in (("old", "5"), ("new", "12")):
        store.put(
            Kind.JOB,
            {"metadata": {"namespace": "ns", "name": name, "uid": name, "resourceVersion": rv}},
        )
    assert store.resync(Kind.JOB, [], list_version=10) == [("ns", "old")]
    assert list(store.jobs) == [("ns", "new")]


# ---------------------------------------------------------------- pod names


async def test_a_pod_name_taken_by_an_orphan_of_an_earlier_job_uses_the_fallback_name() -> None:
    kube, clock = FakeKube(), Clock()
    orphan = {"metadata": {"name": "again-1", "namespace": "ns",
                           "labels": {"stoker.dev/job-uid": "uid-of-the-old-one"}}}  # fmt: skip
    kube.pods["ns", "again-1"] = orphan
    kube.add("backgroundjobs", job_body("again"))
    r = await make(kube, clock)
    await settle(r)
    assert phase(kube, "again") == "Running"
    [ours] = [n for (_, n) in kube.pods if n.startswith("again-1-")]
    assert ours == "again-1-uid-agai"
    assert kube.objects["backgroundjobs", "ns", "again"]["status"]["message"].endswith(ours)


# ---------------------------------------------------------------- queue templates


async def test_a_job_without_template_waits_until_its_queue_has_one() -> None:
    kube, clock = FakeKube(), Clock()
    queue = queue_body("work")
    kube.add("jobqueues", queue)
    bare = job_body("bare", queue="work", task={"name": "t", "args": {"x": 1}})
    del bare["spec"]["template"]
    kube.add("backgroundjobs", bare)
    r = await make(kube, clock)
    await settle(r)
    status = kube.objects["backgroundjobs", "ns", "bare"]["status"]
    assert (status["phase"], status["reason"]) == ("Enqueued", "NoPodTemplate")
    queue = kube.objects["jobqueues", "ns", "work"]
    queue["spec"] = {"template": {"spec": {"containers": [{"name": "main", "image": "q:1"}]}}}
    queue["metadata"]["generation"] = 2
    r.on_object(Kind.QUEUE, "MODIFIED", kube._bump(queue))
    await settle(r)
    assert phase(kube, "bare") == "Running"
    pod = kube.pods["ns", "bare-1"]
    assert pod["spec"]["containers"][0]["image"] == "q:1"
    assert "template" not in kube.objects["backgroundjobs", "ns", "bare"]["spec"]


# ---------------------------------------------------------------- start deadline


def pending(created: timedelta, unschedulable: str | None = None) -> PodView:
    return PodView(
        name="j-1", attempt=1, phase="Pending", created_at=T0 + created,
        unschedulable=unschedulable,
    )  # fmt: skip


def test_a_pod_that_cannot_be_scheduled_ends_its_attempt_at_the_jobs_timeout() -> None:
    view = job({"timeout": "20s", "retry": {"attempts": 1, "delays": ["5s"]}})
    from test_lifecycle import run

    running = run(view, 1)
    early = decide(running, [pending(timedelta(0), "0/2 nodes are available")], {}, T0)
    assert early.status.phase == "Running"
    assert early.wake_at == T0 + timedelta(seconds=20)
    now = T0 + timedelta(seconds=20)
    plan = decide(running, [pending(timedelta(0), "0/2 nodes are available")], {}, now)
    assert (plan.status.phase, plan.status.reason) == ("Scheduled", "Retrying")
    [rec] = plan.status.attempts
    assert (rec.result, rec.reason, rec.message) == (
        "Failed",
        "Unschedulable",
        "0/2 nodes are available",
    )
    assert plan.delete_pods == ["j-1"]
    assert "did not start in time (Unschedulable" in (plan.status.message or "")


def test_the_operator_wide_start_timeout_applies_when_the_job_has_no_timeout() -> None:
    from test_lifecycle import run

    running = run(job(), 1)
    now = T0 + timedelta(minutes=10)
    plan = decide(running, [pending(timedelta(0))], {}, now, start_timeout=timedelta(minutes=10))
    [rec] = plan.status.attempts
    assert rec.reason == "StartTimeout"
    assert decide(running, [pending(timedelta(0))], {}, now).status.phase == "Running"


def test_an_attempt_ended_by_its_start_deadline_deletes_a_pod_that_lingers() -> None:
    from test_lifecycle import run, with_status

    view = job({"timeout": "20s", "retry": {"attempts": 1, "delays": ["1h"]}})
    running = run(view, 1)
    now = T0 + timedelta(seconds=30)
    plan = decide(running, [pending(timedelta(0))], {}, now)
    again = decide(with_status(running, plan.status), [pending(timedelta(0))], {}, now)
    assert again.delete_pods == ["j-1"]
    assert again.status.phase == "Scheduled"
    assert len(again.status.attempts) == 1


def test_pod_view_reads_the_schedulers_verdict() -> None:
    pod = {
        "metadata": {"name": "j-1", "labels": {"stoker.dev/attempt": "1"},
                     "creationTimestamp": "2026-11-21T10:00:00Z"},
        "status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/2 nodes are available: 2 node(s) didn't match node selector."}]},
    }  # fmt: skip
    view = pod_view(pod)
    assert view.unschedulable == "0/2 nodes are available: 2 node(s) didn't match node selector."
    assert view.created_at == T0


# ---------------------------------------------------------------- the leader fence


def test_the_fence_allows_writes_only_within_the_renew_deadline() -> None:
    now = [100.0]
    fence = Fence(renew_deadline=10.0, clock=lambda: now[0])
    with pytest.raises(NotLeader):
        fence.check()  # not leading yet
    fence.renewed(100.0)
    fence.check()
    now[0] = 109.9
    fence.check()
    now[0] = 110.0
    assert fence.expired()
    with pytest.raises(NotLeader):
        fence.check()


async def test_a_write_after_the_renew_deadline_is_never_sent() -> None:
    from stoker.kube.api import Kube

    now = [0.0]
    fence = Fence(renew_deadline=3.0, clock=lambda: now[0])
    fence.renewed(0.0)
    kube = Kube.__new__(Kube)
    kube.limiter = type("Free", (), {"acquire": staticmethod(_free)})()
    kube.fence = fence
    sent: list[str] = []

    async def call() -> str:
        sent.append("x")
        return "x"

    assert await kube._write("patch", "pods", call) == "x"
    now[0] = 3.5
    with pytest.raises(NotLeader):
        await kube._write("patch", "pods", call)
    assert sent == ["x"]


async def _free() -> None:
    return None


# ---------------------------------------------------------------- health


async def test_the_loop_reports_a_stall_when_no_pass_completes() -> None:
    kube, clock = FakeKube(), Clock()
    ticks = [0.0]
    r = await make(kube, clock, stall_after=timedelta(seconds=60))
    r.monotonic = lambda: ticks[0]
    r.heartbeat = 0.0
    ticks[0] = 59.0
    assert not r.stalled()
    ticks[0] = 61.0
    assert r.stalled()
    kube.add("backgroundjobs", job_body("x"))
    r.mark((Kind.JOB, "ns", "x"))
    await settle(r)
    assert not r.stalled()


async def test_no_pod_is_created_for_a_ghost_while_a_relist_is_resynced() -> None:
    """The queue's relist (it was resumed) may arrive before the jobs' relist drops a job
    deleted behind the watch's back: dispatch waits for the resync of every kind."""
    kube, clock = FakeKube(), Clock()
    queue = queue_body("q", suspend=True)
    kube.add("jobqueues", queue)
    kube.add("backgroundjobs", job_body("ghost", queue="q"))
    r = await make(kube, clock)
    await settle(r)
    assert kube.objects["backgroundjobs", "ns", "ghost"]["status"]["reason"] == "QueueSuspended"
    # While the watch is away: the job is deleted, the queue resumed.
    del kube.objects["backgroundjobs", "ns", "ghost"]
    queue = kube.objects["jobqueues", "ns", "q"]
    queue["spec"] = {"suspend": False}
    queue["metadata"]["generation"] = 2
    r.listed.add(("jobqueues", None))  # the watch had listed queues before
    r.on_object(Kind.QUEUE, None, kube._bump(queue))  # the queue's relist comes first
    await settle(r)
    assert ("ns", "ghost-1") not in kube.pods
    await r._resync_all()
    await settle(r)
    assert ("ns", "ghost-1") not in kube.pods
    assert ("ns", "ghost") not in r.store.jobs
    # Dispatch works again after the resync.
    r.on_object(Kind.JOB, "ADDED", kube.add("backgroundjobs", job_body("real", queue="q")))
    await settle(r)
    assert phase(kube, "real") == "Running"


async def test_the_watchs_first_listing_after_the_loops_own_is_no_relist() -> None:
    """kopf lists a kind once after the loop's startup list: no pause, no resync for that."""
    kube, clock = FakeKube(), Clock()
    kube.add("jobqueues", queue_body("q"))
    r = await make(kube, clock)
    listed = copy.deepcopy(kube.objects["jobqueues", "ns", "q"])
    r.on_object(Kind.QUEUE, None, listed)
    assert not r.jobs.paused
    r.listed.add(("jobqueues", None))  # that listing completed
    r.on_object(Kind.QUEUE, None, copy.deepcopy(listed))
    assert r.jobs.paused


async def test_events_for_an_object_in_backoff_wait_for_its_wake_up() -> None:
    kube, clock = FlakyKube(), Clock()
    kube.add("jobqueues", queue_body("q"))
    kube.deny.add(("jobqueues", "q"))
    r = await make(kube, clock)
    await settle(r)
    denied_writes = kube.writes.count(("denied", "jobqueues/status"))
    # New events and the once-a-second figures do not retry it before its backoff passes.
    for _ in range(5):
        r.mark((Kind.QUEUE, "ns", "q"))
        clock.now += timedelta(milliseconds=100)
        await settle(r)
    assert kube.writes.count(("denied", "jobqueues/status")) == denied_writes
    clock.now = r.wakeups.next_due() or clock.now
    await settle(r)
    assert kube.writes.count(("denied", "jobqueues/status")) == denied_writes + 1


async def test_the_loop_dispatches_after_a_resync_without_any_new_event() -> None:
    """A job that became ready while pod creation was paused starts once the resync is done,
    though no event marks any object then."""
    import asyncio
    import contextlib

    kube, clock = FakeKube(), Clock()
    r = await make(kube, clock)
    r.jobs.paused = True
    r.on_object(Kind.JOB, "ADDED", kube.add("backgroundjobs", job_body("waits")))
    await settle(r)
    assert ("ns", "waits-1") not in kube.pods
    await r._resync_all()
    assert not r.dirty
    loop_task = asyncio.create_task(r.run())
    try:
        for _ in range(100):
            await asyncio.sleep(0.01)
            if ("ns", "waits-1") in kube.pods:
                break
        assert ("ns", "waits-1") in kube.pods
    finally:
        loop_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop_task


async def test_a_relist_that_begins_during_a_resync_keeps_the_pause() -> None:
    kube, clock = FakeKube(), Clock()
    r = await make(kube, clock)
    r.relisting()
    original = kube.list_all
    calls = 0

    async def list_all(plural: str, label_selector: str = "", each: Any = None) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            r.relisting()  # another watch starts listing while this resync runs
        return await original(plural, label_selector, each)

    kube.list_all = list_all  # type: ignore[method-assign]
    await r._resync_all()
    assert r.jobs.paused
    await r._resync_all()
    assert not r.jobs.paused


class DeletionDenied(FakeKube):
    def __init__(self) -> None:
        super().__init__()
        self.deny_delete = True

    async def delete_object(
        self, plural: str, namespace: str, name: str, uid: str | None = None
    ) -> None:
        if self.deny_delete:
            self.writes.append(("denied", f"delete {plural}"))
            raise denied(403)
        await super().delete_object(plural, namespace, name, uid)


async def test_a_refused_ttl_deletion_backs_off_growing_and_succeeds_after_the_lift() -> None:
    kube, clock = DeletionDenied(), Clock()
    kube.limiter = limiter = GatedLimiter()
    kube.add("backgroundjobs", job_body("done", ttlAfterFinished="1s"))
    r = await make(kube, clock)
    await settle(r)
    r.on_pod("MODIFIED", kube.finish_pod("ns", "done-1"))
    await settle(r)
    assert phase(kube, "done") == "Succeeded"
    key = (Kind.JOB, "ns", "done")
    clock.now += timedelta(seconds=5)  # past finishedAt (the pod's, T0 + 2 s) + 1 s
    await settle(r)
    clock.now = r._backoff_until[key]
    await settle(r)
    assert kube.writes.count(("denied", "delete backgroundjobs")) == 2
    assert r._backoff_until[key] - clock.now > timedelta(seconds=1.5)  # the backoff grows

    # Due again: its deletion waits for a token while an event comes; the work gives way,
    # and the event's pass finds the job still in backoff.
    clock.now = r._backoff_until[key]
    limiter.gate.clear()
    keys, r.dirty = set(r.wakeups.pop_due(clock.now)), set()
    await r.step(keys, wait=False)
    r.mark(key)
    await r.step(set(r.dirty), wait=False)
    r.dirty = set()
    limiter.gate.set()
    await r.drain()
    await settle(r)
    kube.deny_delete = False
    clock.now += timedelta(minutes=10)
    await settle(r)
    assert ("backgroundjobs", "ns", "done") not in kube.objects


async def test_an_object_woken_a_moment_before_its_backoff_ends_is_retried_all_the_same() -> None:
    """Its wake-up and its backoff's end are two readings of the clock: woken between them,
    the object is held back, and must still come back when the backoff ends."""
    kube, clock = FlakyKube(), Clock()
    kube.add("jobqueues", queue_body("q"))
    kube.deny.add(("jobqueues", "q"))
    r = await make(kube, clock)
    await settle(r)
    key = (Kind.QUEUE, "ns", "q")
    due = r._backoff_until[key]
    r._backoff_until[key] = due + timedelta(microseconds=5)
    clock.now = due
    await settle(r)  # woken at `due`: still held back
    kube.deny.clear()
    clock.now = due + timedelta(seconds=1)
    await settle(r)
    assert "status" in kube.objects["jobqueues", "ns", "q"]


async def test_a_released_lease_is_never_renewed_again() -> None:
    """After release() (SIGTERM), a renewal attempt on the election's thread must not put our
    name back on the Lease, nor make this replica a leader again."""
    from stoker.kube import leader

    fence = Fence(renew_deadline=10.0)
    election = leader._Election.__new__(leader._Election)
    election.fence, election.timeout = fence, 1.0
    leader._released.set()
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(election.try_acquire_or_renew(), 0.2)
        assert not fence.leading
    finally:
        leader._released.clear()
