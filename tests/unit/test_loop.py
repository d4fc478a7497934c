"""The reconcile loop and its handlers against an in-memory API: no cluster, the clock injected."""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from stoker.kube.api import Listing, RateLimiter, prepaid
from stoker.loop import Loop
from stoker.settings import Settings
from stoker.state import Kind

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


class FakeKube:
    """Just enough of stoker.kube.api.Kube: objects in dicts, resourceVersions counting up."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.events: list[tuple[str, str]] = []
        self.writes: list[tuple[str, str]] = []
        self._rv = itertools.count(1)
        self.limiter = RateLimiter(1e6, 10**6)  # no wait unless a test gates it

    async def _spend(self) -> None:
        """A write's token, as Kube._write takes it (prepaid by Loop.send, or from the limiter)."""
        if prepaid.get():
            prepaid.set(False)
        else:
            await self.limiter.acquire()

    def _bump(self, body: dict[str, Any]) -> dict[str, Any]:
        body["metadata"]["resourceVersion"] = str(next(self._rv))
        return copy.deepcopy(body)

    def add(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        meta.setdefault("uid", f"uid-{meta['name']}")
        meta.setdefault("creationTimestamp", "2026-11-21T10:00:00Z")
        meta.setdefault("generation", 1)
        self.objects[plural, meta["namespace"], meta["name"]] = body
        return self._bump(body)

    async def list_all(
        self, plural: str, label_selector: str = "", each: Callable[[Any], object] | None = None
    ) -> Listing:
        listing = Listing()
        source = (
            self.pods.values()
            if plural == "pods"
            else [body for (p, _, _), body in self.objects.items() if p == plural]
        )
        listing.items = [copy.deepcopy(body) for body in source]
        if each is not None:
            for body in listing.items:
                each(body)
            listing.items = []
        listing.version = next(self._rv)
        return listing

    async def patch_status(
        self, plural: str, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        await self._spend()
        self.writes.append(("patch", f"{plural}/status"))
        body = self.objects.get((plural, namespace, name))
        if body is None:
            return None
        merged = {**(body.get("status") or {}), **status}
        body["status"] = {k: v for k, v in merged.items() if v is not None}
        return self._bump(body)

    async def create_pod(
        self, namespace: str, body: Mapping[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        await self._spend()
        self.writes.append(("create", "pods"))
        key = (namespace, body["metadata"]["name"])
        if key in self.pods:
            return copy.deepcopy(self.pods[key]), False
        pod = copy.deepcopy(dict(body))
        pod["status"] = {"phase": "Pending"}
        self.pods[key] = pod
        return self._bump(pod), True

    async def create_object(self, plural: str, namespace: str, body: Mapping[str, Any]) -> bool:
        await self._spend()
        self.writes.append(("create", plural))
        if (plural, namespace, body["metadata"]["name"]) in self.objects:
            return False
        self.add(plural, copy.deepcopy(dict(body)))
        return True

    async def delete_object(
        self, plural: str, namespace: str, name: str, uid: str | None = None
    ) -> None:
        await self._spend()
        self.writes.append(("delete", plural))
        self.objects.pop((plural, namespace, name), None)

    async def post_event(
        self, involved: Mapping[str, Any], type_: str, reason: str, message: str, now_text: str
    ) -> None:
        await self._spend()
        self.writes.append(("create", "events"))
        self.events.append((involved["metadata"]["name"], reason))

    async def delete_pod(self, namespace: str, name: str, uid: str) -> None:
        await self._spend()
        self.writes.append(("delete", "pods"))
        self.pods.pop((namespace, name), None)

    def finish_pod(self, namespace: str, name: str, exit_code: int = 0) -> dict[str, Any]:
        pod = self.pods[namespace, name]
        pod["status"] = {
            "phase": "Succeeded" if exit_code == 0 else "Failed",
            "containerStatuses": [
                {
                    "state": {
                        "terminated": {
                            "exitCode": exit_code,
                            "startedAt": "2026-11-21T10:00:00Z",
                            "finishedAt": "2026-11-21T10:00:02Z",
                        }
                    }
                }
            ],
        }
        return self._bump(pod)


def job(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "stoker.dev/v1alpha1",
        "kind": "BackgroundJob",
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"template": {"spec": {"containers": [{"name": "main", "image": "x"}]}}, **spec},
    }


def queue_body(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "stoker.dev/v1alpha1",
        "kind": "JobQueue",
        "metadata": {"name": name, "namespace": "ns"},
        "spec": spec,
    }


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


async def settle(r: Loop, passes: int = 5) -> None:
    """Run passes over whatever is dirty or due, as the loop would."""
    for _ in range(passes):
        keys = r.dirty | set(r.wakeups.pop_due(r.clock()))
        r.dirty = set()
        if not keys:
            return
        await r.step(keys)


def phase(kube: FakeKube, name: str) -> str | None:
    return (kube.objects["backgroundjobs", "ns", name].get("status") or {}).get("phase")


async def make(kube: FakeKube, clock: Clock, **settings: Any) -> Loop:
    """A primed loop. Its starts are written at once unless a test sets start_write_delay
    (tests of other behaviour need not step the clock past it)."""
    settings.setdefault("start_write_delay", timedelta(0))
    r = Loop(kube, Settings(**settings), clock)  # type: ignore[arg-type]
    await r.prime()
    return r


async def test_our_own_final_write_wakes_the_continuation() -> None:
    """The watch event for our own status write is not newer than what we stored from the
    write's answer, so it is dropped; the continuation must be woken by the write itself."""
    kube, clock = FakeKube(), Clock()
    kube.add("backgroundjobs", job("parent"))
    kube.add("backgroundjobs", job("child", after=[{"name": "parent"}]))
    r = await make(kube, clock)
    await settle(r)
    assert (phase(kube, "parent"), phase(kube, "child")) == ("Running", "Awaiting")

    r.on_pod("MODIFIED", kube.finish_pod("ns", "parent-1"))
    await settle(r)
    assert phase(kube, "parent") == "Succeeded"
    assert phase(kube, "child") == "Running"
    assert ("ns", "child-1") in kube.pods


async def test_a_ready_job_goes_straight_to_running_in_two_writes() -> None:
    kube, clock = FakeKube(), Clock()
    kube.add("backgroundjobs", job("one"))
    r = await make(kube, clock)
    await settle(r)
    assert kube.writes == [("create", "pods"), ("patch", "backgroundjobs/status")]


async def test_a_pod_that_ends_within_the_start_write_delay_costs_one_status_write() -> None:
    kube, clock = FakeKube(), Clock()
    kube.add("backgroundjobs", job("quick"))
    r = await make(kube, clock, start_write_delay=timedelta(seconds=1))
    await settle(r)
    assert kube.writes == [("create", "pods")]  # the start waits for the delay
    assert r.jobs.running  # its slot is taken all the same
    clock.now = T0 + timedelta(milliseconds=400)
    r.on_pod("MODIFIED", kube.finish_pod("ns", "quick-1"))
    await settle(r)
    assert kube.writes == [
        ("create", "pods"), ("patch", "backgroundjobs/status"), ("create", "events")
    ]  # fmt: skip
    status = kube.objects["backgroundjobs", "ns", "quick"]["status"]
    assert (status["phase"], status["startedAt"]) == ("Succeeded", "2026-11-21T10:00:00Z")


async def test_a_pod_still_running_after_the_start_write_delay_gets_its_running_status() -> None:
    kube, clock = FakeKube(), Clock()
    kube.add("backgroundjobs", job("slow"))
    r = await make(kube, clock, start_write_delay=timedelta(seconds=1))
    await settle(r)
    clock.now = T0 + timedelta(milliseconds=999)
    await settle(r)
    assert phase(kube, "slow") is None
    clock.now = T0 + timedelta(seconds=1)
    await settle(r)
    assert phase(kube, "slow") == "Running"
    assert kube.writes == [("create", "pods"), ("patch", "backgroundjobs/status")]


class GatedLimiter(RateLimiter):
    """A limiter whose tokens wait while the gate is shut: a busy write budget."""

    def __init__(self) -> None:
        super().__init__(1e6, 10**6)
        self.gate = asyncio.Event()
        self.gate.set()

    async def acquire(self) -> None:
        await self.gate.wait()
        await super().acquire()


async def test_a_pod_that_ends_while_its_start_waits_for_a_token_costs_one_status_write() -> None:
    kube, clock = FakeKube(), Clock()
    kube.limiter = limiter = GatedLimiter()
    kube.add("backgroundjobs", job("quick"))
    r = await make(kube, clock)
    await r.step(r.dirty)  # dispatch: the pod is created, the job to be decided again
    assert kube.writes == [("create", "pods")] and r.dirty

    limiter.gate.clear()
    keys, r.dirty = r.dirty, set()
    await r.step(keys, wait=False)  # the start is decided; its write waits for a token
    r.on_pod("MODIFIED", kube.finish_pod("ns", "quick-1"))
    keys, r.dirty = r.dirty, set()
    await r.step(keys, wait=False)  # the pod's end: the job has a write in flight, deferred
    limiter.gate.set()
    await r.drain()  # the start's write gives way to the newer decision
    await settle(r)

    assert kube.writes == [
        ("create", "pods"),
        ("patch", "backgroundjobs/status"),
        ("create", "events"),
    ]
    status = kube.objects["backgroundjobs", "ns", "quick"]["status"]
    assert status["phase"] == "Succeeded"
    assert status["startedAt"] == "2026-11-21T10:00:00Z"
    assert [(a["attempt"], a["result"]) for a in status["attempts"]] == [(1, "Succeeded")]


async def test_the_token_of_a_superseded_write_goes_back_to_the_limiter() -> None:
    limiter = RateLimiter(qps=0.001, burst=2)
    await limiter.acquire()
    limiter.refund()
    await limiter.acquire()
    await asyncio.wait_for(limiter.acquire(), 1)  # the second token of the burst is still there
    limiter.refund()
    limiter.refund()
    assert limiter._tokens <= limiter.burst


async def test_retry_delay_wakes_the_job_from_the_heap() -> None:
    kube, clock = FakeKube(), Clock()
    kube.add("backgroundjobs", job("flaky", retry={"attempts": 1, "delays": ["30s"]}))
    r = await make(kube, clock)
    await settle(r)
    r.on_pod("MODIFIED", kube.finish_pod("ns", "flaky-1", exit_code=1))
    await settle(r)
    assert phase(kube, "flaky") == "Scheduled"
    assert ("ns", "flaky-2") not in kube.pods
    clock.now = T0 + timedelta(seconds=29)
    await settle(r)
    assert ("ns", "flaky-2") not in kube.pods
    clock.now = T0 + timedelta(seconds=33)
    await settle(r)
    assert ("ns", "flaky-2") in kube.pods and phase(kube, "flaky") == "Running"


async def test_queue_limit_starts_the_next_job_when_a_slot_frees() -> None:
    kube, clock = FakeKube(), Clock()
    kube.add(
        "jobqueues",
        queue_body("q", concurrency=1),
    )
    kube.add("backgroundjobs", job("a", queue="q"))
    clock.now = T0 + timedelta(seconds=1)
    kube.add("backgroundjobs", job("b", queue="q"))
    kube.objects["backgroundjobs", "ns", "b"]["metadata"]["creationTimestamp"] = (
        "2026-11-21T10:00:01Z"
    )
    r = await make(kube, clock)
    await settle(r)
    assert (phase(kube, "a"), phase(kube, "b")) == ("Running", "Enqueued")
    assert kube.objects["backgroundjobs", "ns", "b"]["status"]["reason"] == "QueueFull"
    r.on_pod("MODIFIED", kube.finish_pod("ns", "a-1"))
    await settle(r)
    assert (phase(kube, "a"), phase(kube, "b")) == ("Succeeded", "Running")


async def test_zero_figures_are_written_to_queue_status() -> None:
    kube, clock = FakeKube(), Clock()
    kube.add(
        "jobqueues",
        queue_body("q"),
    )
    r = await make(kube, clock)
    await settle(r)
    status = kube.objects["jobqueues", "ns", "q"]["status"]
    assert (status["enqueued"], status["running"]) == (0, 0)
    assert status["conditions"][0]["type"] == "Active"


async def test_a_waiting_job_still_reports_a_spec_change() -> None:
    kube, clock = FakeKube(), Clock()
    queue = queue_body("q", concurrency=1)
    kube.add("jobqueues", queue)
    kube.add("backgroundjobs", job("a", queue="q"))
    kube.add("backgroundjobs", job("b", queue="q"))
    kube.objects["backgroundjobs", "ns", "b"]["metadata"]["creationTimestamp"] = (
        "2026-11-21T10:00:01Z"
    )
    r = await make(kube, clock)
    await settle(r)
    assert kube.objects["backgroundjobs", "ns", "b"]["status"]["reason"] == "QueueFull"

    b = kube.objects["backgroundjobs", "ns", "b"]
    b["spec"]["priority"] = 5
    b["metadata"]["generation"] = 2
    r.on_object(Kind.JOB, "MODIFIED", kube._bump(b))
    await settle(r)
    status = kube.objects["backgroundjobs", "ns", "b"]["status"]
    assert (status["reason"], status["observedGeneration"]) == ("QueueFull", 2)


class CountingLimiter(RateLimiter):
    def __init__(self) -> None:
        super().__init__(1e6, 10**6)
        self.taken = 0

    async def acquire(self) -> None:
        self.taken += 1
        await super().acquire()

    def refund(self) -> None:
        self.taken -= 1
        super().refund()


async def test_a_decision_that_writes_nothing_spends_no_token() -> None:
    kube, clock = FakeKube(), Clock()
    kube.limiter = limiter = CountingLimiter()
    kube.add("backgroundjobs", job("held", startAfter="1h"))
    r = await make(kube, clock)
    for _ in range(4):  # decided again and again: Scheduled once, then nothing changes
        r.mark((Kind.JOB, "ns", "held"))
        await settle(r)
    assert phase(kube, "held") == "Scheduled"
    assert limiter.taken == len(kube.writes) == 1
