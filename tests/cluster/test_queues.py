"""JobQueue: concurrency limits, dispatch order, suspend, late queues, live changes, metrics.

How "never more than N at once" is checked: a watch (started before the first object is
created) records every change to the namespace's pods and jobs in the API server's own
order (resourceVersion order), so replaying it walks through every state the namespace
passed through, not samples of it. A new pod is created only after the operator saw the
pod it replaces terminate, so a replayed count of pods not yet Succeeded/Failed is exactly
the number of slots in use. The attempts' startedAt/finishedAt intervals give an
independent second check.

The operator-wide limit (maxRunning) needs an operator started with STOKER_MAX_RUNNING: those
tests are in test_queues_max_running.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from jobs_api import Jobs, job_spec
from kubernetes.watch.watch import iter_resp_lines
from prometheus_client.parser import text_string_to_metric_families

from harness import wait_for
from operator_process import GROUP, VERSION, Operator

TERMINAL = frozenset({"Succeeded", "Failed"})
Obj = dict[str, Any]


# ---------------------------------------------------------------- watching a namespace


@dataclass(frozen=True)
class Change:
    type: str  # ADDED | MODIFIED | DELETED
    obj: Obj
    seen: float  # time.monotonic() when the event arrived


class History:
    """Every change to one kind of object in one namespace, in the API server's order."""

    def __init__(self, lister: Callable[..., Any]) -> None:
        self._list = lister
        first = json.loads(lister(_preload_content=False).data)
        self.initial: dict[str, Obj] = {o["metadata"]["name"]: o for o in first["items"]}
        self._rv: str = first["metadata"]["resourceVersion"]
        self._changes: list[Change] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @classmethod
    def pods(cls, jobs: Jobs) -> History:
        return cls(
            lambda **kw: jobs.core.list_namespaced_pod(
                jobs.namespace, label_selector="stoker.dev/job-name", **kw
            )
        )

    @classmethod
    def jobs(cls, jobs: Jobs) -> History:
        return cls(
            lambda **kw: jobs.api.list_namespaced_custom_object(
                GROUP, VERSION, jobs.namespace, "backgroundjobs", **kw
            )
        )

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                # Short server-side timeouts so that stop() returns soon; each new watch
                # resumes from the last resourceVersion, so nothing is missed in between.
                resp = self._list(
                    watch=True,
                    resource_version=self._rv,
                    timeout_seconds=1,
                    allow_watch_bookmarks=True,
                    _preload_content=False,
                )
                try:
                    for line in iter_resp_lines(resp):
                        event = json.loads(line)
                        obj = event["object"]
                        if event["type"] == "ERROR":
                            raise RuntimeError(f"watch failed: {obj}")
                        self._rv = obj["metadata"]["resourceVersion"]
                        if event["type"] != "BOOKMARK":
                            with self._lock:
                                self._changes.append(Change(event["type"], obj, time.monotonic()))
                finally:
                    resp.release_conn()
        except BaseException as e:  # reported by changes()/stop() in the test's thread
            self._error = e

    def changes(self) -> list[Change]:
        if self._error is not None:
            raise AssertionError("the watch broke") from self._error
        with self._lock:
            return list(self._changes)

    def stop(self) -> list[Change]:
        self._stopping.set()
        self._thread.join(15)
        return self.changes()

    def states(self) -> Iterable[tuple[Change, Obj]]:
        """(change, the namespace's objects by name right after it), for every change; the
        dict is updated in place, so read it before taking the next pair."""
        now = dict(self.initial)
        for change in self.changes():
            name = change.obj["metadata"]["name"]
            if change.type == "DELETED":
                now.pop(name, None)
            else:
                now[name] = change.obj
            yield change, now

    def latest(self) -> dict[str, Obj]:
        now = dict(self.initial)
        for _, now in self.states():  # noqa: B007  (each pair holds the same, updated dict)
            pass
        return now


def live(pod: Obj) -> bool:
    """A pod that holds a slot: created and not yet Succeeded or Failed."""
    return (pod.get("status") or {}).get("phase") not in TERMINAL


def job_of(pod: Obj) -> str:
    return str(pod["metadata"]["labels"]["stoker.dev/job-name"])


def phase(job: Obj) -> str | None:
    return (job.get("status") or {}).get("phase")


def max_live_pods(history: History, jobs: Iterable[str] | None = None) -> int:
    wanted = None if jobs is None else set(jobs)
    return max(
        (
            sum(1 for p in now.values() if live(p) and (wanted is None or job_of(p) in wanted))
            for _, now in history.states()
        ),
        default=0,
    )


def current_live(history: History) -> int:
    """Live pods in the latest state the watch has delivered."""
    return sum(1 for p in history.latest().values() if live(p))


def max_running_jobs(history: History) -> int:
    return max(
        (sum(1 for j in now.values() if phase(j) == "Running") for _, now in history.states()),
        default=0,
    )


def pod_creation_order(history: History) -> list[str]:
    """Job names in the order their pods were created."""
    return [job_of(c.obj) for c in history.changes() if c.type == "ADDED"]


def reasons_seen(history: History, job: str) -> list[tuple[str | None, str | None]]:
    """The (phase, reason) pairs `job` went through, in order, without repeats."""
    seen: list[tuple[str | None, str | None]] = []
    for c in history.changes():
        if c.obj["metadata"]["name"] == job and c.type != "DELETED":
            status = c.obj.get("status") or {}
            pair = (status.get("phase"), status.get("reason"))
            if not seen or seen[-1] != pair:
                seen.append(pair)
    return seen


# ---------------------------------------------------------------- small helpers


def ts(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def max_overlap(intervals: Iterable[tuple[datetime, datetime]]) -> int:
    """Most half-open [start, finish) intervals covering one instant.

    With second-precision timestamps (truncated), the count at a whole second t equals the
    true count just before t+1s, so a truly respected limit is never reported broken."""
    points: Counter[datetime] = Counter()
    for start, finish in intervals:
        if finish > start:
            points[start] += 1
            points[finish] -= 1
    running = best = 0
    for at in sorted(points):  # a finish and a start in the same second cancel out
        running += points[at]
        best = max(best, running)
    return best


def attempt_intervals(jobs: Jobs, names: Iterable[str]) -> list[tuple[datetime, datetime]]:
    intervals = []
    for name in names:
        for a in jobs.status(name)["attempts"]:
            intervals.append((ts(a["startedAt"]), ts(a["finishedAt"])))
    return intervals


def create_queue(jobs: Jobs, name: str, **spec: Any) -> Obj:
    return jobs.create(name, spec, kind="JobQueue", plural="jobqueues")


def patch_queue(jobs: Jobs, name: str, **spec: Any) -> None:
    jobs.patch_spec(name, spec, plural="jobqueues")


def queue_status(jobs: Jobs, name: str) -> Obj:
    return jobs.status(name, plural="jobqueues")


def after_this_second(created: Obj) -> None:
    """Sleep until the API server's clock (ours: same machine) has moved past the second of
    `created`'s creationTimestamp, so the next object is enqueued strictly later."""
    at = ts(created["metadata"]["creationTimestamp"]) + timedelta(seconds=1, milliseconds=50)
    time.sleep(max(0.0, (at - datetime.now(UTC)).total_seconds()))


def wait_enqueued(jobs: Jobs, names: Iterable[str], reason: str, timeout: float = 30) -> None:
    for name in names:

        def waiting(name: str = name) -> bool:
            status = jobs.status(name)
            return (status.get("phase"), status.get("reason")) == ("Enqueued", reason)

        jobs.wait(waiting, timeout, f"{name} Enqueued with reason {reason}")


def wait_succeeded(jobs: Jobs, names: Iterable[str], timeout: float = 90) -> dict[str, Obj]:
    return {name: jobs.wait_phase(name, "Succeeded", timeout) for name in names}


def condition(obj_status: Obj, kind: str) -> Obj:
    (found,) = [c for c in obj_status.get("conditions") or [] if c["type"] == kind]
    return found


# ---------------------------------------------------------------- tests


def test_a_queue_runs_at_most_concurrency_jobs_at_once_in_fifo_order(jobs: Jobs) -> None:
    # Suspended while the jobs arrive, so that all ten wait together and order matters.
    create_queue(jobs, "workers", concurrency=2, suspend=True)
    pods, bgjs = History.pods(jobs), History.jobs(jobs)
    # Created one second apart (creationTimestamp has 1 s precision) and named in reverse:
    # neither name order nor a tie can pass for FIFO.
    names = [f"w{9 - i}" for i in range(10)]
    created = []
    for name in names:
        created.append(jobs.create(name, job_spec(sim={"duration": "2s"}, queue="workers")))
        if name != names[-1]:
            after_this_second(created[-1])
    stamps = [ts(c["metadata"]["creationTimestamp"]) for c in created]
    assert stamps == sorted(set(stamps)), "precondition: distinct creation seconds"
    wait_enqueued(jobs, names, "QueueSuspended")

    patch_queue(jobs, "workers", suspend=False)
    statuses = wait_succeeded(jobs, names)
    pods.stop()
    bgjs.stop()

    assert max_live_pods(pods) == 2, "at most 2 at once, and the limit was used"
    assert max_running_jobs(bgjs) == 2
    assert max_overlap(attempt_intervals(jobs, names)) <= 2
    assert all(len(s["attempts"]) == 1 for s in statuses.values())
    # FIFO: a job never starts in a later pass than one created after it.
    started = [ts(statuses[n]["startedAt"]) for n in names]
    assert started == sorted(started), list(zip(names, started, strict=True))
    assert set(pod_creation_order(pods)[:2]) == set(names[:2])
    # Waiting jobs said why.
    assert ("Enqueued", "QueueFull") in reasons_seen(bgjs, names[-1])


def test_higher_priority_jobs_start_first_within_a_queue(jobs: Jobs) -> None:
    create_queue(jobs, "serial", concurrency=1)
    pods = History.pods(jobs)
    jobs.create("first", job_spec(sim={"duration": "8s"}, queue="serial"))
    jobs.wait_phase("first", "Running")
    # The low-priority jobs are older and their names sort first: only priority puts the
    # high ones ahead.
    low = jobs.create("a-low-1", job_spec(sim={"duration": "1s"}, queue="serial"))
    jobs.create("a-low-2", job_spec(sim={"duration": "1s"}, queue="serial"))
    after_this_second(low)
    for name in ("b-high-1", "b-high-2"):
        jobs.create(name, job_spec(sim={"duration": "1s"}, queue="serial", priority=10))
    wait_enqueued(jobs, ["a-low-1", "a-low-2", "b-high-1", "b-high-2"], "QueueFull")
    assert jobs.status("first")["phase"] == "Running", "precondition: all four waited together"

    wait_succeeded(jobs, ["first", "a-low-1", "a-low-2", "b-high-1", "b-high-2"])
    pods.stop()
    # Concurrency 1: each pod is created after the previous one ended, so the order is exact.
    assert pod_creation_order(pods) == ["first", "b-high-1", "b-high-2", "a-low-1", "a-low-2"]
    assert max_live_pods(pods) == 1


def test_a_suspended_queue_starts_nothing_until_resumed(jobs: Jobs) -> None:
    create_queue(jobs, "paused", concurrency=2, suspend=True)
    bgjs = History.jobs(jobs)
    names = ["p1", "p2", "p3"]
    created = [jobs.create(n, job_spec(sim={"duration": "6s"}, queue="paused")) for n in names]
    wait_enqueued(jobs, names, "QueueSuspended")

    def figures(enqueued: int, running: int) -> Obj | None:
        status = queue_status(jobs, "paused")
        shown = (status.get("enqueued"), status.get("running"))
        return status if shown == (enqueued, running) else None

    status = jobs.wait(lambda: figures(3, 0), 30, "queue status enqueued 3, running 0")
    oldest = min(c["metadata"]["creationTimestamp"] for c in created)
    assert status["oldestEnqueuedAt"] == oldest
    active = condition(status, "Active")
    assert (active["status"], active["reason"]) == ("False", "Suspended")
    time.sleep(3)  # the operator had every chance to start something by now
    assert jobs.pods() == []
    assert {jobs.status(n)["reason"] for n in names} == {"QueueSuspended"}

    patch_queue(jobs, "paused", suspend=False)
    status = jobs.wait(lambda: figures(1, 2), 30, "queue status enqueued 1, running 2")
    assert condition(status, "Active")["status"] == "True"

    def two_running() -> list[str] | None:
        # A job's Running status may follow its slot by up to startWriteDelay (1 s).
        shown = sorted(n for n in names if jobs.status(n)["phase"] == "Running")
        return shown if len(shown) == 2 else None

    running = jobs.wait(two_running, 10, "two of the jobs Running")
    (waiting,) = set(names) - set(running)

    # Suspended again while two run: they finish, the third does not start.
    patch_queue(jobs, "paused", suspend=True)
    wait_succeeded(jobs, running)
    wait_enqueued(jobs, [waiting], "QueueSuspended")
    time.sleep(2)
    assert jobs.pods(waiting) == []

    patch_queue(jobs, "paused", suspend=False)
    wait_succeeded(jobs, [waiting])
    status = jobs.wait(lambda: figures(0, 0), 30, "queue status enqueued 0, running 0")
    assert "oldestEnqueuedAt" not in status
    assert condition(status, "Active")["status"] == "True"
    bgjs.stop()
    assert all(len(jobs.status(n)["attempts"]) == 1 for n in names)


def test_jobs_wait_for_a_queue_created_after_them(jobs: Jobs) -> None:
    names = ["early-1", "early-2"]
    for name in names:
        jobs.create(name, job_spec(queue="late"))
    wait_enqueued(jobs, names, "QueueNotFound")
    assert "late" in jobs.status(names[0])["message"]
    time.sleep(2)
    assert jobs.pods() == []

    create_queue(jobs, "late", concurrency=1)
    statuses = wait_succeeded(jobs, names)
    assert all(s["attempts"][0]["result"] == "Succeeded" for s in statuses.values())

    # The Active condition follows spec.suspend on an idle queue too, where no figure changes.
    def active() -> tuple[str, str] | None:
        found = [
            c for c in queue_status(jobs, "late").get("conditions") or [] if c["type"] == "Active"
        ]
        return (found[0]["status"], found[0]["reason"]) if found else None

    jobs.wait(lambda: active() == ("True", "Dispatching"), 30, "Active True")
    patch_queue(jobs, "late", suspend=True)
    jobs.wait(lambda: active() == ("False", "Suspended"), 30, "Active False, reason Suspended")
    assert queue_status(jobs, "late")["observedGeneration"] == 2


def test_concurrency_changed_live(jobs: Jobs) -> None:
    create_queue(jobs, "elastic", concurrency=1)
    pods = History.pods(jobs)
    names = ["e1", "e2", "e3", "e4"]
    for name in names:
        jobs.create(name, job_spec(sim={"duration": "6s"}, queue="elastic"))
    jobs.wait_phase("e1", "Running")
    wait_enqueued(jobs, names[1:], "QueueFull")

    patch_queue(jobs, "elastic", concurrency=3)
    wait_for(
        lambda: sum(1 for n in names if jobs.status(n).get("phase") == "Running") == 3,
        30,
        description="three Running after raising concurrency to 3",
    )
    # The watch has delivered the three creations: whatever it records from here on
    # happened after the lowering.
    jobs.wait(lambda: current_live(pods) == 3, 30, "the watch to see three live pods")
    patch_queue(jobs, "elastic", concurrency=1)
    lowered = len(pods.changes())
    statuses = wait_succeeded(jobs, names)
    pods.stop()

    assert max_live_pods(pods) == 3, "raising let three run at once"
    # After lowering to 1: the next pod was created only once all three had ended.
    live_at_creation = [
        (job_of(c.obj), sum(1 for p in now.values() if live(p)))
        for i, (c, now) in enumerate(pods.states())
        if i >= lowered and c.type == "ADDED"
    ]
    assert live_at_creation == [("e4", 1)], "only e4 started after, and alone"
    # The running jobs were not killed: every job has one attempt, which succeeded.
    assert all([a["result"] for a in s["attempts"]] == ["Succeeded"] for s in statuses.values())
    assert not [c for c in pods.changes() if c.type == "DELETED"]


def test_jobs_sharing_a_concurrency_key_run_one_at_a_time(jobs: Jobs) -> None:
    create_queue(jobs, "roomy", concurrency=5)
    pods, bgjs = History.pods(jobs), History.jobs(jobs)
    jobs.create("key-1", job_spec(sim={"duration": "3s"}, queue="roomy", concurrencyKey="inv-42"))
    jobs.create("key-2", job_spec(sim={"duration": "3s"}, queue="roomy", concurrencyKey="inv-42"))
    jobs.create("free", job_spec(sim={"duration": "3s"}, queue="roomy"))
    statuses = wait_succeeded(jobs, ["key-1", "key-2", "free"])
    pods.stop()
    bgjs.stop()

    assert max_live_pods(pods, ["key-1", "key-2"]) == 1
    assert max_live_pods(pods) == 2, "the queue had room: the unkeyed job ran alongside"
    assert max_overlap(attempt_intervals(jobs, ["key-1", "key-2"])) <= 1
    # The second of the pair to start waited for the key, not for the queue.
    (second,) = [n for n in pod_creation_order(pods) if n.startswith("key-")][1:]
    assert ("Enqueued", "ConcurrencyKeyHeld") in reasons_seen(bgjs, second)
    assert all(len(s["attempts"]) == 1 for s in statuses.values())


# ---------------------------------------------------------------- metrics


Figures = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(operator: Operator) -> Figures:
    out: Figures = {}
    for family in text_string_to_metric_families(operator.metrics()):
        for s in family.samples:
            out[s.name, frozenset(s.labels.items())] = s.value
    return out


def sample(figures: Figures, name: str, **labels: str) -> float | None:
    return figures.get((name, frozenset(labels.items())))


def test_queue_metrics(operator: Operator, jobs: Jobs) -> None:
    ns = jobs.namespace
    create_queue(jobs, "metered", concurrency=2)
    names = [f"m{i}" for i in range(4)]
    for name in names:
        jobs.create(name, job_spec(sim={"duration": "5s"}, queue="metered"))
    labels = {"namespace": ns, "queue": "metered"}

    def two_running() -> Figures | None:
        # The gauges come from two views (slots held; job phases as last written), which
        # agree once the Running and Enqueued statuses are written.
        figures = samples(operator)
        shown = (
            sample(figures, "stoker_queue_running", **labels),
            sample(figures, "stoker_jobs", phase="Running", **labels),
            sample(figures, "stoker_jobs", phase="Enqueued", **labels),
        )
        return figures if shown == (2, 2, 2) else None

    figures = wait_for(two_running, 30, description="2 running and 2 enqueued in the metrics")
    assert sample(figures, "stoker_queue_concurrency_limit", **labels) == 2

    wait_succeeded(jobs, names)

    def settled() -> Figures | None:
        figures = samples(operator)
        done = sample(figures, "stoker_jobs", phase="Succeeded", **labels)
        return figures if done == 4 else None

    figures = wait_for(settled, 30, description="stoker_jobs Succeeded 4")
    assert sample(figures, "stoker_queue_running", **labels) == 0
    assert sample(figures, "stoker_jobs", phase="Running", **labels) == 0  # zero, not absent
    assert sample(figures, "stoker_queue_wait_seconds_count", **labels) == 4
    # m2 and m3 waited for a slot, each at least as long as a 5 s simulated pod runs (4 s or
    # more after second truncation): the sum is a causal lower bound, not a speed claim.
    total = sample(figures, "stoker_queue_wait_seconds_sum", **labels)
    assert total is not None and total >= 2
    assert sample(figures, "stoker_queue_wait_seconds_bucket", le="+Inf", **labels) == 4

    # An unlimited queue has a running gauge but no limit series.
    create_queue(jobs, "open")
    jobs.create("o1", job_spec(sim={"duration": "4s"}, queue="open"))

    def open_running() -> Figures | None:
        figures = samples(operator)
        running = sample(figures, "stoker_queue_running", namespace=ns, queue="open")
        return figures if running == 1 else None

    figures = wait_for(open_running, 30, description="stoker_queue_running of queue open")
    assert sample(figures, "stoker_queue_concurrency_limit", namespace=ns, queue="open") is None
