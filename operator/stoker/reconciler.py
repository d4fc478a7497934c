"""The imperative shell: watch events in, decisions from stoker.core, writes out.

One loop serves every object. Events mark objects dirty; the wake-up heap marks objects whose
delay is due. Each pass decides every dirty job without awaiting anything, runs one dispatch
over every ready job (N free slots start N jobs in one pass), then sends the writes; the next
pass may start while they are in flight, but a job with a write in flight is decided again
only once that write is done, so one object's writes never overtake each other.

The status write is the commit point: Events and counters follow a write that happened, so
neither is repeated when the same state is reconciled again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import ValidationError

from stoker import __version__, metrics
from stoker.api.models import (
    API_VERSION,
    LABEL_JOB_UID,
    BackgroundJobSpec,
    BackgroundJobStatus,
    JobQueueSpec,
    JobQueueStatus,
    Model,
    RecurringJobSpec,
    RecurringJobStatus,
    now_utc,
    rfc3339,
    status_patch,
)
from stoker.core import dispatch, lifecycle, recurring
from stoker.core.objects import ObjectView
from stoker.core.podspec import build_pod
from stoker.kube.api import Kube
from stoker.settings import Settings
from stoker.state import Body, Key, Kind, Store, key_of, recurring_owner
from stoker.wakeups import Wakeups

log = logging.getLogger(__name__)

ObjKey = tuple[Kind, str, str]
PARALLEL_WRITES = 32
ERROR_RETRY = timedelta(seconds=5)
QUEUE_STATUS_INTERVAL = timedelta(seconds=1)
DISPATCH: ObjKey = ("bgj", "", "dispatch")  # the key errors of a dispatch are counted under
PLURALS: dict[Kind, str] = {"bgj": "backgroundjobs", "rj": "recurringjobs", "jq": "jobqueues"}
KINDS: dict[Kind, str] = {"bgj": "BackgroundJob", "rj": "RecurringJob", "jq": "JobQueue"}


@dataclass
class Ready:
    """A job whose next attempt may start as soon as dispatch gives it a slot."""

    body: Body
    job: lifecycle.JobView
    plan: lifecycle.Plan
    attempt: int
    candidate: dispatch.Candidate
    # Decided in this pass and not yet written: dispatch writes it even if the reason stays.
    fresh: bool = True


@dataclass(frozen=True)
class Slot:
    """A job holding a running slot."""

    queue: str
    concurrency_key: str | None


class Reconciler:
    def __init__(self, kube: Kube, settings: Settings, clock: Callable[[], datetime] = now_utc):
        self.kube, self.settings, self.clock = kube, settings, clock
        self.store = Store(settings.namespaces)
        self.wakeups: Wakeups[ObjKey] = Wakeups()
        self.dirty: set[ObjKey] = set()
        self.ready: dict[Key, Ready] = {}
        self.running: dict[Key, Slot] = {}
        self.queue_written: dict[Key, datetime] = {}
        self._kick = asyncio.Event()
        self._limit = asyncio.Semaphore(PARALLEL_WRITES)
        self.next_run: dict[Key, datetime] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Writes in flight, the jobs they write, and jobs to decide again once theirs are done.
        self._writes: set[asyncio.Task[None]] = set()
        self._busy: set[Key] = set()
        self._deferred: set[Key] = set()
        # Set when a slot frees, a job becomes ready or a queue changes: dispatch has work.
        self._dispatch_due = False
        self._recurring_status: list[tuple[ObjKey, Awaitable[None]]] = []

    # ------------------------------------------------------------------ events in

    def mark(self, key: ObjKey) -> None:
        self.dirty.add(key)
        self._kick.set()

    def on_object(self, kind: Kind, event_type: str | None, body: Body) -> None:
        stored = (self.store.remove if event_type == "DELETED" else self.store.put)(kind, body)
        if stored:
            self.mark((kind, *key_of(body)))
            self._wake_dependents(kind, body)
            self._dispatch_due |= kind == "jq"

    def _wake_dependents(self, kind: Kind, body: Body) -> None:
        """A job's continuations and its RecurringJob decide on its status: wake them on every
        change, whether it came from a watch event or from the answer to our own write."""
        if kind != "bgj":
            return
        key = key_of(body)
        for child in self.store.children.get(key, ()):
            self.mark(("bgj", *child))
        owner = recurring_owner(body)
        if owner:
            self.mark(("rj", key[0], owner))

    def on_pod(self, event_type: str | None, pod: Body) -> None:
        job = self.store.remove_pod(pod) if event_type == "DELETED" else self.store.put_pod(pod)
        if job is not None:
            self.mark(("bgj", *job))

    async def prime(self) -> None:
        """Load everything before the first pass, so no decision is made on a partial view."""
        for kind, plural in PLURALS.items():
            async for body in self.kube.list_all(plural):
                body.setdefault("apiVersion", API_VERSION)
                body.setdefault("kind", KINDS[kind])
                self.store.put(kind, body)
                self.dirty.add((kind, *key_of(body)))
        async for pod in self.kube.list_all("pods", label_selector=LABEL_JOB_UID):
            self.store.put_pod(pod)

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        metrics.BUILD_INFO.labels(version=__version__).set(1)
        while True:
            now = self.clock()
            keys = self.dirty | set(self.wakeups.pop_due(now))
            self.dirty = set()
            if keys:
                await self.run_pass(keys, wait=False)
                continue
            self._kick.clear()
            nxt = self.wakeups.next_due()
            timeout = None if nxt is None else max(0.0, (nxt - self.clock()).total_seconds())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), timeout)

    async def run_pass(self, keys: set[ObjKey], wait: bool = True) -> None:
        """Decide every job and run dispatch before any write is sent, then send the writes.

        A slot freed in this pass is refilled without waiting for the writes of the job that
        freed it, and (wait=False, the loop) the next pass starts while writes are in flight:
        a job with a write in flight is decided again once that write is done, so its writes
        never overtake each other.
        """
        await self._each([k for k in keys if k[0] == "rj"], self._reconcile_recurring)
        statuses, self._recurring_status = self._recurring_status, []
        await self._each_coro([self._guard(okey, w) for okey, w in statuses])
        for okey in keys:
            key = (okey[1], okey[2])
            if okey[0] != "bgj":
                continue
            if key in self._busy:
                self._deferred.add(key)
                continue
            work = self._decide_job(okey)
            if work is not None:
                self._send(key, work)
        for key, work in self._dispatch():
            self._send(key, work)
        if wait:
            await self.drain()
        await self._sync_queues({(ns, name) for kind, ns, name in keys if kind == "jq"})

    def _send(self, key: Key, work: Awaitable[None]) -> None:
        async def limited() -> None:
            async with self._limit:
                await work

        self._busy.add(key)
        task = asyncio.create_task(limited())
        self._writes.add(task)
        task.add_done_callback(lambda t: self._sent(key, t))

    def _sent(self, key: Key, task: asyncio.Task[None]) -> None:
        self._writes.discard(task)
        self._busy.discard(key)
        if key in self._deferred:
            self._deferred.discard(key)
            self.mark(("bgj", *key))
        self._kick.set()  # queue figures may have changed

    async def drain(self) -> None:
        """Wait until every write sent so far is done."""
        while self._writes:
            await asyncio.gather(*list(self._writes))

    async def _each(self, keys: Iterable[ObjKey], fn: Callable[[ObjKey], Awaitable[None]]) -> None:
        await self._each_coro([self._guard(k, fn(k)) for k in keys])

    async def _each_coro(self, work: Sequence[Awaitable[object]]) -> None:
        async def one(w: Awaitable[object]) -> None:
            async with self._limit:
                await w

        await asyncio.gather(*(one(w) for w in work))

    async def _guard(self, key: ObjKey, work: Awaitable[None]) -> None:
        """A failing object is retried later and never stops the others."""
        try:
            await work
        except Exception:
            self._failed(key)

    def _failed(self, key: ObjKey) -> None:
        metrics.RECONCILE_ERRORS.labels(kind=KINDS[key[0]]).inc()
        log.exception("reconciling %s %s/%s failed; retrying in %s", *key, ERROR_RETRY)
        if key[2] != DISPATCH[2]:
            self.wakeups.set(key, self.clock() + ERROR_RETRY)

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` without holding up the pass (Events: a courtesy, not state)."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ BackgroundJob

    def _release(self, key: Key) -> None:
        if self.running.pop(key, None) is not None:
            self._dispatch_due = True

    def _forget(self, key: Key) -> None:
        self.ready.pop(key, None)
        self._release(key)
        self.wakeups.set(("bgj", *key), None)

    def _decide_job(self, okey: ObjKey) -> Awaitable[None] | None:
        """Decide one job now (no awaits) and update the slot bookkeeping; return its writes."""
        try:
            work = self._plan_job(okey)
        except Exception:
            self._failed(okey)
            return None
        return None if work is None else self._guard(okey, work)

    def _plan_job(self, okey: ObjKey) -> Awaitable[None] | None:
        key = (okey[1], okey[2])
        body = self.store.jobs.get(key)
        if body is None:
            self._forget(key)
            return None
        now = self.clock()
        try:
            job = job_view(body)
        except ValidationError as e:
            return self._reject(body, e, now)
        pods = [lifecycle.pod_view(p) for p in self.store.pods_of(job.uid)]
        parents = {ref.name: self._parent(job.namespace, ref.name) for ref in job.spec.after}
        plan = lifecycle.decide(job, pods, parents, now, self.settings.default_ttl_after_finished)

        if plan.delete_job:
            self._forget(key)
            return self._delete_job(body, job, plan, now)
        self.wakeups.set(okey, plan.wake_at)
        if plan.status.phase == "Running":
            self.running[key] = Slot(job.spec.queue, job.spec.concurrency_key)
        else:
            self._release(key)
        if plan.ready_attempt is not None and plan.ready_since is not None:
            self._dispatch_due = True
            # The status write waits for dispatch: a job that starts at once goes straight to
            # Running, one write instead of two.
            self.ready[key] = Ready(
                body,
                job,
                plan,
                plan.ready_attempt,
                dispatch.Candidate(
                    namespace=job.namespace,
                    name=job.name,
                    queue=job.spec.queue,
                    priority=job.spec.priority,
                    ready_at=plan.ready_since,
                    concurrency_key=job.spec.concurrency_key,
                ),
            )
            return None
        self.ready.pop(key, None)
        return self._commit_plan(body, job, plan, now)

    async def _commit_plan(
        self, body: Body, job: lifecycle.JobView, plan: lifecycle.Plan, now: datetime
    ) -> None:
        await self._commit(body, job, plan, plan.status, now)

    async def _delete_job(
        self, body: Body, job: lifecycle.JobView, plan: lifecycle.Plan, now: datetime
    ) -> None:
        await self._post_events(body, plan.events, now)
        self._count(job, plan)
        await self.kube.delete_object("backgroundjobs", job.namespace, job.name, job.uid)

    def _parent(self, namespace: str, name: str) -> lifecycle.ParentView | None:
        body = self.store.jobs.get((namespace, name))
        if body is None:
            return None
        status = body.get("status") or {}
        return lifecycle.ParentView(
            uid=body["metadata"]["uid"],
            phase=status.get("phase"),
            finished_at=_time(status.get("finishedAt")),
        )

    async def _reject(self, body: Body, error: ValidationError, now: datetime) -> None:
        old = BackgroundJobStatus.model_validate(body.get("status") or {})
        if old.phase == "Failed":
            return
        message = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in error.errors()
        )[:1024]
        new = lifecycle.failed(old, "InvalidSpec", message, now)
        if await self._write_status("bgj", body, new):
            await self.kube.post_event(body, "Warning", "InvalidSpec", message, rfc3339(now))

    async def _commit(
        self,
        body: Body,
        job: lifecycle.JobView,
        plan: lifecycle.Plan,
        status: BackgroundJobStatus,
        now: datetime,
    ) -> bool:
        """Write the status; when it changed, post the plan's Events and count its transitions."""
        if not await self._write_status("bgj", body, status):
            return False
        if job.status.phase is None:
            metrics.JOBS_CREATED.labels(job.namespace, job.spec.queue).inc()
        if plan.events:
            # Taken now, so that a later commit of the same plan cannot post them again.
            events, plan.events = plan.events, []
            self._background(self._post_events(body, events, now))
        self._count(job, plan)
        return True

    async def _write_status(self, kind: Kind, body: Body, new: Model) -> bool:
        """True when a write happened; False when nothing changed or the object is gone."""
        current = self.store.objects[kind].get(key_of(body)) or body
        patch = status_patch(current.get("status") or {}, new)
        if not patch:
            return False
        meta = body["metadata"]
        answer = await self.kube.patch_status(PLURALS[kind], meta["namespace"], meta["name"], patch)
        if answer is None:
            return False
        if self.store.put(kind, answer):
            self._wake_dependents(kind, answer)
        return True

    async def _post_events(self, body: Body, events: list[lifecycle.Event], now: datetime) -> None:
        for event in events:
            await self.kube.post_event(body, event.type, event.reason, event.message, rfc3339(now))

    def _count(self, job: lifecycle.JobView, plan: lifecycle.Plan) -> None:
        ns, queue = job.namespace, job.spec.queue
        for rec in plan.finished_attempts:
            result = (
                "timeout"
                if rec.reason == "DeadlineExceeded"
                else "succeeded"
                if rec.result == "Succeeded"
                else "failed"
            )
            metrics.ATTEMPTS_FINISHED.labels(ns, queue, result).inc()
            if rec.started_at and rec.finished_at:
                seconds = max(0.0, (rec.finished_at - rec.started_at).total_seconds())
                metrics.ATTEMPT_DURATION.labels(ns, queue, result).observe(seconds)
        if plan.retry_scheduled:
            metrics.RETRIES.labels(ns, queue).inc()
        if plan.finished_phase:
            metrics.JOBS_FINISHED.labels(ns, queue, plan.finished_phase).inc()
        plan.finished_attempts, plan.retry_scheduled, plan.finished_phase = [], False, None

    # ------------------------------------------------------------------ dispatch

    def queue_states(self) -> dict[Key, dispatch.QueueState]:
        specs = {}
        for key, body in self.store.objects["jq"].items():
            try:
                specs[key] = JobQueueSpec.model_validate(body.get("spec") or {})
            except ValidationError:
                log.warning("JobQueue %s/%s has an invalid spec; treated as missing", *key)
        running = ((key[0], slot.queue) for key, slot in self.running.items())
        return dispatch.queue_states(specs, running)

    def _dispatch(self) -> list[tuple[Key, Awaitable[None]]]:
        """Choose who starts now (no awaits: slots are claimed before any write) and return
        the writes: pod creates for those who start, status writes for those who wait. A job
        with a write in flight takes part once that write is done."""
        if not self.ready or not self._dispatch_due:
            return []
        self._dispatch_due = False
        self._deferred.update(self.ready.keys() & self._busy)
        held = {(k[0], s.concurrency_key) for k, s in self.running.items() if s.concurrency_key}
        result = dispatch.select(
            (r.candidate for k, r in self.ready.items() if k not in self._busy),
            self.queue_states(),
            len(self.running),
            self.settings.max_running,
            held,
        )
        now = self.clock()
        work: list[tuple[Key, Awaitable[None]]] = []
        for c in result.start:
            key = (c.namespace, c.name)
            self.running[key] = Slot(c.queue, c.concurrency_key)
            work.append((key, self._guard(DISPATCH, self._start(self.ready.pop(key), now))))
        for key, why in result.waiting.items():
            entry = self.ready[key]
            # A fresh plan may change more than the reason; an old one only by its reason.
            if entry.fresh or (entry.plan.status.reason, entry.plan.status.message) != why:
                entry.plan.status = lifecycle.waiting(entry.plan.status, why.reason, why.message)
                entry.fresh = False
                work.append((key, self._guard(DISPATCH, self._commit_waiting(entry, now))))
        return work

    async def _commit_waiting(self, entry: Ready, now: datetime) -> None:
        if await self._commit(entry.body, entry.job, entry.plan, entry.plan.status, now):
            # Later comparisons are against what is now stored.
            entry.job = job_view(self.store.jobs[key_of(entry.body)])

    async def _start(self, entry: Ready, now: datetime) -> None:
        job, key = entry.job, (entry.job.namespace, entry.job.name)
        try:
            pod, _ = await self.kube.create_pod(job.namespace, build_pod(job, entry.attempt))
        except ApiException as e:
            self._release(key)
            if e.status in (400, 422):  # the template itself is invalid: retrying cannot help
                plan = entry.plan
                plan.status = lifecycle.failed(
                    plan.status, "InvalidPodTemplate", _api_message(e), now
                )
                plan.finished_phase = "Failed"
                plan.events.append(
                    lifecycle.Event("Warning", "InvalidPodTemplate", plan.status.message or "")
                )
                await self._commit(entry.body, job, plan, plan.status, now)
            else:
                why = f"creating pod failed: {_api_message(e)}; retrying"
                await self._wait_and_retry(entry, "PodCreateFailed", why, now)
            return
        except Exception:
            self._release(key)
            self.wakeups.set(("bgj", *key), now + ERROR_RETRY)
            raise
        if (pod["metadata"].get("labels") or {}).get(LABEL_JOB_UID) != job.uid:
            # A pod of that name belongs to an older job of the same name, still being deleted.
            self._release(key)
            why = f"pod {pod['metadata']['name']} of an earlier job of this name still exists"
            await self._wait_and_retry(entry, "PodNameConflict", why, now)
            return
        self.store.put_pod(pod)
        status = lifecycle.started(
            entry.plan.status, job.spec, entry.attempt, pod["metadata"]["name"], now
        )
        await self._commit(entry.body, job, entry.plan, status, now)
        metrics.ATTEMPTS_STARTED.labels(job.namespace, job.spec.queue).inc()
        wait = max(0.0, (now - entry.candidate.ready_at).total_seconds())
        metrics.QUEUE_WAIT.labels(job.namespace, job.spec.queue).observe(wait)

    async def _wait_and_retry(self, entry: Ready, reason: str, message: str, now: datetime) -> None:
        entry.plan.status = lifecycle.waiting(entry.plan.status, reason, message)
        await self._commit(entry.body, entry.job, entry.plan, entry.plan.status, now)
        self.wakeups.set(("bgj", entry.job.namespace, entry.job.name), now + ERROR_RETRY)

    # ------------------------------------------------------------------ RecurringJob

    async def _reconcile_recurring(self, okey: ObjKey) -> None:
        key = (okey[1], okey[2])
        body = self.store.objects["rj"].get(key)
        if body is None:
            self.next_run.pop(key, None)
            self.wakeups.set(okey, None)
            return
        now = self.clock()
        rj = recurring_view(body)
        children = []
        for child_key in self.store.runs.get(key, ()):
            child = self.store.jobs.get(child_key)
            if child is None or not _owned_by(child, rj.uid):
                continue
            status = child.get("status") or {}
            children.append(
                recurring.ChildView(
                    name=child_key[1],
                    phase=status.get("phase"),
                    created_at=_time(child["metadata"].get("creationTimestamp")) or now,
                    finished_at=_time(status.get("finishedAt")),
                )
            )
        plan = recurring.decide(rj, children, now)
        for name in plan.delete:
            await self.kube.delete_object("backgroundjobs", rj.namespace, name)
        for new in plan.create:
            job = recurring.job_body(body, new.name, new.slot)
            if await self.kube.create_object("backgroundjobs", rj.namespace, job) and new.slot:
                metrics.RECURRING_LAG.observe(max(0.0, (self.clock() - new.slot).total_seconds()))
        if plan.missed:
            metrics.RECURRING_MISSED.labels(rj.namespace).inc(plan.missed)
        # Written after every due job of the pass is created: when many schedules share a
        # slot, their status writes must not queue in front of other schedules' runs.
        self._recurring_status.append((okey, self._write_recurring_status(body, plan, now)))
        if plan.status.next_schedule_time is not None:
            self.next_run[key] = plan.status.next_schedule_time
        else:
            self.next_run.pop(key, None)
        self.wakeups.set(okey, plan.wake_at)

    async def _write_recurring_status(
        self, body: Body, plan: recurring.RecurringPlan, now: datetime
    ) -> None:
        if await self._write_status("rj", body, plan.status):
            for event in plan.events:
                await self.kube.post_event(
                    body, event.type, event.reason, event.message, rfc3339(now)
                )

    def next_runs(self) -> Iterable[tuple[tuple[str, str], float]]:
        return [(key, at.timestamp()) for key, at in list(self.next_run.items())]

    # ------------------------------------------------------------------ JobQueue status

    async def _sync_queues(self, marked: set[Key]) -> None:
        """Write each JobQueue's figures when they changed, at most once a second per queue."""
        now = self.clock()
        due = [
            key
            for key in self.store.objects["jq"]
            if key in marked
            or (last := self.queue_written.get(key)) is None
            or now - last >= QUEUE_STATUS_INTERVAL
        ]
        for key in self.store.objects["jq"].keys() - set(due):
            # Written less than a second ago: look again when it may be written.
            self.wakeups.set(("jq", *key), self.queue_written[key] + QUEUE_STATUS_INTERVAL)
        if not due:
            return
        enqueued: Counter[Key] = Counter()
        oldest: dict[Key, datetime] = {}
        for r in self.ready.values():
            qk = (r.job.namespace, r.job.spec.queue)
            enqueued[qk] += 1
            oldest[qk] = min(oldest.get(qk, r.candidate.ready_at), r.candidate.ready_at)
        running = Counter((k[0], s.queue) for k, s in self.running.items())
        writes: list[Awaitable[object]] = []
        for key in due:
            body = self.store.objects["jq"][key]
            spec = JobQueueSpec.model_validate(body.get("spec") or {})
            old = JobQueueStatus.model_validate(body.get("status") or {})
            new = JobQueueStatus(
                enqueued=enqueued[key],
                running=running[key],
                oldest_enqueued_at=oldest.get(key),
                conditions=old.conditions,
                observed_generation=body["metadata"].get("generation"),
            )
            lifecycle.set_condition(
                new.conditions,
                "Active",
                not spec.suspend,
                "Suspended" if spec.suspend else "Dispatching",
                "spec.suspend is true: nothing is dispatched"
                if spec.suspend
                else "jobs are dispatched as capacity allows",
                now,
                always=True,
            )
            if not status_patch(body.get("status") or {}, new):
                continue
            self.queue_written[key] = now
            writes.append(self._write_status("jq", body, new))
        await self._each_coro(writes)

    # ------------------------------------------------------------------ metrics views

    def job_counts(self) -> Iterable[tuple[tuple[str, str, str], int]]:
        counts: Counter[tuple[str, str, str]] = Counter()
        for (ns, _), body in list(self.store.jobs.items()):
            phase = (body.get("status") or {}).get("phase")
            if phase:
                queue = (body.get("spec") or {}).get("queue") or "default"
                counts[ns, queue, phase] += 1
        return counts.items()

    def queue_figures(self) -> Iterable[tuple[tuple[str, str], tuple[int, int | None]]]:
        for key, state in self.queue_states().items():
            yield key, (state.running, state.concurrency)


SpecT = TypeVar("SpecT", bound=Model)
StatusT = TypeVar("StatusT", bound=Model)


def view(body: Body, spec: type[SpecT], status: type[StatusT]) -> ObjectView[SpecT, StatusT]:
    """Parse a watched object for the decision code (defaults applied by the models)."""
    meta = body["metadata"]
    return ObjectView(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta["uid"],
        generation=meta.get("generation") or 1,
        created_at=_time(meta.get("creationTimestamp")) or now_utc(),
        annotations=meta.get("annotations") or {},
        spec=spec.model_validate(body.get("spec") or {}),
        status=status.model_validate(body.get("status") or {}),
    )


def job_view(body: Body) -> lifecycle.JobView:
    return view(body, BackgroundJobSpec, BackgroundJobStatus)


def recurring_view(body: Body) -> recurring.RecurringView:
    return view(body, RecurringJobSpec, RecurringJobStatus)


def _owned_by(body: Body, uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in body["metadata"].get("ownerReferences") or [])


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _api_message(e: ApiException) -> str:
    try:
        return str(json.loads(e.body or b"{}").get("message", e.reason))[:1024]
    except (TypeError, ValueError):
        return str(e.reason)
