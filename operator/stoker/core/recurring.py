"""What a RecurringJob does now: which jobs to create and delete, what its status says.

Pure: the loop passes the RecurringJob, the jobs it owns and `now`. Job names come from
the slot time (or the trigger token), so a restarted operator that repeats a decision meets
AlreadyExists instead of running a slot twice. `status.handledUntil` records how far slots
have been handled; slots missed while the operator was down are judged by misfirePolicy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from stoker.api.durations import parse_duration
from stoker.api.models import (
    ANNOTATION_SCHEDULED_AT,
    ANNOTATION_TRIGGER,
    API_VERSION,
    FINISHED_PHASES,
    LABEL_RECURRING_JOB,
    RecurringJobSpec,
    RecurringJobStatus,
    rfc3339,
)
from stoker.core import schedule
from stoker.core.lifecycle import Event, set_condition
from stoker.core.objects import ObjectView


@dataclass(frozen=True)
class ChildView:
    """A BackgroundJob this RecurringJob created."""

    name: str
    phase: str | None
    created_at: datetime
    finished_at: datetime | None


RecurringView = ObjectView[RecurringJobSpec, RecurringJobStatus]


@dataclass(frozen=True)
class NewJob:
    name: str
    slot: datetime | None  # None for a triggered run


@dataclass
class RecurringPlan:
    status: RecurringJobStatus
    create: list[NewJob] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    wake_at: datetime | None = None
    events: list[Event] = field(default_factory=list)
    missed: int = 0
    # The missed runs by why: Late (the operator was down or behind: deadline, RunOnce, the
    # RunAll cap), Skip (misfirePolicy Skip) or Forbid (concurrencyPolicy): the user asked for
    # the last two, so an alert on missed runs looks at Late only.
    missed_by: dict[str, int] = field(default_factory=dict)

    def miss(self, reason: str, count: int = 1) -> None:
        self.missed += count
        self.missed_by[reason] = self.missed_by.get(reason, 0) + count


def decide(rj: RecurringView, children: Sequence[ChildView], now: datetime) -> RecurringPlan:
    status = rj.status.model_copy(deep=True)
    spec = rj.spec
    plan = RecurringPlan(status=status)
    spec_changed = status.observed_generation not in (None, rj.generation)
    status.observed_generation = rj.generation

    try:
        sched = schedule.parse(spec.schedule, spec.time_zone)
        deadline = parse_duration(spec.starting_deadline) if spec.starting_deadline else None
    except (schedule.ScheduleError, ValueError) as e:
        status.next_schedule_time = None
        if _valid(status, False, "InvalidSchedule", str(e), now):
            plan.events.append(Event("Warning", "InvalidSchedule", str(e)))
        return plan
    _valid(status, True, "ScheduleValid", f"{spec.schedule} in {spec.time_zone}", now)

    active = [
        c.name
        for c in sorted(children, key=lambda c: c.created_at)
        if c.phase not in FINISHED_PHASES
    ]
    succeeded = [c.finished_at for c in children if c.phase == "Succeeded" and c.finished_at]
    if succeeded:
        status.last_successful_time = max(
            [*succeeded, *filter(None, [status.last_successful_time])]
        )

    token = rj.annotations.get(ANNOTATION_TRIGGER)
    if token and token != status.trigger_token:
        status.trigger_token = token
        name = schedule.trigger_job_name(rj.name, token)
        plan.create.append(NewJob(name, None))
        plan.events.append(Event("Normal", "Triggered", f"created {name} (token {token})"))

    # A schedule changed in Git takes effect from now: its past slots were never promised.
    last = status.handled_until or rj.created_at
    if spec_changed or spec.suspend:
        last = max(last, now)
    status.handled_until = last
    if spec.suspend:
        status.next_schedule_time = None
    else:
        slots = schedule.due_slots(sched, last, now, spec.misfire_policy, deadline)
        status.next_schedule_time = slots.next_slot
        plan.wake_at = slots.next_slot
        if slots.latest_due is not None:
            status.handled_until = slots.latest_due
        if slots.missed:
            plan.miss("Skip" if spec.misfire_policy == "Skip" else "Late", slots.missed)
            plan.events.append(
                Event(
                    "Warning",
                    "MissedRuns",
                    f"{slots.missed} run(s) missed ({spec.misfire_policy}"
                    + (f", startingDeadline {spec.starting_deadline}" if deadline else "")
                    + ")",
                )
            )
        if slots.capped:
            plan.events.append(
                Event(
                    "Warning",
                    "CatchUpCapped",
                    f"more than {schedule.MAX_CATCH_UP} runs were missed; "
                    f"catching up the latest {schedule.MAX_CATCH_UP} only",
                )
            )
        existing = {c.name for c in children}
        for slot in slots.run:
            name = schedule.job_name(rj.name, slot)
            if name in existing:
                # Created by an earlier decision whose status write was lost (a restart): the
                # slot has run, and Forbid or Replace must not judge it against its own job.
                status.last_schedule_time, status.last_job = slot, name
                continue
            verdict = schedule.concurrency_decision(spec.concurrency_policy, active)
            if not verdict.run:
                plan.miss("Forbid")
                plan.events.append(
                    Event(
                        "Normal",
                        "SkippedForbid",
                        f"run at {rfc3339(slot)} skipped: {', '.join(active)} still active",
                    )
                )
                continue
            plan.delete += [n for n in verdict.delete if n not in plan.delete]
            active = [n for n in active if n not in verdict.delete]
            plan.create.append(NewJob(name, slot))
            active.append(name)
            status.last_schedule_time = slot
            if verdict.delete:
                plan.events.append(
                    Event("Normal", "Replaced", f"deleted {', '.join(verdict.delete)} for {name}")
                )

    if plan.create:
        status.last_job = plan.create[-1].name
    for new in plan.create:
        if new.name not in active:
            active.append(new.name)
    status.active = active

    finished = [
        (c.name, c.phase or "", c.finished_at or c.created_at)
        for c in children
        if c.phase in FINISHED_PHASES
    ]
    plan.delete += schedule.prune_history(
        finished, spec.successful_jobs_history_limit, spec.failed_jobs_history_limit
    )
    return plan


def _valid(status: RecurringJobStatus, ok: bool, reason: str, message: str, now: datetime) -> bool:
    """Set the Valid condition; True when it changed (an Event is worth posting)."""
    before = [c.model_copy() for c in status.conditions]
    set_condition(status.conditions, "Valid", ok, reason, message, now, always=True)
    return before != status.conditions


def job_body(rj: Mapping[str, Any], name: str, slot: datetime | None) -> dict[str, Any]:
    """The BackgroundJob for one run: the template as the user wrote it, owned and labelled."""
    meta = rj["metadata"]
    template = rj["spec"]["jobTemplate"]
    tmeta = template.get("metadata") or {}
    annotations = dict(tmeta.get("annotations") or {})
    if slot is not None:
        annotations[ANNOTATION_SCHEDULED_AT] = rfc3339(slot)
    return {
        "apiVersion": API_VERSION,
        "kind": "BackgroundJob",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": {**(tmeta.get("labels") or {}), LABEL_RECURRING_JOB: meta["name"]},
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "RecurringJob",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": template["spec"],
    }
