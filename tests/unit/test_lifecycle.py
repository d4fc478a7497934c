"""The BackgroundJob phase machine, with the clock injected."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stoker.api.models import BackgroundJobSpec, BackgroundJobStatus
from stoker.core import lifecycle
from stoker.core.lifecycle import JobView, ParentView, PodView, decide, pod_view, started

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


def job(
    spec: dict[str, Any] | None = None,
    status: BackgroundJobStatus | None = None,
    annotations: dict[str, str] | None = None,
    name: str = "j",
) -> JobView:
    body = {"template": {"spec": {"containers": [{"name": "main", "image": "x"}]}}, **(spec or {})}
    return JobView(
        namespace="ns",
        name=name,
        uid="uid-1",
        generation=1,
        created_at=T0,
        annotations=annotations or {},
        spec=BackgroundJobSpec.model_validate(body),
        status=status or BackgroundJobStatus(),
    )


def pod(
    attempt: int,
    phase: str,
    exit_code: int | None = None,
    reason: str | None = None,
    finished: datetime | None = None,
) -> PodView:
    return PodView(
        name=f"j-{attempt}",
        attempt=attempt,
        phase=phase,
        started_at=T0,
        finished_at=finished or (T0 if phase in ("Succeeded", "Failed") else None),
        exit_code=exit_code,
        reason=reason,
    )


def run(view: JobView, attempt: int, now: datetime = T0) -> JobView:
    """The job as stored after dispatch started `attempt`."""
    plan = decide(view, [], {}, now)
    assert plan.ready_attempt == attempt
    status = started(plan.status, view.spec, attempt, f"j-{attempt}", now)
    return JobView(**{**view.__dict__, "status": status})


def with_status(view: JobView, status: BackgroundJobStatus) -> JobView:
    return JobView(**{**view.__dict__, "status": status})


# ---------------------------------------------------------------- fire and forget


def test_a_new_job_is_ready_for_attempt_1() -> None:
    plan = decide(job(), [], {}, T0)
    assert plan.ready_attempt == 1
    assert plan.status.phase == "Enqueued"
    assert plan.ready_since == T0


def test_running_pod_means_running() -> None:
    view = run(job(), 1)
    plan = decide(view, [pod(1, "Running")], {}, T0)
    assert (plan.status.phase, plan.status.reason, plan.status.attempt) == ("Running", "Started", 1)
    assert plan.ready_attempt is None


def test_succeeded_pod_completes_the_job_with_history() -> None:
    view = run(job(), 1)
    plan = decide(view, [pod(1, "Succeeded", exit_code=0)], {}, T0 + timedelta(seconds=5))
    s = plan.status
    assert (s.phase, s.reason) == ("Succeeded", "Completed")
    assert [c.type for c in s.conditions if c.status == "True"] == ["Complete"]
    assert [(a.attempt, a.result, a.exit_code) for a in s.attempts] == [(1, "Succeeded", 0)]
    assert plan.finished_phase == "Succeeded"


def test_failure_without_retries_fails_with_exit_code_and_message() -> None:
    view = run(job({"retry": {"attempts": 0}}), 1)
    failed = PodView(
        name="j-1",
        attempt=1,
        phase="Failed",
        exit_code=3,
        reason="Error",
        message="boom",
        finished_at=T0,
    )
    s = decide(view, [failed], {}, T0).status
    assert (s.phase, s.reason) == ("Failed", "AttemptsExhausted")
    assert "exit code 3" in (s.message or "")
    assert s.attempts[-1].message == "boom" and s.attempts[-1].exit_code == 3
    assert [c.type for c in s.conditions if c.status == "True"] == ["Failed"]


def test_crash_after_pod_create_before_status_write_adopts_the_pod() -> None:
    # Status still says nothing; the pod of attempt 1 exists: no second pod, status Running.
    plan = decide(job(), [pod(1, "Running")], {}, T0)
    assert plan.ready_attempt is None
    assert (plan.status.phase, plan.status.attempt) == ("Running", 1)


def test_crash_after_pod_finished_records_it_once() -> None:
    plan = decide(job({"retry": {"attempts": 0}}), [pod(1, "Failed", exit_code=1)], {}, T0)
    assert plan.status.phase == "Failed"
    again = decide(
        with_status(job({"retry": {"attempts": 0}}), plan.status),
        [pod(1, "Failed", exit_code=1)],
        {},
        T0,
    )
    assert len(again.status.attempts) == 1
    assert again.finished_attempts == []


def test_pod_lost_while_running_counts_as_failed_attempt() -> None:
    view = run(job({"retry": {"attempts": 1, "delays": ["10s"]}}), 1)
    plan = decide(view, [], {}, T0 + timedelta(seconds=3))
    assert plan.status.attempts[-1].reason == "PodLost"
    assert (plan.status.phase, plan.status.reason) == ("Scheduled", "Retrying")


def test_pod_view_reads_the_failing_container() -> None:
    body = {
        "metadata": {"name": "j-2", "labels": {"stoker.dev/attempt": "2"}},
        "status": {
            "phase": "Failed",
            "containerStatuses": [
                {
                    "state": {
                        "terminated": {
                            "exitCode": 0,
                            "startedAt": "2026-11-21T10:00:00Z",
                            "finishedAt": "2026-11-21T10:00:01Z",
                        }
                    }
                },
                {
                    "state": {
                        "terminated": {
                            "exitCode": 75,
                            "reason": "Error",
                            "message": " try later\n",
                            "startedAt": "2026-11-21T10:00:00Z",
                            "finishedAt": "2026-11-21T10:00:04Z",
                        }
                    }
                },
            ],
        },
    }
    v = pod_view(body)
    assert (v.attempt, v.exit_code, v.reason, v.message) == (2, 75, "Error", "try later")
    assert v.finished_at == T0 + timedelta(seconds=4)


def test_deadline_exceeded_pod_reason_wins() -> None:
    body = {
        "metadata": {"name": "j-1", "labels": {"stoker.dev/attempt": "1"}},
        "status": {"phase": "Failed", "reason": "DeadlineExceeded", "message": "too long"},
    }
    assert pod_view(body).timed_out


# ---------------------------------------------------------------- retries


@pytest.mark.parametrize(
    ("retry", "expected_delays"),
    [
        ({"attempts": 3, "delays": ["60s", "5m"]}, [60, 300, 300]),
        (
            {"attempts": 3, "backoff": {"initial": "10s", "factor": 2, "max": "25s", "jitter": 0}},
            [10, 20, 25],
        ),
    ],
)
def test_retry_delays_follow_the_policy(retry: dict[str, Any], expected_delays: list[int]) -> None:
    view = job({"retry": retry})
    now = T0
    delays = []
    for attempt in range(1, 5):
        view = run(view, attempt, now)
        finished = now + timedelta(seconds=1)
        plan = decide(
            view,
            [pod(a, "Failed", 1, finished=finished) for a in range(1, attempt + 1)],
            {},
            finished,
        )
        view = with_status(view, plan.status)
        if attempt == 4:
            assert (plan.status.phase, plan.status.reason) == ("Failed", "AttemptsExhausted")
            break
        assert (plan.status.phase, plan.status.reason) == ("Scheduled", "Retrying")
        assert plan.status.next_attempt_at is not None
        delays.append(int((plan.status.next_attempt_at - finished).total_seconds()))
        assert plan.wake_at == plan.status.next_attempt_at
        now = plan.status.next_attempt_at
    assert delays == expected_delays


def test_non_retryable_exit_code_fails_at_once() -> None:
    view = run(job({"retry": {"attempts": 5, "onExitCodes": [75]}}), 1)
    s = decide(view, [pod(1, "Failed", exit_code=2)], {}, T0).status
    assert (s.phase, s.reason) == ("Failed", "NonRetryableExitCode")


def test_timeout_is_retried_like_any_failure() -> None:
    view = run(job({"timeout": "30s", "retry": {"attempts": 1, "delays": ["1s"]}}), 1)
    s = decide(view, [pod(1, "Failed", exit_code=137, reason="DeadlineExceeded")], {}, T0).status
    assert s.attempts[-1].reason == "DeadlineExceeded"
    assert (s.phase, s.reason) == ("Scheduled", "Retrying")
    assert "deadline" in (s.message or "")


def test_retry_due_time_is_kept_across_restarts() -> None:
    view = run(job({"retry": {"attempts": 2}}), 1)
    first = decide(view, [pod(1, "Failed", 1)], {}, T0)
    later = decide(
        with_status(view, first.status), [pod(1, "Failed", 1)], {}, T0 + timedelta(seconds=2)
    )
    assert later.status.next_attempt_at == first.status.next_attempt_at
    assert later.retry_scheduled is False  # counted once


def test_retry_now_skips_the_remaining_delay_once() -> None:
    view = run(job({"retry": {"attempts": 2, "delays": ["1h"]}}), 1)
    scheduled = decide(view, [pod(1, "Failed", 1)], {}, T0).status
    poked = with_status(
        job(
            {"retry": {"attempts": 2, "delays": ["1h"]}}, annotations={"stoker.dev/retry-now": "a"}
        ),
        scheduled,
    )
    now = T0 + timedelta(minutes=1)
    plan = decide(poked, [pod(1, "Failed", 1)], {}, now)
    assert plan.ready_attempt == 2
    assert plan.status.retry_now_token == "a"
    assert [e.reason for e in plan.events] == ["RetryNow"]
    # The same token again, after a restart that lost nothing: still due now, no new event.
    again = decide(with_status(poked, plan.status), [pod(1, "Failed", 1)], {}, now)
    assert again.ready_attempt == 2 and again.events == []


def test_on_exhausted_delete_deletes_the_job() -> None:
    view = run(job({"retry": {"attempts": 0, "onExhausted": "Delete"}}), 1)
    plan = decide(view, [pod(1, "Failed", 1)], {}, T0)
    assert plan.delete_job and plan.finished_phase == "Failed"


# ---------------------------------------------------------------- delayed start


def test_start_after_is_scheduled_then_ready() -> None:
    view = job({"startAfter": "90s"})
    plan = decide(view, [], {}, T0 + timedelta(seconds=10))
    assert (plan.status.phase, plan.status.reason) == ("Scheduled", "Delayed")
    assert plan.wake_at == T0 + timedelta(seconds=90)
    due = decide(with_status(view, plan.status), [], {}, T0 + timedelta(seconds=90))
    assert due.ready_attempt == 1 and due.ready_since == T0 + timedelta(seconds=90)


def test_start_at_in_the_past_runs_now() -> None:
    plan = decide(job({"startAt": "2026-11-21T09:00:00Z"}), [], {}, T0)
    assert plan.ready_attempt == 1


def test_suspended_job_waits_with_reason() -> None:
    plan = decide(job({"suspend": True}), [], {}, T0)
    assert (plan.status.phase, plan.status.reason, plan.ready_attempt) == (
        "Enqueued",
        "Suspended",
        None,
    )


# ---------------------------------------------------------------- continuations


def parent(phase: str | None, uid: str = "p-uid") -> ParentView:
    return ParentView(uid=uid, phase=phase, finished_at=T0 + timedelta(seconds=7))


@pytest.mark.parametrize(
    ("condition", "parents", "phase", "reason"),
    [
        ("Succeeded", {"a": None}, "Awaiting", "WaitingForJobs"),
        ("Succeeded", {"a": parent("Running")}, "Awaiting", "WaitingForJobs"),
        ("Succeeded", {"a": parent("Failed")}, "Awaiting", "ParentFailed"),
        ("Finished", {"a": parent("Failed")}, "Enqueued", "Ready"),
        ("Succeeded", {"a": parent("Succeeded")}, "Enqueued", "Ready"),
        (
            "Succeeded",
            {"a": parent("Succeeded"), "b": parent("Running", "b")},
            "Awaiting",
            "WaitingForJobs",
        ),
    ],
)
def test_continuations_wait_for_all_parents(
    condition: str, parents: dict[str, ParentView | None], phase: str, reason: str
) -> None:
    view = job({"after": [{"name": n} for n in parents], "afterCondition": condition})
    s = decide(view, [], parents, T0).status
    assert (s.phase, s.reason) == (phase, reason)


def test_continuation_ready_since_parent_finished() -> None:
    view = job({"after": [{"name": "a"}]})
    plan = decide(view, [], {"a": parent("Succeeded")}, T0 + timedelta(seconds=9))
    assert plan.ready_since == T0 + timedelta(seconds=7)


def test_a_parent_seen_then_deleted_fails_the_child() -> None:
    view = job({"after": [{"name": "a"}]})
    seen = decide(view, [], {"a": parent("Running")}, T0).status
    assert seen.parents == {"a": "p-uid"}
    s = decide(with_status(view, seen), [], {"a": None}, T0).status
    assert (s.phase, s.reason) == ("Failed", "JobDeleted")


def test_a_parent_never_seen_keeps_the_child_waiting() -> None:
    s = decide(job({"after": [{"name": "a"}]}), [], {"a": None}, T0).status
    assert (s.phase, s.reason) == ("Awaiting", "WaitingForJobs")
    assert "a (not found)" in (s.message or "")


# ---------------------------------------------------------------- requeue and TTL


def finished_job(
    phase: str, spec: dict[str, Any] | None = None, annotations: dict[str, str] | None = None
) -> JobView:
    view = run(job(spec), 1)
    outcome = pod(1, phase, 0 if phase == "Succeeded" else 1)
    s = decide(view, [outcome], {}, T0).status
    return with_status(job(spec, annotations=annotations), s)


def test_requeue_starts_a_new_run_with_fresh_budget_once() -> None:
    done = finished_job(
        "Failed", {"retry": {"attempts": 0}}, annotations={"stoker.dev/requeue": "x"}
    )
    plan = decide(done, [pod(1, "Failed", 1)], {}, T0 + timedelta(minutes=1))
    assert plan.ready_attempt == 2
    assert plan.status.requeue_token == "x" and plan.status.run_start_attempt == 2
    assert len(plan.status.attempts) == 1  # history kept
    assert [e.reason for e in plan.events] == ["Requeued"]
    assert all(c.status == "False" for c in plan.status.conditions)
    # Attempt 2 fails again: with attempts 0 the new run is over, and the token is not reused.
    view = with_status(done, started(plan.status, done.spec, 2, "j-2", T0))
    s = decide(view, [pod(1, "Failed", 1), pod(2, "Failed", 1)], {}, T0).status
    assert (s.phase, s.attempt, len(s.attempts)) == ("Failed", 2, 2)


def test_requeue_on_a_running_job_is_ignored_with_an_event() -> None:
    view = with_status(job(annotations={"stoker.dev/requeue": "x"}), run(job(), 1).status)
    plan = decide(view, [pod(1, "Running")], {}, T0)
    assert plan.status.phase == "Running"
    assert [e.reason for e in plan.events] == ["RequeueIgnored"]


def test_ttl_deletes_after_finish() -> None:
    done = finished_job("Succeeded", {"ttlAfterFinished": "1m"})
    assert decide(done, [], {}, T0 + timedelta(seconds=30)).wake_at == T0 + timedelta(minutes=1)
    assert decide(done, [], {}, T0 + timedelta(minutes=1)).delete_job


def test_operator_default_ttl_applies_when_unset() -> None:
    done = finished_job("Succeeded")
    assert not decide(done, [], {}, T0 + timedelta(days=9)).delete_job
    assert decide(done, [], {}, T0 + timedelta(hours=1), default_ttl=timedelta(hours=1)).delete_job


def test_oversized_task_args_fail_with_invalid_spec() -> None:
    big = {"task": {"name": "t", "args": {"blob": "x" * (32 * 1024)}}}
    s = decide(job(big), [], {}, T0).status
    assert (s.phase, s.reason) == ("Failed", "InvalidSpec")


def test_no_status_change_means_no_patch() -> None:
    from stoker.api.models import status_patch

    view = run(job(), 1)
    plan = decide(view, [pod(1, "Running")], {}, T0)
    assert status_patch(view.status.wire(), plan.status) == {}


# ---------------------------------------------------------------- properties


@settings(max_examples=150, deadline=None)
@given(
    attempts=st.integers(min_value=0, max_value=4),
    outcomes=st.lists(st.sampled_from(["ok", "fail", "lost"]), min_size=1, max_size=8),
    crashes=st.lists(st.booleans(), min_size=40, max_size=40),
    requeue=st.booleans(),
)
def test_simulated_runs_never_duplicate_an_attempt(
    attempts: int, outcomes: list[str], crashes: list[bool], requeue: bool
) -> None:
    """Drive the machine like the reconciler does, dropping status writes at random (a crash
    between a pod write and a status write). Pods are the truth; no attempt gets two pods,
    no run exceeds attempts + 1, and the job ends as its last pod ended."""
    spec = {
        "retry": {"attempts": attempts, "backoff": {"initial": "1s", "max": "4s", "jitter": 0.5}}
    }
    status = BackgroundJobStatus()
    pods: dict[int, PodView] = {}
    annotations: dict[str, str] = {}
    now = T0
    outcome_iter = iter(outcomes)
    for step in range(40):
        view = job(spec, status, dict(annotations))
        plan = decide(view, list(pods.values()), {}, now)
        crash = crashes[step]
        if not crash:
            status = plan.status
        if plan.status.phase in ("Succeeded", "Failed"):
            if requeue and "stoker.dev/requeue" not in annotations:
                annotations["stoker.dev/requeue"] = "again"
                continue
            break
        if plan.ready_attempt is not None:
            assert plan.ready_attempt not in pods, "an attempt would get a second pod"
            attempt = plan.ready_attempt
            pods[attempt] = PodView(
                name=f"j-{attempt}", attempt=attempt, phase="Running", started_at=now
            )
            if not crashes[(step + 7) % 40]:
                status = started(plan.status, view.spec, attempt, f"j-{attempt}", now)
        else:
            running = [p for p in pods.values() if not p.terminated]
            for p in running:
                outcome = next(outcome_iter, "ok")
                if outcome == "lost":
                    del pods[p.attempt]
                else:
                    pods[p.attempt] = PodView(
                        name=p.name,
                        attempt=p.attempt,
                        phase="Succeeded" if outcome == "ok" else "Failed",
                        started_at=p.started_at,
                        finished_at=now,
                        exit_code=0 if outcome == "ok" else 1,
                    )
        if plan.wake_at is not None:
            bound = timedelta(seconds=4 * 1.5)
            assert plan.wake_at - now <= bound + timedelta(seconds=1)
            now = max(now, plan.wake_at)
        now += timedelta(seconds=1)
    run_start = status.run_start_attempt or 1
    assert status.attempt - run_start + 1 <= attempts + 1
    if status.phase == "Succeeded":
        assert pods[status.attempt].phase == "Succeeded"
    if status.phase == "Failed":
        assert status.attempts[-1].result == "Failed"


def test_history_is_capped_at_20() -> None:
    view = job({"retry": {"attempts": 30, "delays": ["0s"]}})
    status = view.status
    pods: list[PodView] = []
    for attempt in range(1, 26):
        status = started(status, view.spec, attempt, f"j-{attempt}", T0)
        pods.append(pod(attempt, "Failed", 1))
        status = decide(with_status(view, status), pods, {}, T0).status
    assert len(status.attempts) == lifecycle.HISTORY_LIMIT
    assert status.attempts[-1].attempt == 25
