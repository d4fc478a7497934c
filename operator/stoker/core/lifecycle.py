"""The BackgroundJob phase machine: given a job, its pods, its parents and `now`, what next.

Pure: no I/O, no clock reads. The loop feeds it what the API server holds and carries out
the returned Plan (status write, wake-up, events). Everything is derived from current state
(the job's status plus its pods, which are kept until the job goes), so a restarted operator
computes the same plan and never runs an attempt twice: pod names are deterministic per attempt.

Phases: Awaiting (continuation waiting on `after`) -> Scheduled (startAt/startAfter or a retry
delay) -> Enqueued (ready; dispatch decides when) -> Running (a pod exists for the current
attempt) -> Succeeded | Failed. A requeue starts a new run from Succeeded/Failed with a fresh
retry budget; attempt numbers continue.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from stoker.api.durations import format_duration, parse_duration
from stoker.api.models import (
    ANNOTATION_REQUEUE,
    ANNOTATION_RETRY_NOW,
    FINISHED_PHASES,
    LABEL_ATTEMPT,
    MAX_DURATION,
    TASK_ARGS_MAX_BYTES,
    TASK_ARGS_MAX_DEPTH,
    AttemptRecord,
    BackgroundJobSpec,
    BackgroundJobStatus,
    Condition,
    rfc3339,
)
from stoker.core.backoff import retry_decision, retry_delay
from stoker.core.objects import ObjectView

HISTORY_LIMIT = 20
MESSAGE_LIMIT = 1024
# Reasons of an attempt whose pod did not run within its start deadline (Kueue's
# waitForPodsReady): never placed by the scheduler, or placed but never started.
START_FAILURES = frozenset({"Unschedulable", "StartTimeout"})


@dataclass(frozen=True)
class PodView:
    """What the phase machine needs of one attempt's pod."""

    name: str
    attempt: int
    phase: str  # Pending | Running | Succeeded | Failed | Unknown
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    reason: str | None = None
    message: str | None = None
    created_at: datetime | None = None
    # The scheduler's word when it could not place the pod (PodScheduled=False, Unschedulable).
    unschedulable: str | None = None

    @property
    def terminated(self) -> bool:
        return self.phase in ("Succeeded", "Failed")

    @property
    def timed_out(self) -> bool:
        return self.reason == "DeadlineExceeded"


@dataclass(frozen=True)
class ParentView:
    uid: str
    phase: str | None
    finished_at: datetime | None


JobView = ObjectView[BackgroundJobSpec, BackgroundJobStatus]


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class Plan:
    status: BackgroundJobStatus
    # Ready for this attempt: dispatch decides whether the pod is created now.
    ready_attempt: int | None = None
    ready_since: datetime | None = None
    wake_at: datetime | None = None
    delete_job: bool = False
    # Pods of attempts this plan ended before they ran (start deadline): they must not start late.
    delete_pods: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    # What happened in this step, for metrics (counted once the status write succeeded).
    finished_attempts: list[AttemptRecord] = field(default_factory=list)
    retry_scheduled: bool = False
    finished_phase: str | None = None


# ------------------------------------------------------------------------- pods


def pod_name(job_name: str, attempt: int) -> str:
    """Deterministic per attempt: a restarted operator finds the pod instead of making another."""
    return f"{job_name}-{attempt}"


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def pod_view(pod: Mapping[str, Any]) -> PodView:
    """Read a pod's outcome: the failing container (or the first) speaks for the attempt."""
    meta, status = pod.get("metadata", {}), pod.get("status") or {}
    terminated = [
        cs["state"]["terminated"]
        for cs in status.get("containerStatuses") or []
        if (cs.get("state") or {}).get("terminated")
    ]
    failing = [t for t in terminated if t.get("exitCode")]
    chosen = (failing or terminated or [None])[0]
    started = [_parse_time(t.get("startedAt")) for t in terminated if t.get("startedAt")]
    finished = [_parse_time(t.get("finishedAt")) for t in terminated if t.get("finishedAt")]
    message = (chosen or {}).get("message") or status.get("message")
    unschedulable = next(
        (
            c.get("message") or "the pod cannot be scheduled"
            for c in status.get("conditions") or []
            if c.get("type") == "PodScheduled" and c.get("reason") == "Unschedulable"
        ),
        None,
    )
    return PodView(
        name=meta["name"],
        attempt=int(meta.get("labels", {}).get(LABEL_ATTEMPT, "0")),
        phase=status.get("phase") or "Pending",
        started_at=min((s for s in started if s), default=_parse_time(status.get("startTime"))),
        finished_at=max((f for f in finished if f), default=None),
        exit_code=(chosen or {}).get("exitCode"),
        reason=status.get("reason") or (chosen or {}).get("reason"),
        message=message.strip()[:MESSAGE_LIMIT] if message else None,
        created_at=_parse_time(meta.get("creationTimestamp")),
        unschedulable=unschedulable[:MESSAGE_LIMIT] if unschedulable else None,
    )


# ------------------------------------------------------------------------- status helpers


def set_condition(
    conditions: list[Condition],
    type_: str,
    value: bool,
    reason: str,
    message: str,
    now: datetime,
    *,
    always: bool = False,
) -> None:
    """Set a metav1.Condition in place; lastTransitionTime moves only when the status flips.
    Like batch/v1 Job's, a condition appears once it is true, unless `always` is set."""
    state = "True" if value else "False"
    for i, c in enumerate(conditions):
        if c.type == type_:
            if c.status != state or c.reason != reason or c.message != message:
                changed_at = now if c.status != state else c.last_transition_time
                conditions[i] = Condition(
                    type=type_,
                    status=state,
                    reason=reason,
                    message=message,
                    last_transition_time=changed_at,
                )
            return
    if value or always:
        conditions.append(
            Condition(
                type=type_, status=state, reason=reason, message=message, last_transition_time=now
            )
        )


def _set(status: BackgroundJobStatus, phase: str, reason: str, message: str) -> None:
    status.phase = phase  # type: ignore[assignment]
    status.reason = reason
    status.message = message


def total_attempts(spec: BackgroundJobSpec, run_start: int) -> int:
    return run_start + spec.retry.attempts


def _record(pod: PodView, now: datetime) -> AttemptRecord:
    return AttemptRecord(
        attempt=pod.attempt,
        pod=pod.name,
        started_at=pod.started_at,
        finished_at=pod.finished_at or now,
        result="Succeeded" if pod.phase == "Succeeded" else "Failed",
        exit_code=pod.exit_code,
        reason=pod.reason or ("Completed" if pod.phase == "Succeeded" else "Error"),
        message=pod.message,
    )


def _failure_text(rec: AttemptRecord, spec: BackgroundJobSpec) -> str:
    if rec.reason == "DeadlineExceeded" and spec.timeout:
        return f"exceeded its {spec.timeout} deadline"
    if rec.reason in START_FAILURES:
        return f"did not start in time ({rec.reason}: {rec.message})"
    if rec.exit_code is not None:
        return f"failed with exit code {rec.exit_code}"
    return f"failed ({rec.reason})"


def nesting_depth(value: object) -> int:
    """How deep a JSON value nests (a scalar is 0, {} or [] is 1), without recursion: a hostile
    object may nest thousands of levels."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def invalid_spec(spec: BackgroundJobSpec, created_at: datetime) -> str | None:
    """What the CRD schema cannot check at admission."""
    if spec.task is not None:
        depth = nesting_depth(spec.task.args)
        if depth > TASK_ARGS_MAX_DEPTH:
            return f"task.args nests {depth} levels deep; the limit is {TASK_ARGS_MAX_DEPTH}"
        size = len(json.dumps(spec.task.args, separators=(",", ":")).encode())
        if size > TASK_ARGS_MAX_BYTES:
            return f"task.args is {size} bytes serialized; the limit is {TASK_ARGS_MAX_BYTES}"
    if spec.start_at is not None and spec.start_at > created_at + MAX_DURATION:
        # Measured from creation, so the verdict does not change as time passes.
        return f"startAt {rfc3339(spec.start_at)} is more than 10 years after the job's creation"
    return None


def dependency_cycle(
    start: str, after_of: Callable[[str], Sequence[str] | None]
) -> list[str] | None:
    """A chain of `after` references that leads from `start` back to it, if there is one
    (names in one namespace; `after_of` gives a job's parents, None for a job that does not
    exist). Iterative depth-first search: a chain may be long."""
    path: list[str] = [start]
    pending: list[list[str]] = [list(after_of(start) or ())]
    seen: set[str] = {start}
    while pending:
        if not pending[-1]:
            pending.pop()
            path.pop()
            continue
        name = pending[-1].pop()
        if name == start:
            return [*path, start]
        if name in seen:
            continue
        seen.add(name)
        path.append(name)
        pending.append(list(after_of(name) or ()))
    return None


# ------------------------------------------------------------------------- the machine


def decide(
    job: JobView,
    pods: Sequence[PodView],
    parents: Mapping[str, ParentView | None],
    now: datetime,
    default_ttl: timedelta | None = None,
    cycle: Sequence[str] = (),
    start_timeout: timedelta | None = None,
) -> Plan:
    """`cycle`: a chain of `after` references from this job back to itself, if one exists.
    `start_timeout`: how long a pod may take to start running when the job has no `timeout`
    (which is then its start deadline too); None = no limit."""
    status = job.status.model_copy(deep=True)
    status.observed_generation = job.generation
    plan = Plan(status=status)
    spec = job.spec

    # A requeue token on a finished job starts a new run; attempt numbers continue.
    token = job.annotations.get(ANNOTATION_REQUEUE)
    if token and token != status.requeue_token:
        status.requeue_token = token
        if status.phase in FINISHED_PHASES:
            status.run_start_attempt = status.attempt + 1
            status.finished_at = status.next_attempt_at = status.started_at = None
            status.enqueued_at = now
            for type_ in ("Complete", "Failed"):
                set_condition(
                    status.conditions, type_, False, "Requeued", "the job was requeued", now
                )
            _set(status, "Enqueued", "Requeued", "requeued with a fresh retry budget")
            plan.events.append(Event("Normal", "Requeued", f"requeued (token {token})"))
        else:
            plan.events.append(
                Event(
                    "Warning",
                    "RequeueIgnored",
                    f"requeue token {token} ignored: the job is {status.phase}, not finished",
                )
            )

    if status.phase in FINISHED_PHASES:
        return _finished(job, plan, now, default_ttl)

    problem = invalid_spec(spec, job.created_at)
    if problem and status.attempt == 0:
        return _fail(job, plan, "InvalidSpec", problem, now, default_ttl)
    if cycle and status.attempt == 0:
        chain = " -> ".join(cycle)
        return _fail(
            job, plan, "DependencyCycle", f"jobs wait for each other: {chain}", now, default_ttl
        )

    by_attempt = {p.attempt: p for p in pods}
    # Pods are the truth for attempts: after a crash the status may lag one step behind.
    current = max([status.attempt, *by_attempt])
    status.attempt = current
    run_start = status.run_start_attempt or 1
    recorded = {r.attempt for r in status.attempts}

    # Record every finished attempt of this run that the history does not have yet.
    for n in sorted(by_attempt):
        if by_attempt[n].terminated and n not in recorded and n >= run_start:
            rec = _record(by_attempt[n], now)
            status.attempts.append(rec)
            plan.finished_attempts.append(rec)
    del status.attempts[:-HISTORY_LIMIT]

    pod = by_attempt.get(current)
    if pod is not None and current > job.status.attempt:
        # An attempt whose start the status does not have yet: dispatch leaves that write to
        # the decision on its pod's first event (one write when the pod has already ended);
        # after a crash, the status may lag likewise. The attempt started with its pod.
        status.started_at = pod.created_at or now
    if pod is not None and not pod.terminated and current in recorded:
        # Ended by an earlier decision (start deadline) while its pod was still there.
        plan.delete_pods.append(pod.name)
        return _after_attempt(job, plan, pod, run_start, now, default_ttl)
    if pod is not None and not pod.terminated:
        expires = _start_expiry(pod, spec, start_timeout)
        if expires is not None and expires <= now:
            return _start_failed(job, plan, pod, run_start, now, default_ttl)
        plan.wake_at = expires
        status.next_attempt_at = None
        status.started_at = status.started_at or pod.started_at
        _set(
            status,
            "Running",
            "Started",
            f"attempt {current} of {total_attempts(spec, run_start)} running in pod {pod.name}",
        )
        return plan

    if pod is not None and current >= run_start:
        return _after_attempt(job, plan, pod, run_start, now, default_ttl)

    if status.phase == "Running" and current >= run_start and current not in recorded:
        # The pod of a running attempt is gone without an outcome (deleted, evicted, node lost).
        lost = PodView(
            name=pod_name(job.name, current),
            attempt=current,
            phase="Failed",
            reason="PodLost",
            message="the attempt's pod disappeared",
        )
        rec = _record(lost, now)
        status.attempts.append(rec)
        plan.finished_attempts.append(rec)
        return _after_attempt(job, plan, lost, run_start, now, default_ttl)

    return _before_attempt(job, plan, parents, now, default_ttl)


def _after_attempt(
    job: JobView,
    plan: Plan,
    pod: PodView,
    run_start: int,
    now: datetime,
    default_ttl: timedelta | None,
) -> Plan:
    status, spec = plan.status, job.spec
    rec = next(r for r in reversed(status.attempts) if r.attempt == pod.attempt)
    if rec.result == "Succeeded":
        status.finished_at = rec.finished_at
        status.next_attempt_at = None
        _set(status, "Succeeded", "Completed", f"attempt {pod.attempt} succeeded")
        set_condition(status.conditions, "Complete", True, "Completed", status.message or "", now)
        plan.finished_phase = "Succeeded"
        plan.events.append(Event("Normal", "Completed", status.message or ""))
        return _finished(job, plan, now, default_ttl)

    failures = pod.attempt - run_start + 1
    decision = retry_decision(spec.retry, failures, rec.exit_code, rec.reason == "DeadlineExceeded")
    total = total_attempts(spec, run_start)
    what = f"attempt {pod.attempt} of {total} {_failure_text(rec, spec)}"
    if not decision.retry:
        reason = decision.reason or "AttemptsExhausted"
        if spec.retry.on_exhausted == "Delete":
            plan.delete_job = True
            plan.finished_phase = "Failed"
            plan.events.append(
                Event("Warning", reason, f"{what}; deleting the job (onExhausted: Delete)")
            )
            return plan
        return _fail(job, plan, reason, what, now, default_ttl)

    # Once handled, the failure's retry time is persisted (Scheduled: nextAttemptAt; Enqueued:
    # already due): a restart or retry-now must not compute it again.
    due = {"Scheduled": status.next_attempt_at, "Enqueued": status.enqueued_at}.get(
        status.phase or ""
    )
    if due is None:
        delay = retry_delay(spec.retry, failures, seed=job.uid)
        due = (rec.finished_at or now) + delay
        plan.retry_scheduled = True
        plan.events.append(Event("Warning", "Retrying", f"{what}; next attempt at {rfc3339(due)}"))
    status.next_attempt_at = due
    _set(status, "Scheduled", "Retrying", f"{what}; next attempt at {rfc3339(due)}")
    return _when_due(job, plan, due, pod.attempt + 1, now)


def _start_expiry(
    pod: PodView, spec: BackgroundJobSpec, default: timedelta | None
) -> datetime | None:
    """When a pod that has not started running gives up: the job's timeout counted from the pod's
    creation (activeDeadlineSeconds counts only from a start that may never happen), else the
    operator-wide start timeout. None once it runs, or when nothing limits it."""
    if pod.phase != "Pending" or pod.created_at is None:
        return None
    limit = parse_duration(spec.timeout) if spec.timeout else default
    return None if limit is None else pod.created_at + limit


def _start_failed(
    job: JobView,
    plan: Plan,
    pod: PodView,
    run_start: int,
    now: datetime,
    default_ttl: timedelta | None,
) -> Plan:
    """End an attempt whose pod did not start in time, free its slot, follow the retry policy."""
    rec = AttemptRecord(
        attempt=pod.attempt,
        pod=pod.name,
        finished_at=now,
        result="Failed",
        reason="Unschedulable" if pod.unschedulable else "StartTimeout",
        message=pod.unschedulable or "the pod was not running by its start deadline",
    )
    plan.status.attempts.append(rec)
    del plan.status.attempts[:-HISTORY_LIMIT]
    plan.finished_attempts.append(rec)
    plan.delete_pods.append(pod.name)
    return _after_attempt(job, plan, pod, run_start, now, default_ttl)


def _before_attempt(
    job: JobView,
    plan: Plan,
    parents: Mapping[str, ParentView | None],
    now: datetime,
    default_ttl: timedelta | None,
) -> Plan:
    status, spec = plan.status, job.spec
    if status.attempt > 0 and status.phase == "Scheduled" and status.next_attempt_at:
        return _when_due(job, plan, status.next_attempt_at, status.attempt + 1, now)

    ready_since = job.created_at
    if spec.after and status.attempt == 0:
        waiting: list[str] = []
        hopeless: list[str] = []
        for ref in spec.after:
            parent = parents.get(ref.name)
            seen = status.parents.get(ref.name)
            if parent is None or (seen is not None and parent.uid != seen):
                if seen is not None:
                    return _fail(
                        job,
                        plan,
                        "JobDeleted",
                        f"job {ref.name}, which this job waits for, was deleted",
                        now,
                        default_ttl,
                    )
                waiting.append(f"{ref.name} (not found)")
                continue
            status.parents[ref.name] = parent.uid
            done = parent.phase == "Succeeded" or (
                spec.after_condition == "Finished" and parent.phase == "Failed"
            )
            if done:
                ready_since = max(ready_since, parent.finished_at or ready_since)
            elif parent.phase == "Failed":
                hopeless.append(ref.name)
            else:
                waiting.append(f"{ref.name} ({parent.phase or 'new'})")
        if hopeless:
            _set(
                status,
                "Awaiting",
                "ParentFailed",
                f"waiting for {', '.join(hopeless)} to succeed: failed, may still be requeued",
            )
            return plan
        if waiting:
            _set(status, "Awaiting", "WaitingForJobs", f"waiting for {', '.join(waiting)}")
            return plan

    due: datetime | None = None
    if status.attempt == 0 and spec.start_at is not None:
        due = spec.start_at
    elif status.attempt == 0 and spec.start_after:
        due = job.created_at + parse_duration(spec.start_after)
    moved = status.phase == "Scheduled" and status.retry_now_token and status.next_attempt_at
    if moved and due is not None and status.next_attempt_at is not None:
        due = min(due, status.next_attempt_at)  # retry-now skipped the rest of the delay
    if due is not None and due > now:
        status.next_attempt_at = due
        _set(status, "Scheduled", "Delayed", f"does not start before {rfc3339(due)}")
        return _when_due(job, plan, due, status.attempt + 1, now)
    return _ready(job, plan, status.attempt + 1, max(ready_since, due or ready_since))


def _when_due(job: JobView, plan: Plan, due: datetime, attempt: int, now: datetime) -> Plan:
    status = plan.status
    token = job.annotations.get(ANNOTATION_RETRY_NOW)
    if token and token != status.retry_now_token:
        status.retry_now_token = token
        if due > now:
            plan.events.append(
                Event("Normal", "RetryNow", f"skipping the remaining delay (token {token})")
            )
            due = now
            status.next_attempt_at = now
    if due > now:
        plan.wake_at = due
        return plan
    return _ready(job, plan, attempt, due)


def _ready(job: JobView, plan: Plan, attempt: int, since: datetime) -> Plan:
    status = plan.status
    status.next_attempt_at = None
    if status.phase != "Enqueued" or status.enqueued_at is None:
        status.enqueued_at = since
    if job.spec.suspend:
        _set(status, "Enqueued", "Suspended", "the job is suspended (spec.suspend)")
        return plan
    if job.spec.template is None:
        _set(
            status,
            "Enqueued",
            "NoPodTemplate",
            f"the job has no pod template and neither has its queue {job.spec.queue}",
        )
        return plan
    if status.phase != "Enqueued":
        _set(status, "Enqueued", "Ready", f"attempt {attempt} is ready")
    plan.ready_attempt = attempt
    plan.ready_since = status.enqueued_at
    return plan


def _fail(
    job: JobView,
    plan: Plan,
    reason: str,
    message: str,
    now: datetime,
    default_ttl: timedelta | None,
) -> Plan:
    plan.status = failed(plan.status, reason, message, now)
    plan.finished_phase = "Failed"
    plan.events.append(Event("Warning", reason, message))
    return _finished(job, plan, now, default_ttl)


def _finished(job: JobView, plan: Plan, now: datetime, default_ttl: timedelta | None) -> Plan:
    ttl_text = job.spec.ttl_after_finished
    ttl = parse_duration(ttl_text) if ttl_text else default_ttl
    finished_at = plan.status.finished_at
    if ttl is None or finished_at is None:
        return plan
    expires = finished_at + ttl
    if expires <= now:
        plan.delete_job = True
        plan.events.append(
            Event("Normal", "Expired", f"deleted {format_duration(ttl)} after it finished")
        )
    else:
        plan.wake_at = expires
    return plan


# ------------------------------------------------------------------------- dispatch outcomes


def only_starts(job: JobView, plan: Plan) -> bool:
    """Whether `plan` only records that a new attempt's pod exists: nothing ended, no Event."""
    return (
        plan.status.phase == "Running"
        and plan.status.attempt > job.status.attempt
        and not plan.events
        and not plan.finished_attempts
        and not plan.delete_pods
    )


def started(
    status: BackgroundJobStatus, spec: BackgroundJobSpec, attempt: int, pod: str, now: datetime
) -> BackgroundJobStatus:
    """The status once dispatch created the pod of `attempt`."""
    new = status.model_copy(deep=True)
    new.attempt = attempt
    new.next_attempt_at = None
    new.started_at = now
    run_start = new.run_start_attempt or 1
    _set(
        new,
        "Running",
        "Started",
        f"attempt {attempt} of {total_attempts(spec, run_start)} running in pod {pod}",
    )
    return new


def failed(
    status: BackgroundJobStatus, reason: str, message: str, now: datetime
) -> BackgroundJobStatus:
    """The status of a job that failed before its attempt could start (e.g. a pod template
    the API server refuses)."""
    new = status.model_copy(deep=True)
    new.finished_at, new.next_attempt_at = now, None
    _set(new, "Failed", reason, message)
    set_condition(new.conditions, "Failed", True, reason, message, now)
    return new


def waiting(status: BackgroundJobStatus, reason: str, message: str) -> BackgroundJobStatus:
    """The status of a ready job that dispatch could not start yet."""
    new = status.model_copy(deep=True)
    _set(new, "Enqueued", reason, message)
    return new
