"""BackgroundJob glue: store -> lifecycle.decide -> dispatch -> writes.

A job's decision is made without awaiting anything; a ready job waits for the pass's one
dispatch, which claims slots before any write is sent, so a job that starts at once goes
straight to Running (one status write instead of two). The status write is the commit point:
Events and counters follow a write that happened, so neither is repeated when the same state is
reconciled again.
"""

from __future__ import annotations

from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import ValidationError

from stoker import metrics
from stoker.api.models import (
    LABEL_JOB_UID,
    BackgroundJobSpec,
    BackgroundJobStatus,
    JobQueueSpec,
    rfc3339,
)
from stoker.core import dispatch, lifecycle
from stoker.core.defaults import effective_spec
from stoker.core.podspec import build_pod, fallback_pod_name
from stoker.handlers.common import parse_time, view, write_status
from stoker.kube.errors import api_message
from stoker.state import Body, Key, Kind, key_of

if TYPE_CHECKING:
    from stoker.loop import Loop


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


class JobHandler:
    def __init__(self, loop: Loop) -> None:
        self.loop = loop
        self.ready: dict[Key, Ready] = {}
        self.running: dict[Key, Slot] = {}
        # Set when a slot frees, a job becomes ready or a queue changes: dispatch has work.
        self.dispatch_due = False
        # While a relist is resynced, no pod is created (stoker.loop.Loop.relisting).
        self.paused = False
        # Jobs whose pod was just created, and until when the write of their start waits.
        self._starting: dict[Key, datetime] = {}
        # Parsed JobQueue specs by key, with the resourceVersion they were parsed from.
        self._queue_specs: dict[Key, tuple[str, JobQueueSpec | None]] = {}

    # ------------------------------------------------------------------ queues

    def queue_changed(self, key: Key, old: Mapping[str, Any] | None, new: Body | None) -> None:
        """A JobQueue appeared, went or changed: dispatch again, and when its spec changed
        (template, defaults) decide its jobs again."""
        self.dispatch_due = True
        old_generation = None if old is None else old["metadata"].get("generation")
        new_generation = None if new is None else new["metadata"].get("generation")
        if old is None or new is None or old_generation != new_generation:
            for job in self.loop.store.by_queue.get(key, ()):
                self.loop.mark((Kind.JOB, *job))

    def queue_spec(self, key: Key) -> JobQueueSpec | None:
        """A queue's parsed spec; None when it has none or an invalid one."""
        body = self.loop.store.objects[Kind.QUEUE].get(key)
        if body is None:
            return None
        version = body["metadata"].get("resourceVersion", "")
        cached = self._queue_specs.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
        try:
            spec: JobQueueSpec | None = JobQueueSpec.model_validate(body.get("spec") or {})
        except ValidationError:
            spec = None
        self._queue_specs[key] = (version, spec)
        return spec

    def queue_specs(self) -> dict[Key, JobQueueSpec]:
        specs = {}
        for key in self.loop.store.objects[Kind.QUEUE]:
            spec = self.queue_spec(key)
            if spec is not None:
                specs[key] = spec
        return specs

    # ------------------------------------------------------------------ deciding

    def _release(self, key: Key) -> None:
        if self.running.pop(key, None) is not None:
            self.dispatch_due = True

    def _forget(self, key: Key) -> None:
        """Drop a job from dispatch and the wake-ups (gone, invalid, or being deleted); its
        failure count stays while it exists, so a refused deletion backs off."""
        self.ready.pop(key, None)
        self._starting.pop(key, None)
        self._release(key)
        self.loop.wakeups.set((Kind.JOB, *key), None)

    def decide(self, okey: tuple[Kind, str, str]) -> None:
        """Decide one job now (no awaits), update the slot bookkeeping, send its writes."""
        if self.loop.busy(okey):
            return
        try:
            work = self._plan(okey)
        except Exception as error:
            self.loop.failed(okey, error)
            return
        if work is not None:
            # Decided from current state: a newer event while it waits for the rate limiter
            # makes a newer decision, so this one may give way to it.
            self.loop.send(okey, work, supersede=True)

    def _plan(self, okey: tuple[Kind, str, str]) -> Coroutine[Any, Any, None] | None:
        key = (okey[1], okey[2])
        loop = self.loop
        body = loop.store.jobs.get(key)
        if body is None:
            self._forget(key)
            loop.failures.pop(okey, None)
            return None
        now = loop.clock()
        try:
            job = job_view(body)
        except ValidationError as e:
            self._forget(key)
            return self._reject(body, e, now)
        job = _with_spec(job, effective_spec(job.spec, self.queue_spec((key[0], job.spec.queue))))
        pods = [lifecycle.pod_view(p) for p in loop.store.pods_of(job.uid)]
        parents = {ref.name: self._parent(job.namespace, ref.name) for ref in job.spec.after}
        cycle: list[str] | None = None
        if job.spec.after and job.status.attempt == 0:
            cycle = lifecycle.dependency_cycle(
                job.name, lambda name: loop.store.after_of(job.namespace, name)
            )
        plan = lifecycle.decide(
            job,
            pods,
            parents,
            now,
            loop.settings.default_ttl_after_finished,
            cycle=cycle or (),
            start_timeout=loop.settings.start_timeout,
        )

        if plan.delete_job:
            self._forget(key)
            return self._delete_job(body, job, plan, now)
        loop.wakeups.set(okey, plan.wake_at)
        if plan.status.phase == "Running":
            self.running[key] = Slot(job.spec.queue, job.spec.concurrency_key)
        else:
            self._release(key)
        if plan.ready_attempt is not None and plan.ready_since is not None:
            self.dispatch_due = True
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
        hold = self._starting.get(key)
        if hold is not None and now < hold and lifecycle.only_starts(job, plan):
            # The start waits (see _start): the pod's end, if it comes first, says both.
            loop.wakeups.set(okey, min(hold, plan.wake_at or hold))
            return None
        self._starting.pop(key, None)
        return self._commit_plan(body, job, plan, now)

    def _parent(self, namespace: str, name: str) -> lifecycle.ParentView | None:
        body = self.loop.store.jobs.get((namespace, name))
        if body is None:
            return None
        status = body.get("status") or {}
        return lifecycle.ParentView(
            uid=body["metadata"]["uid"],
            phase=status.get("phase"),
            finished_at=parse_time(status.get("finishedAt")),
        )

    # ------------------------------------------------------------------ writing

    async def _commit_plan(
        self, body: Body, job: lifecycle.JobView, plan: lifecycle.Plan, now: datetime
    ) -> None:
        for name in plan.delete_pods:
            await self.loop.kube.delete_pod(job.namespace, name, _pod_uid(self, job, name))
        await self._commit(body, job, plan, plan.status, now)

    async def _delete_job(
        self, body: Body, job: lifecycle.JobView, plan: lifecycle.Plan, now: datetime
    ) -> None:
        await self._post_events(body, plan.events, now)
        _count(job, plan)
        await self.loop.kube.delete_object(Kind.JOB.plural, job.namespace, job.name, job.uid)

    async def _reject(self, body: Body, error: ValidationError, now: datetime) -> None:
        old = BackgroundJobStatus.model_validate(body.get("status") or {})
        if old.phase == "Failed":
            return
        message = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in error.errors()
        )[:1024]
        new = lifecycle.failed(old, "InvalidSpec", message, now)
        if await write_status(self.loop, Kind.JOB, body, new):
            await self.loop.kube.post_event(body, "Warning", "InvalidSpec", message, rfc3339(now))

    async def _commit(
        self,
        body: Body,
        job: lifecycle.JobView,
        plan: lifecycle.Plan,
        status: BackgroundJobStatus,
        now: datetime,
    ) -> bool:
        """Write the status; when it changed, post the plan's Events and count its transitions."""
        if not await write_status(self.loop, Kind.JOB, body, status):
            return False
        if job.status.phase is None:
            metrics.JOBS_CREATED.labels(job.namespace, job.spec.queue).inc()
        if plan.events:
            # Taken now, so that a later commit of the same plan cannot post them again.
            events, plan.events = plan.events, []
            self.loop.background(self._post_events(body, events, now))
        _count(job, plan)
        return True

    async def _post_events(self, body: Body, events: list[lifecycle.Event], now: datetime) -> None:
        for event in events:
            await self.loop.kube.post_event(
                body, event.type, event.reason, event.message, rfc3339(now)
            )

    # ------------------------------------------------------------------ dispatch

    def queue_states(self) -> dict[Key, dispatch.QueueState]:
        running = ((key[0], slot.queue) for key, slot in self.running.items())
        return dispatch.queue_states(self.queue_specs(), running)

    def dispatchable(self) -> bool:
        """Whether a dispatch now could start something."""
        return bool(self.ready) and self.dispatch_due and not self.paused

    def dispatch(self) -> None:
        """Choose who starts now (no awaits: slots are claimed before any write) and send the
        writes: pod creates for those who start, status writes for those who wait. A job with a
        write in flight takes part once that write is done."""
        loop = self.loop
        if not self.dispatchable():
            return
        self.dispatch_due = False
        candidates = []
        for key, entry in self.ready.items():
            if not loop.busy((Kind.JOB, *key)):
                candidates.append(entry.candidate)
        held = {(k[0], s.concurrency_key) for k, s in self.running.items() if s.concurrency_key}
        result = dispatch.select(
            candidates, self.queue_states(), len(self.running), loop.settings.max_running, held
        )
        now = loop.clock()
        for c in result.start:
            key = (c.namespace, c.name)
            self.running[key] = Slot(c.queue, c.concurrency_key)
            loop.send((Kind.JOB, *key), self._start(self.ready.pop(key), now))
        for key, why in result.waiting.items():
            entry = self.ready[key]
            # A fresh plan may change more than the reason; an old one only by its reason.
            if entry.fresh or (entry.plan.status.reason, entry.plan.status.message) != why:
                entry.plan.status = lifecycle.waiting(entry.plan.status, why.reason, why.message)
                entry.fresh = False
                loop.send((Kind.JOB, *key), self._commit_waiting(entry, now))

    async def _commit_waiting(self, entry: Ready, now: datetime) -> None:
        if await self._commit(entry.body, entry.job, entry.plan, entry.plan.status, now):
            # Later comparisons are against what is now stored.
            stored = self.loop.store.jobs.get(key_of(entry.body))
            if stored is not None:
                entry.job = _with_spec(job_view(stored), entry.job.spec)

    async def _start(self, entry: Ready, now: datetime) -> None:
        job, key = entry.job, (entry.job.namespace, entry.job.name)
        okey = (Kind.JOB, *key)
        try:
            pod = await self._create_pod(job, entry.attempt)
        except ApiException as e:
            self._release(key)
            if e.status in (400, 422):  # the template itself is invalid: retrying cannot help
                plan = entry.plan
                plan.status = lifecycle.failed(
                    plan.status, "InvalidPodTemplate", api_message(e), now
                )
                plan.finished_phase = "Failed"
                plan.events.append(
                    lifecycle.Event("Warning", "InvalidPodTemplate", plan.status.message or "")
                )
                await self._commit(entry.body, job, plan, plan.status, now)
                return
            # Forbidden by a quota or policy, throttled, a server error: the job says so and
            # is retried with backoff; no other job waits for it.
            delay = self.loop.retry_later(okey, e)
            why = f"creating pod failed: {api_message(e)}; retrying in {_seconds(delay)}"
            entry.plan.status = lifecycle.waiting(entry.plan.status, "PodCreateFailed", why)
            await self._commit(entry.body, job, entry.plan, entry.plan.status, now)
            return
        except Exception:
            self._release(key)
            raise
        if pod is None:
            # Both names of this attempt are taken by pods of other jobs of the same name.
            self._release(key)
            delay = self.loop.retry_later(okey, None)
            why = (
                f"the pods of attempt {entry.attempt} of an earlier job of this name still "
                f"exist; retrying in {_seconds(delay)}"
            )
            entry.plan.status = lifecycle.waiting(entry.plan.status, "PodNameConflict", why)
            await self._commit(entry.body, job, entry.plan, entry.plan.status, now)
            return
        self.loop.store.put_pod(pod)
        plan = entry.plan
        if plan.events or plan.finished_attempts or plan.retry_scheduled:
            # The plan has more to say (an earlier attempt's end): written with the start.
            name = pod["metadata"]["name"]
            status = lifecycle.started(plan.status, job.spec, entry.attempt, name, now)
            await self._commit(entry.body, job, plan, status, now)
        else:
            # The start is written by the decision on the stored pod, made once this work is
            # done, and not before `start_write_delay`: a pod that ends by then (or while that
            # write waits for the rate limiter, see Loop.send) costs one status write, its end.
            # The Job controller batches a job's pod events for a second likewise.
            self._starting[key] = now + self.loop.settings.start_write_delay
            self.loop.decide_again(okey)
        metrics.ATTEMPTS_STARTED.labels(job.namespace, job.spec.queue).inc()
        wait = max(0.0, (now - entry.candidate.ready_at).total_seconds())
        metrics.QUEUE_WAIT.labels(job.namespace, job.spec.queue).observe(wait)

    async def _create_pod(self, job: lifecycle.JobView, attempt: int) -> Body | None:
        """Create the attempt's pod, or adopt it when a restarted operator finds it made. A pod
        of that name left by an earlier job of the same name (orphaned, or still being
        deleted) is not ours: the attempt then takes its fallback name. None when both are
        taken by others."""
        kube = self.loop.kube
        for name in (lifecycle.pod_name(job.name, attempt), fallback_pod_name(job, attempt)):
            pod, _ = await kube.create_pod(job.namespace, build_pod(job, attempt, name))
            if (pod["metadata"].get("labels") or {}).get(LABEL_JOB_UID) == job.uid:
                return pod
        return None


def job_view(body: Body) -> lifecycle.JobView:
    return view(body, BackgroundJobSpec, BackgroundJobStatus)


def _with_spec(job: lifecycle.JobView, spec: BackgroundJobSpec) -> lifecycle.JobView:
    if spec is job.spec:
        return job
    return lifecycle.JobView(**{**job.__dict__, "spec": spec})


def _pod_uid(handler: JobHandler, job: lifecycle.JobView, name: str) -> str:
    for pod in handler.loop.store.pods_of(job.uid):
        if pod["metadata"]["name"] == name:
            return str(pod["metadata"].get("uid", ""))
    return ""


def _count(job: lifecycle.JobView, plan: lifecycle.Plan) -> None:
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


def _seconds(delay: Any) -> str:
    return f"{max(1, round(delay.total_seconds()))}s"
