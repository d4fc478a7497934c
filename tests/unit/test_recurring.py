"""The per-RecurringJob decision (stoker.core.recurring), with the clock injected.

Each test plays the reconciler: it calls decide() with the RecurringJob as stored, the jobs it
owns and `now`, then stores the plan's status as the next "as stored" view, the way the
operator's status write does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stoker.api.models import (
    ANNOTATION_SCHEDULED_AT,
    ANNOTATION_TRIGGER,
    LABEL_RECURRING_JOB,
    RecurringJobSpec,
    RecurringJobStatus,
    rfc3339,
)
from stoker.core import schedule
from stoker.core.recurring import (
    ChildView,
    NewJob,
    RecurringPlan,
    RecurringView,
    decide,
    job_body,
)

SECOND, MINUTE, HOUR = timedelta(seconds=1), timedelta(minutes=1), timedelta(hours=1)
# Created half a minute before 10:00, so 10:00 is the first slot of an every-minute schedule.
CREATED = datetime(2026, 5, 4, 9, 59, 30, tzinfo=UTC)
TEN = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
TEMPLATE = {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "x"}]}}}}


def rj(
    schedule_: str = "* * * * *",
    *,
    status: RecurringJobStatus | None = None,
    annotations: dict[str, str] | None = None,
    generation: int = 1,
    **spec: Any,
) -> RecurringView:
    return RecurringView(
        namespace="ns",
        name="report",
        uid="rj-uid",
        generation=generation,
        created_at=CREATED,
        annotations=annotations or {},
        spec=RecurringJobSpec.model_validate(
            {"schedule": schedule_, "jobTemplate": TEMPLATE, **spec}
        ),
        status=status or RecurringJobStatus(),
    )


def stored(view: RecurringView, plan: RecurringPlan) -> RecurringView:
    """The RecurringJob after the operator wrote the plan's status (second precision)."""
    wire = RecurringJobStatus.model_validate(plan.status.wire())
    return replace(view, status=wire)


def edited(view: RecurringView, **spec: Any) -> RecurringView:
    """The RecurringJob after a user changed its spec (the API server bumps generation)."""
    merged = {**view.spec.wire(), **spec}
    return replace(
        view, generation=view.generation + 1, spec=RecurringJobSpec.model_validate(merged)
    )


def child(
    name: str,
    phase: str | None = None,
    created_at: datetime = TEN,
    finished_at: datetime | None = None,
) -> ChildView:
    if phase in ("Succeeded", "Failed") and finished_at is None:
        finished_at = created_at + SECOND
    return ChildView(name=name, phase=phase, created_at=created_at, finished_at=finished_at)


def slot_job(slot: datetime) -> str:
    return schedule.job_name("report", slot)


def new_children(plan: RecurringPlan, at: datetime) -> list[ChildView]:
    return [child(new.name, created_at=at) for new in plan.create]


def reasons(plan: RecurringPlan) -> list[str]:
    return [e.reason for e in plan.events]


def settle(
    view: RecurringView, children: Sequence[ChildView], now: datetime
) -> tuple[RecurringView, RecurringPlan]:
    plan = decide(view, children, now)
    return stored(view, plan), plan


# ---------------------------------------------------------------- on time


def test_a_new_recurring_job_waits_for_its_first_slot() -> None:
    view = rj()
    plan = decide(view, [], CREATED + SECOND)
    assert plan.create == [] and plan.delete == []
    assert plan.wake_at == TEN
    status = plan.status
    assert status.next_schedule_time == TEN
    assert status.last_schedule_time is None and status.last_job is None
    assert status.active == []
    assert status.handled_until == CREATED
    assert status.observed_generation == 1
    (valid,) = status.conditions
    assert (valid.type, valid.status, valid.reason) == ("Valid", "True", "ScheduleValid")
    assert valid.message == "* * * * * in UTC"
    assert plan.events == [] and plan.missed == 0


def test_a_due_slot_creates_its_job_named_after_the_slot() -> None:
    view, _ = settle(rj(), [], CREATED + SECOND)
    plan = decide(view, [], TEN + timedelta(milliseconds=3))
    name = f"report-{int(TEN.timestamp()) // 60}"
    assert plan.create == [NewJob(name, TEN)]
    assert plan.status.last_schedule_time == TEN
    assert plan.status.next_schedule_time == TEN + MINUTE
    assert plan.status.last_job == name
    assert plan.status.active == [name]
    assert plan.status.handled_until == TEN
    assert plan.wake_at == TEN + MINUTE
    assert plan.missed == 0


def test_deciding_again_before_the_next_slot_creates_nothing() -> None:
    view, first = settle(rj(), [], CREATED + SECOND)
    view, first = settle(view, [], TEN)
    (new,) = first.create
    # The job's watch event wakes the RecurringJob again within the same minute.
    plan = decide(view, [child(new.name, created_at=TEN)], TEN + 2 * SECOND)
    assert plan.create == [] and plan.delete == []
    assert plan.status.active == [new.name]
    assert plan.status.last_job == new.name
    assert plan.status.wire() == view.status.wire()


def test_status_follows_its_jobs_to_the_end() -> None:
    view, _ = settle(rj(), [], CREATED + SECOND)
    first = slot_job(TEN)
    second = slot_job(TEN + MINUTE)
    view, _ = settle(view, [], TEN)
    running = [child(first, "Running", TEN)]
    view, plan = settle(view, running, TEN + MINUTE)
    assert plan.status.active == [first, second]  # Allow: both run

    done = [
        child(first, "Succeeded", TEN, TEN + 70 * SECOND),
        child(second, "Running", TEN + MINUTE),
    ]
    view, plan = settle(view, done, TEN + 71 * SECOND)
    assert plan.status.active == [second]
    assert plan.status.last_successful_time == TEN + 70 * SECOND
    assert plan.status.last_schedule_time == TEN + MINUTE
    assert plan.status.last_job == second

    failed = [done[0], child(second, "Failed", TEN + MINUTE, TEN + 80 * SECOND)]
    view, plan = settle(view, failed, TEN + 81 * SECOND)
    assert plan.status.active == []
    # A failure is not a success: lastSuccessfulTime stays.
    assert plan.status.last_successful_time == TEN + 70 * SECOND


def test_last_successful_time_survives_pruning_of_that_job() -> None:
    view = rj(status=RecurringJobStatus(last_successful_time=TEN, handled_until=TEN))
    plan = decide(view, [], TEN + 5 * SECOND)
    assert plan.status.last_successful_time == TEN


def test_the_time_zone_places_the_slots() -> None:
    view = rj("0 2 * * *", timeZone="Europe/Berlin")
    plan = decide(view, [], CREATED)
    # 02:00 in Berlin in May (CEST, UTC+2) is midnight UTC.
    assert plan.status.next_schedule_time == datetime(2026, 5, 5, 0, 0, tzinfo=UTC)


# ---------------------------------------------------------------- misfires

# Handled up to 10:00; the operator was down across 10:01 and 10:02.
AFTER_OUTAGE = RecurringJobStatus(handled_until=TEN, last_schedule_time=TEN)


@pytest.mark.parametrize(
    ("policy", "late", "runs", "missed"),
    [
        # Back 40 s after 10:02: later than half the minute to the next slot.
        ("RunOnce", 40, [TEN + 2 * MINUTE], 1),
        ("RunAll", 40, [TEN + MINUTE, TEN + 2 * MINUTE], 0),
        ("Skip", 40, [], 2),
        # Back 10 s after 10:02: that slot is still on time.
        ("RunOnce", 10, [TEN + 2 * MINUTE], 1),
        ("RunAll", 10, [TEN + MINUTE, TEN + 2 * MINUTE], 0),
        ("Skip", 10, [TEN + 2 * MINUTE], 1),
    ],
)
def test_misfire_policies_after_an_outage_across_two_slots(
    policy: str, late: int, runs: list[datetime], missed: int
) -> None:
    now = TEN + 2 * MINUTE + late * SECOND
    plan = decide(rj(misfirePolicy=policy, status=AFTER_OUTAGE), [], now)
    assert [new.slot for new in plan.create] == runs
    assert [new.name for new in plan.create] == [slot_job(s) for s in runs]
    assert plan.missed == missed
    # Skipped because the user asked for it, or missed because the operator was late.
    why = "Skip" if policy == "Skip" else "Late"
    assert plan.missed_by == ({why: missed} if missed else {})
    assert plan.status.handled_until == TEN + 2 * MINUTE
    assert plan.status.next_schedule_time == TEN + 3 * MINUTE
    assert plan.status.last_schedule_time == (runs[-1] if runs else TEN)
    assert ("MissedRuns" in reasons(plan)) == bool(missed)
    if missed:
        (event,) = [e for e in plan.events if e.reason == "MissedRuns"]
        assert event.type == "Warning"
        assert event.message == f"{missed} run(s) missed ({policy})"


def test_skip_keeps_a_minute_of_grace_for_a_slow_schedule() -> None:
    status = RecurringJobStatus(handled_until=TEN - HOUR)
    on_time = decide(rj("0 * * * *", misfirePolicy="Skip", status=status), [], TEN + 50 * SECOND)
    assert [n.slot for n in on_time.create] == [TEN]
    late = decide(rj("0 * * * *", misfirePolicy="Skip", status=status), [], TEN + 70 * SECOND)
    assert late.create == [] and late.missed == 1


def test_starting_deadline_drops_older_runs_and_says_so() -> None:
    view = rj(misfirePolicy="RunAll", startingDeadline="90s", status=AFTER_OUTAGE)
    plan = decide(view, [], TEN + 2 * MINUTE + 40 * SECOND)
    # 10:01 is 160 s old, past the deadline; 10:02 is 40 s old.
    assert [n.slot for n in plan.create] == [TEN + 2 * MINUTE]
    assert plan.missed == 1
    (event,) = plan.events
    assert event.message == "1 run(s) missed (RunAll, startingDeadline 90s)"


def test_run_all_catches_up_at_most_the_cap_and_says_so() -> None:
    status = RecurringJobStatus(handled_until=TEN)
    now = TEN + (schedule.MAX_CATCH_UP + 20) * MINUTE
    plan = decide(rj(misfirePolicy="RunAll", status=status), [], now)
    assert len(plan.create) == schedule.MAX_CATCH_UP
    assert plan.create[-1].slot == now
    assert plan.create[0].slot == now - (schedule.MAX_CATCH_UP - 1) * MINUTE
    assert plan.missed == 20
    assert reasons(plan) == ["MissedRuns", "CatchUpCapped"]
    assert plan.status.last_job == slot_job(now)


def test_a_slot_whose_job_exists_is_not_run_twice_after_a_lost_status_write() -> None:
    # The operator created 10:01's job, then died before writing the status.
    made = slot_job(TEN + MINUTE)
    running = [child(made, "Running", TEN + MINUTE)]
    for policy in ("Allow", "Forbid", "Replace"):
        view = rj(concurrencyPolicy=policy, status=AFTER_OUTAGE)
        plan = decide(view, running, TEN + MINUTE + 5 * SECOND)
        assert plan.create == [] and plan.delete == [], policy
        assert plan.missed == 0 and "SkippedForbid" not in reasons(plan), policy
        assert plan.status.last_schedule_time == TEN + MINUTE
        assert plan.status.last_job == made
        assert plan.status.active == [made]


# ---------------------------------------------------------------- concurrency policy

RUNNING_10_00 = [child(slot_job(TEN), "Running", TEN)]
AT_10_01 = TEN + MINUTE + 20 * timedelta(milliseconds=1)


def test_forbid_skips_a_slot_while_a_run_is_active() -> None:
    view = rj(concurrencyPolicy="Forbid", status=AFTER_OUTAGE)
    plan = decide(view, RUNNING_10_00, AT_10_01)
    assert plan.create == [] and plan.delete == []
    assert plan.missed == 1 and plan.missed_by == {"Forbid": 1}
    (event,) = plan.events
    assert (event.reason, event.type) == ("SkippedForbid", "Normal")
    assert slot_job(TEN) in event.message and "10:01:00Z" in event.message
    # Handled, so it is not run late when the active job ends.
    assert plan.status.handled_until == TEN + MINUTE
    assert plan.status.last_schedule_time == TEN
    assert plan.status.active == [slot_job(TEN)]
    assert plan.status.next_schedule_time == TEN + 2 * MINUTE

    view = stored(view, plan)
    finished = [child(slot_job(TEN), "Succeeded", TEN, TEN + 90 * SECOND)]
    later = decide(view, finished, TEN + 90 * SECOND)
    assert later.create == []
    at_10_02 = decide(stored(view, later), finished, TEN + 2 * MINUTE)
    assert [n.slot for n in at_10_02.create] == [TEN + 2 * MINUTE]


def test_forbid_runs_when_nothing_is_active() -> None:
    finished = [child(slot_job(TEN), "Failed", TEN)]
    plan = decide(rj(concurrencyPolicy="Forbid", status=AFTER_OUTAGE), finished, AT_10_01)
    assert [n.slot for n in plan.create] == [TEN + MINUTE]


def test_a_job_not_yet_reconciled_counts_as_active() -> None:
    fresh = [child(slot_job(TEN), None, TEN)]
    plan = decide(rj(concurrencyPolicy="Forbid", status=AFTER_OUTAGE), fresh, AT_10_01)
    assert plan.create == [] and plan.missed == 1


def test_forbid_with_run_all_runs_only_the_first_missed_slot() -> None:
    view = rj(concurrencyPolicy="Forbid", misfirePolicy="RunAll", status=AFTER_OUTAGE)
    plan = decide(view, [], TEN + 2 * MINUTE + SECOND)
    # 10:01's job is active when 10:02 is judged.
    assert [n.slot for n in plan.create] == [TEN + MINUTE]
    assert plan.missed == 1


def test_replace_deletes_the_running_job_and_creates_the_new_one() -> None:
    plan = decide(rj(concurrencyPolicy="Replace", status=AFTER_OUTAGE), RUNNING_10_00, AT_10_01)
    assert plan.delete == [slot_job(TEN)]
    assert plan.create == [NewJob(slot_job(TEN + MINUTE), TEN + MINUTE)]
    assert plan.status.active == [slot_job(TEN + MINUTE)]
    assert plan.status.last_job == slot_job(TEN + MINUTE)
    (event,) = plan.events
    assert event.reason == "Replaced"
    assert event.message == f"deleted {slot_job(TEN)} for {slot_job(TEN + MINUTE)}"


def test_allow_runs_beside_an_active_job() -> None:
    plan = decide(rj(status=AFTER_OUTAGE), RUNNING_10_00, AT_10_01)
    assert plan.delete == []
    assert [n.slot for n in plan.create] == [TEN + MINUTE]
    assert plan.status.active == [slot_job(TEN), slot_job(TEN + MINUTE)]


# ---------------------------------------------------------------- trigger


def test_each_new_trigger_token_runs_once_without_touching_the_schedule() -> None:
    view, _ = settle(rj("0 2 * * *"), [], CREATED + SECOND)
    next_run = view.status.next_schedule_time
    assert next_run == datetime(2026, 5, 5, 2, 0, tzinfo=UTC)

    view = replace(view, annotations={ANNOTATION_TRIGGER: "deploy-41"})
    plan = decide(view, [], TEN)
    name = schedule.trigger_job_name("report", "deploy-41")
    assert plan.create == [NewJob(name, None)]
    assert plan.status.trigger_token == "deploy-41"
    assert plan.status.last_job == name
    assert plan.status.active == [name]
    assert plan.status.last_schedule_time is None
    assert plan.status.next_schedule_time == next_run
    assert plan.wake_at == next_run
    assert [(e.reason, e.message) for e in plan.events] == [
        ("Triggered", f"created {name} (token deploy-41)")
    ]

    view = stored(view, plan)
    again = decide(view, [child(name, "Succeeded")], TEN + MINUTE)
    assert again.create == [] and again.events == []

    view = replace(stored(view, again), annotations={ANNOTATION_TRIGGER: "deploy-42"})
    third = decide(view, [child(name, "Succeeded")], TEN + 2 * MINUTE)
    assert [n.name for n in third.create] == [schedule.trigger_job_name("report", "deploy-42")]
    assert third.status.next_schedule_time == next_run


def test_a_trigger_runs_while_suspended() -> None:
    # "Run now" is an explicit request; suspend stops the schedule only (as CronJob's
    # suspend leaves jobs made from it by hand alone).
    view = rj(suspend=True, annotations={ANNOTATION_TRIGGER: "now"})
    plan = decide(view, [], TEN)
    assert [n.slot for n in plan.create] == [None]
    assert plan.status.next_schedule_time is None


def test_a_trigger_and_a_due_slot_in_one_decision_both_run() -> None:
    view = rj(status=AFTER_OUTAGE, annotations={ANNOTATION_TRIGGER: "x"})
    plan = decide(view, [], AT_10_01)
    assert [n.slot for n in plan.create] == [None, TEN + MINUTE]
    assert plan.status.last_job == slot_job(TEN + MINUTE)


# ---------------------------------------------------------------- suspend and edits


def test_suspend_runs_nothing_and_shows_no_next_run() -> None:
    view, plan = settle(rj(suspend=True), [], CREATED + SECOND)
    assert plan.status.next_schedule_time is None and plan.wake_at is None
    for now in (TEN, TEN + MINUTE, TEN + 5 * MINUTE + SECOND):
        view, plan = settle(view, [], now)
        assert plan.create == [] and plan.missed == 0 and plan.events == []
        assert plan.status.next_schedule_time is None and plan.wake_at is None
        assert plan.status.handled_until == now


def test_resume_runs_the_next_slot_and_not_the_suspended_ones() -> None:
    view, _ = settle(rj(suspend=True), [], CREATED + SECOND)
    view, _ = settle(view, [], TEN + 3 * MINUTE + 30 * SECOND)
    resumed = edited(view, suspend=False)
    view, plan = settle(resumed, [], TEN + 4 * MINUTE + 10 * SECOND)
    assert plan.create == [] and plan.missed == 0
    assert plan.status.next_schedule_time == TEN + 5 * MINUTE
    assert plan.status.observed_generation == 2
    plan = decide(view, [], TEN + 5 * MINUTE)
    assert [n.slot for n in plan.create] == [TEN + 5 * MINUTE]


def test_a_changed_schedule_takes_effect_at_once_without_running_its_past() -> None:
    view, plan = settle(rj("0 2 * * *"), [], CREATED + SECOND)
    assert plan.status.next_schedule_time == datetime(2026, 5, 5, 2, 0, tzinfo=UTC)
    # Edited at 10:30:30 to every minute: 10:00..10:30 were never promised by the new one.
    view, plan = settle(edited(view, schedule="* * * * *"), [], TEN + 30 * MINUTE + 30 * SECOND)
    assert plan.create == [] and plan.missed == 0
    assert plan.status.next_schedule_time == TEN + 31 * MINUTE
    assert plan.wake_at == TEN + 31 * MINUTE
    assert plan.status.observed_generation == 2
    assert plan.status.conditions[0].message == "* * * * * in UTC"
    plan = decide(view, [], TEN + 31 * MINUTE)
    assert [n.slot for n in plan.create] == [TEN + 31 * MINUTE]


def test_a_changed_time_zone_moves_the_next_run() -> None:
    view, plan = settle(rj("0 12 * * *"), [], CREATED + SECOND)
    assert plan.status.next_schedule_time == datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
    plan = decide(edited(view, timeZone="Asia/Tokyo"), [], TEN)
    # Noon in Tokyo (UTC+9) is 03:00 UTC, already past today.
    assert plan.status.next_schedule_time == datetime(2026, 5, 5, 3, 0, tzinfo=UTC)


# ---------------------------------------------------------------- invalid input


@pytest.mark.parametrize(
    ("cron", "zone", "message"),
    [
        (
            "* * * * *",
            "Mars/Base",
            "unknown time zone 'Mars/Base': use an IANA name such as Europe/Berlin or UTC",
        ),
        ("61 * * * *", "UTC", "minute field '61' is not valid"),
        ("0 0 30 2 *", "UTC", "schedule '0 0 30 2 *' never fires"),
    ],
)
def test_an_unusable_schedule_sets_valid_false_with_a_clear_message(
    cron: str, zone: str, message: str
) -> None:
    view = rj(cron, timeZone=zone)
    plan = decide(view, [], TEN)
    assert plan.create == [] and plan.wake_at is None
    assert plan.status.next_schedule_time is None
    (valid,) = plan.status.conditions
    assert (valid.type, valid.status, valid.reason) == ("Valid", "False", "InvalidSchedule")
    assert message in valid.message
    assert valid.last_transition_time == TEN
    (event,) = plan.events
    assert (event.type, event.reason) == ("Warning", "InvalidSchedule")
    assert message in event.message

    # Seen again: same status, no second Event.
    again = decide(stored(view, plan), [], TEN + MINUTE)
    assert again.events == []
    assert again.status.wire() == stored(view, plan).status.wire()


def test_fixing_an_invalid_schedule_makes_it_valid_and_schedules_from_now() -> None:
    view, _ = settle(rj(timeZone="Mars/Base"), [], CREATED + SECOND)
    view, plan = settle(edited(view, timeZone="UTC"), [], TEN + 5 * MINUTE + SECOND)
    (valid,) = plan.status.conditions
    assert (valid.status, valid.reason) == ("True", "ScheduleValid")
    assert valid.last_transition_time == TEN + 5 * MINUTE + SECOND
    # The slots while it was invalid are not made up.
    assert plan.create == [] and plan.missed == 0
    assert plan.status.next_schedule_time == TEN + 6 * MINUTE


def test_a_next_schedule_time_is_cleared_when_the_schedule_turns_invalid() -> None:
    view, plan = settle(rj(), [], CREATED + SECOND)
    assert plan.status.next_schedule_time is not None
    plan = decide(edited(view, timeZone="Nowhere/Else"), [], CREATED + 2 * SECOND)
    assert plan.status.next_schedule_time is None


# ---------------------------------------------------------------- history


def test_history_limits_keep_the_newest_finished_jobs_of_each_kind() -> None:
    jobs = [
        child("report-s1", "Succeeded", TEN, TEN + 1 * MINUTE),
        child("report-s2", "Succeeded", TEN, TEN + 3 * MINUTE),
        child("report-s3", "Succeeded", TEN, TEN + 2 * MINUTE),
        child("report-f1", "Failed", TEN, TEN + 1 * MINUTE),
        child("report-f2", "Failed", TEN, TEN + 4 * MINUTE),
        child("report-r", "Running", TEN),
        child("report-n", None, TEN),
    ]
    view = rj(successfulJobsHistoryLimit=1, failedJobsHistoryLimit=1, status=AFTER_OUTAGE)
    plan = decide(view, jobs, TEN + 5 * SECOND)
    assert sorted(plan.delete) == ["report-f1", "report-s1", "report-s3"]
    assert plan.status.last_successful_time == TEN + 3 * MINUTE
    assert plan.status.active == ["report-r", "report-n"]


def test_default_history_limits_keep_three_succeeded_and_one_failed() -> None:
    jobs = [child(f"report-s{i}", "Succeeded", TEN, TEN + i * SECOND) for i in range(5)]
    jobs += [child(f"report-f{i}", "Failed", TEN, TEN + i * SECOND) for i in range(3)]
    plan = decide(rj(status=AFTER_OUTAGE), jobs, TEN + 5 * SECOND)
    assert plan.delete == ["report-f0", "report-s0", "report-f1", "report-s1"]


def test_history_limit_zero_deletes_every_finished_job() -> None:
    jobs = [child("report-a", "Succeeded"), child("report-b", "Failed"), child("report-c")]
    view = rj(successfulJobsHistoryLimit=0, failedJobsHistoryLimit=0, status=AFTER_OUTAGE)
    assert sorted(decide(view, jobs, TEN + 5 * SECOND).delete) == ["report-a", "report-b"]


# ---------------------------------------------------------------- the job


def body(**template_meta: Any) -> dict[str, Any]:
    template = {**TEMPLATE, "metadata": template_meta} if template_meta else TEMPLATE
    return {
        "apiVersion": "stoker.dev/v1alpha1",
        "kind": "RecurringJob",
        "metadata": {"name": "report", "namespace": "ns", "uid": "rj-uid"},
        "spec": {"schedule": "* * * * *", "jobTemplate": template},
    }


def test_job_body_is_the_template_owned_labelled_and_stamped_with_its_slot() -> None:
    source = body(labels={"team": "a"}, annotations={"note": "x"})
    job = job_body(source, slot_job(TEN), TEN)
    meta = job["metadata"]
    assert (job["apiVersion"], job["kind"]) == ("stoker.dev/v1alpha1", "BackgroundJob")
    assert (meta["name"], meta["namespace"]) == (slot_job(TEN), "ns")
    assert meta["labels"] == {"team": "a", LABEL_RECURRING_JOB: "report"}
    assert meta["annotations"] == {"note": "x", ANNOTATION_SCHEDULED_AT: rfc3339(TEN)}
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "stoker.dev/v1alpha1",
            "kind": "RecurringJob",
            "name": "report",
            "uid": "rj-uid",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert job["spec"] == TEMPLATE["spec"]
    # The RecurringJob itself is left as it was.
    assert source["spec"]["jobTemplate"]["metadata"]["labels"] == {"team": "a"}


def test_a_triggered_job_has_no_slot_annotation() -> None:
    job = job_body(body(), "report-tabc", None)
    assert job["metadata"]["annotations"] == {}
    assert job["metadata"]["labels"] == {LABEL_RECURRING_JOB: "report"}
