"""Issue: the BackgroundJob lifecycle on the real control plane: retries with backoff, delayed
start, timeouts, continuations, batches, concurrency keys, requeue, retry-now, TTL, suspend and
operator crashes.

Timestamps written by the API server and the simulated kubelet have 1 s precision (truncated),
which every timing comparison below takes into account where it matters.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

from jobs_api import Jobs, job_spec
from kubernetes.client.exceptions import ApiException

from harness import wait_for
from operator_process import Operator

REQUEUE = "stoker.dev/requeue"
RETRY_NOW = "stoker.dev/retry-now"
# One second of timestamp precision: a gap measured between two truncated timestamps can read up
# to 1 s shorter than it really was.
PRECISION = timedelta(seconds=1)


def ts(value: Any) -> datetime:
    """An RFC 3339 string from a status, or a datetime from the typed pod client, as UTC."""
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def pod_created(jobs: Jobs, job: str) -> dict[int, datetime]:
    """Creation time of each of the job's pods, by attempt number."""
    return {
        int(p.metadata.labels["stoker.dev/attempt"]): ts(p.metadata.creation_timestamp)
        for p in jobs.pods(job)
    }


def pod_names(jobs: Jobs, job: str) -> list[str]:
    return sorted(p.metadata.name for p in jobs.pods(job))


def history(status: dict[str, Any]) -> list[tuple[int, str]]:
    return [(a["attempt"], a["result"]) for a in status.get("attempts") or []]


def follow(
    jobs: Jobs,
    name: str,
    done: Callable[[dict[str, Any]], bool],
    timeout: float = 60,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Poll the job's status until `done`; return the last status and every distinct state seen
    on the way (phase, reason, attempt, nextAttemptAt), to catch short-lived phases."""
    seen: list[dict[str, Any]] = []

    def step() -> dict[str, Any] | None:
        status = jobs.status(name)
        key = [status.get(k) for k in ("phase", "reason", "attempt", "nextAttemptAt")]
        if (
            not seen
            or [seen[-1].get(k) for k in ("phase", "reason", "attempt", "nextAttemptAt")] != key
        ):
            seen.append(status)
        return status if done(status) else None

    final = wait_for(step, timeout, 0.1, f"{jobs.namespace}/{name} to finish following")
    return final, seen


def finished(*phases: str) -> Callable[[dict[str, Any]], bool]:
    return lambda status: status.get("phase") in phases


def gone(jobs: Jobs, name: str) -> bool:
    try:
        jobs.get(name)
    except ApiException as e:
        if e.status == 404:
            return True
        raise
    return False


def stays(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    """Assert that predicate holds throughout `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert predicate(), what
        time.sleep(0.2)


# ------------------------------------------------------------------------- retries


def test_retries_wait_their_delays_and_succeed_on_attempt_3(jobs: Jobs) -> None:
    delays = [timedelta(seconds=2), timedelta(seconds=3)]
    spec = job_spec(
        sim={"fail-attempts": "2", "duration": "1s"},
        retry={"attempts": 3, "delays": ["2s", "3s"]},
    )
    jobs.create("flaky", spec)
    status, seen = follow(jobs, "flaky", finished("Succeeded", "Failed"))

    assert status["phase"] == "Succeeded"
    assert history(status) == [(1, "Failed"), (2, "Failed"), (3, "Succeeded")]
    assert status["attempt"] == 3
    retrying = [s for s in seen if (s.get("phase"), s.get("reason")) == ("Scheduled", "Retrying")]
    assert retrying, (
        f"never saw Scheduled/Retrying; saw {[(s['phase'], s['reason']) for s in seen]}"
    )
    finished_at = {a["attempt"]: ts(a["finishedAt"]) for a in status["attempts"]}
    for s in retrying:
        # The due time is attempt k's finishedAt plus the k-th delay, exactly.
        k = s["attempt"]
        assert ts(s["nextAttemptAt"]) == finished_at[k] + delays[k - 1], s

    created = pod_created(jobs, "flaky")
    assert sorted(created) == [1, 2, 3]
    for k, delay in enumerate(delays, start=1):
        gap = created[k + 1] - finished_at[k]
        print(f"retry gap after attempt {k}: {gap.total_seconds():.0f}s (delay {delay})")
        # Both timestamps are truncated to the second: allow one second less than the delay.
        assert gap >= delay - PRECISION, (k, gap)


def test_exhausted_retries_fail_the_job(jobs: Jobs) -> None:
    spec = job_spec(sim={"fail-attempts": "always"}, retry={"attempts": 2, "delays": ["1s"]})
    jobs.create("hopeless", spec)
    status = jobs.wait_phase("hopeless", "Failed")
    assert status["reason"] == "AttemptsExhausted"
    assert history(status) == [(1, "Failed"), (2, "Failed"), (3, "Failed")]
    assert pod_names(jobs, "hopeless") == ["hopeless-1", "hopeless-2", "hopeless-3"]
    assert {c["type"]: c["status"] for c in status["conditions"]}["Failed"] == "True"


def test_exhausted_retries_with_on_exhausted_delete_delete_the_job(jobs: Jobs) -> None:
    spec = job_spec(
        sim={"fail-attempts": "always", "duration": "2s"},
        # 3 s, not 1 s: a retry already due when the failure is seen skips its Scheduled write.
        retry={"attempts": 1, "delays": ["3s"], "onExhausted": "Delete"},
    )
    jobs.create("vanishing", spec)
    pods_seen: set[str] = set()
    phases_seen: list[tuple[str | None, int | None]] = []

    def deleted() -> bool:
        pods_seen.update(p.metadata.name for p in jobs.pods("vanishing"))
        try:
            status = jobs.status("vanishing")
        except ApiException as e:
            if e.status == 404:
                return True
            raise
        phases_seen.append((status.get("phase"), status.get("attempt")))
        return False

    wait_for(deleted, 60, 0.1, "vanishing to be deleted")
    # Both attempts ran before it went, and it never rested in Failed.
    assert pods_seen == {"vanishing-1", "vanishing-2"}
    assert ("Scheduled", 1) in phases_seen
    assert "Failed" not in {phase for phase, _ in phases_seen}
    events = jobs.core.list_namespaced_event(
        jobs.namespace, field_selector="involvedObject.name=vanishing"
    ).items
    assert any(
        e.reason == "AttemptsExhausted" and "onExhausted: Delete" in e.message for e in events
    )
    wait_for(lambda: not jobs.pods("vanishing"), 60, description="its pods to be collected")


def test_a_non_retryable_exit_code_fails_at_once(jobs: Jobs) -> None:
    spec = job_spec(
        sim={"fail-attempts": "always", "exit-code": "2"},
        retry={"attempts": 5, "delays": ["1s"], "onExitCodes": [75]},
    )
    jobs.create("bad-input", spec)
    status = jobs.wait_phase("bad-input", "Failed")
    assert status["reason"] == "NonRetryableExitCode"
    (attempt,) = status["attempts"]
    assert (attempt["attempt"], attempt["exitCode"]) == (1, 2)
    stays(lambda: pod_names(jobs, "bad-input") == ["bad-input-1"], 2, "no second attempt")


def test_a_timed_out_attempt_is_retried_then_fails(jobs: Jobs) -> None:
    spec = job_spec(sim={"duration": "60s"}, timeout="2s", retry={"attempts": 1, "delays": ["1s"]})
    jobs.create("slow", spec)
    status = jobs.wait_phase("slow", "Failed", timeout=60)
    assert status["reason"] == "AttemptsExhausted"
    assert "exceeded its 2s deadline" in status["message"]
    assert [(a["attempt"], a["result"], a["reason"]) for a in status["attempts"]] == [
        (1, "Failed", "DeadlineExceeded"),
        (2, "Failed", "DeadlineExceeded"),
    ]
    created = pod_created(jobs, "slow")
    for a in status["attempts"]:
        # Cut short by the deadline, not ended by the 60 s simulated run.
        assert ts(a["finishedAt"]) - created[a["attempt"]] < timedelta(seconds=30), a
    (pod,) = [p for p in jobs.pods("slow") if p.metadata.name == "slow-1"]
    assert pod.spec.active_deadline_seconds == 2


# ------------------------------------------------------------------------- delayed start


def test_start_after_delays_the_first_attempt(jobs: Jobs) -> None:
    created = ts(jobs.create("later", job_spec(startAfter="5s"))["metadata"]["creationTimestamp"])
    status = jobs.wait_phase("later", "Scheduled", timeout=10)
    assert status["reason"] == "Delayed"
    due = ts(status["nextAttemptAt"])
    assert due == created + timedelta(seconds=5)
    # No pod before the due time (stop checking a second early: clocks are read to the second).
    while datetime.now(UTC) < due - PRECISION:
        assert jobs.pods("later") == [], "a pod was created before startAfter elapsed"
        time.sleep(0.2)
    status = jobs.wait_phase("later", "Succeeded", timeout=30)
    assert pod_created(jobs, "later")[1] >= due
    assert ts(status["startedAt"]) >= due


def test_start_at_in_the_past_runs_at_once(jobs: Jobs) -> None:
    past = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    jobs.create("overdue", job_spec(startAt=past))
    status, seen = follow(jobs, "overdue", finished("Succeeded"), timeout=30)
    assert "Scheduled" not in [s.get("phase") for s in seen]
    assert history(status) == [(1, "Succeeded")]


# ------------------------------------------------------------------------- continuations


def test_a_three_step_chain_runs_in_order(jobs: Jobs) -> None:
    sim = {"duration": "2s"}
    jobs.create("create-invoice", job_spec(sim=sim))
    jobs.create("update-ledger", job_spec(sim=sim, after=[{"name": "create-invoice"}]))
    jobs.create("notify", job_spec(sim=sim, after=[{"name": "update-ledger"}]))
    status = jobs.wait_phase("notify", "Succeeded", timeout=60)
    assert history(status) == [(1, "Succeeded")]
    steps = ["create-invoice", "update-ledger", "notify"]
    for before, after in pairwise(steps):
        done = ts(jobs.status(before)["finishedAt"])
        started = pod_created(jobs, after)[1]
        print(f"{after} pod created {(started - done).total_seconds():.0f}s after {before} ended")
        assert started >= done, (before, after)


def test_a_batch_continuation_waits_for_all_twenty(jobs: Jobs) -> None:
    names = [f"part-{i:02d}" for i in range(20)]
    for i, name in enumerate(names):
        jobs.create(name, job_spec(sim={"duration": f"{i % 4}s"}))
    jobs.create("summarize", job_spec(after=[{"name": n} for n in names]))
    status, seen = follow(jobs, "summarize", finished("Succeeded", "Failed"), timeout=90)
    assert status["phase"] == "Succeeded"
    assert "Awaiting" in [s.get("phase") for s in seen]
    last_done = max(ts(jobs.status(n)["finishedAt"]) for n in names)
    assert all(jobs.status(n)["phase"] == "Succeeded" for n in names)
    assert pod_created(jobs, "summarize")[1] >= last_done


def test_a_continuation_applied_before_its_parent_waits_for_it(jobs: Jobs) -> None:
    jobs.create("child", job_spec(after=[{"name": "parent"}]))
    status = jobs.wait(
        lambda: (s := jobs.status("child")).get("phase") == "Awaiting" and s, 15, "child Awaiting"
    )
    assert status["reason"] == "WaitingForJobs"
    assert "parent (not found)" in status["message"]
    stays(lambda: jobs.pods("child") == [], 2, "the child started without its parent")
    jobs.create("parent", job_spec(sim={"duration": "1s"}))
    status = jobs.wait_phase("child", "Succeeded", timeout=60)
    assert pod_created(jobs, "child")[1] >= ts(jobs.status("parent")["finishedAt"])


def test_a_failed_parent_holds_the_child_until_requeued(jobs: Jobs) -> None:
    # Attempt 1 fails, there are no retries; the requeue's attempt 2 succeeds.
    jobs.create("parent", job_spec(sim={"fail-attempts": "1"}, retry={"attempts": 0}))
    jobs.create("child", job_spec(after=[{"name": "parent"}]))
    jobs.wait_phase("parent", "Failed")
    jobs.wait(lambda: jobs.status("child").get("reason") == "ParentFailed", 15, "ParentFailed")
    stays(
        lambda: jobs.status("child")["phase"] == "Awaiting" and not jobs.pods("child"),
        2,
        "the child of a failed parent must keep waiting",
    )
    jobs.annotate("parent", REQUEUE, "again-1")
    parent = jobs.wait(
        lambda: (s := jobs.status("parent")).get("phase") == "Succeeded" and s, 60, "requeued"
    )
    assert history(parent) == [(1, "Failed"), (2, "Succeeded")]
    jobs.wait_phase("child", "Succeeded", timeout=60)
    assert pod_created(jobs, "child")[1] >= ts(parent["finishedAt"])


def test_a_parent_seen_then_deleted_fails_the_child(jobs: Jobs) -> None:
    jobs.create("parent", job_spec(sim={"duration": "10m"}))
    jobs.create("child", job_spec(after=[{"name": "parent"}]))
    # The child has recorded the parent it waits for.
    jobs.wait(lambda: "parent" in (jobs.status("child").get("parents") or {}), 15, "parent seen")
    jobs.delete("parent")
    status = jobs.wait_phase("child", "Failed", timeout=30)
    assert status["reason"] == "JobDeleted"
    assert jobs.pods("child") == []


# ------------------------------------------------------------------------- concurrency key


def test_a_concurrency_key_lets_one_job_run_at_a_time(jobs: Jobs) -> None:
    sim = {"duration": "3s"}
    jobs.create("invoice-a", job_spec(sim=sim, concurrencyKey="invoice-42"))
    jobs.create("invoice-b", job_spec(sim=sim, concurrencyKey="invoice-42"))
    jobs.create("other", job_spec(sim={"duration": "6s"}, concurrencyKey="invoice-7"))
    both_keyed, other_alongside, held = False, False, False

    def all_done() -> bool:
        nonlocal both_keyed, other_alongside, held
        phases = {n: jobs.status(n) for n in ("invoice-a", "invoice-b", "other")}
        running = {n for n, s in phases.items() if s.get("phase") == "Running"}
        both_keyed |= {"invoice-a", "invoice-b"} <= running
        other_alongside |= "other" in running and bool(running & {"invoice-a", "invoice-b"})
        held |= any(s.get("reason") == "ConcurrencyKeyHeld" for s in phases.values())
        return all(s.get("phase") == "Succeeded" for s in phases.values())

    wait_for(all_done, 90, 0.1, "all three jobs to succeed")
    assert not both_keyed, "two jobs with the same concurrency key were Running together"
    assert held, "the second job of the key never waited with reason ConcurrencyKeyHeld"
    assert other_alongside, "a job with another key was held back"
    (a,) = jobs.status("invoice-a")["attempts"]
    (b,) = jobs.status("invoice-b")["attempts"]
    first, second = sorted([a, b], key=lambda r: ts(r["startedAt"]))
    print(
        f"keyed intervals: {first['startedAt']}..{first['finishedAt']}, "
        f"{second['startedAt']}..{second['finishedAt']}"
    )
    assert ts(second["startedAt"]) >= ts(first["finishedAt"])
    later = "invoice-b" if second is b else "invoice-a"
    assert pod_created(jobs, later)[1] >= ts(first["finishedAt"])


# ------------------------------------------------------------------------- operations


def test_requeue_of_a_failed_job_runs_it_again_once_per_token(jobs: Jobs) -> None:
    # Attempts 1-3 fail. Run 1 (attempts 1, 2) exhausts its single retry; the requeued run
    # gets a fresh budget: attempt 3 fails and is retried, attempt 4 succeeds.
    spec = job_spec(sim={"fail-attempts": "3"}, retry={"attempts": 1, "delays": ["1s"]})
    jobs.create("redo", spec)
    status = jobs.wait_phase("redo", "Failed")
    assert history(status) == [(1, "Failed"), (2, "Failed")]

    jobs.annotate("redo", REQUEUE, "token-1")
    status = jobs.wait(
        lambda: (s := jobs.status("redo")).get("phase") == "Succeeded" and s, 60, "requeued run"
    )
    assert history(status) == [(1, "Failed"), (2, "Failed"), (3, "Failed"), (4, "Succeeded")]
    assert status["requeueToken"] == "token-1"
    created = pod_created(jobs, "redo")
    assert created[3] >= ts(status["attempts"][1]["finishedAt"])

    # The same token again, alongside another change so that the operator does see the object
    # again: nothing runs.
    jobs.api.patch_namespaced_custom_object(
        "stoker.dev",
        "v1alpha1",
        jobs.namespace,
        "backgroundjobs",
        "redo",
        {"metadata": {"annotations": {REQUEUE: "token-1", "touched": "yes"}}},
    )
    stays(
        lambda: jobs.status("redo")["phase"] == "Succeeded" and len(jobs.pods("redo")) == 4,
        3,
        "the same requeue token ran the job again",
    )
    assert history(jobs.status("redo"))[-1] == (4, "Succeeded")


def test_retry_now_skips_a_long_retry_delay(jobs: Jobs) -> None:
    spec = job_spec(sim={"fail-attempts": "1"}, retry={"attempts": 1, "delays": ["1h"]})
    jobs.create("patient", spec)
    status = jobs.wait(
        lambda: (s := jobs.status("patient")).get("reason") == "Retrying" and s, 30, "Retrying"
    )
    assert status["phase"] == "Scheduled"
    due = ts(status["nextAttemptAt"])
    assert due == ts(status["attempts"][0]["finishedAt"]) + timedelta(hours=1)
    jobs.annotate("patient", RETRY_NOW, "now-1")
    status = jobs.wait_phase("patient", "Succeeded", timeout=30)
    assert history(status) == [(1, "Failed"), (2, "Succeeded")]
    assert pod_created(jobs, "patient")[2] < due - timedelta(minutes=55)


def test_ttl_after_finished_deletes_the_job(jobs: Jobs) -> None:
    jobs.create("short-lived", job_spec(ttlAfterFinished="3s"))
    status = jobs.wait_phase("short-lived", "Succeeded")
    expires = ts(status["finishedAt"]) + timedelta(seconds=3)
    # Still there until shortly before the TTL runs out (a second of precision, a second more
    # for the time the test takes to look).
    while datetime.now(UTC) < expires - 2 * PRECISION:
        assert not gone(jobs, "short-lived"), "deleted before its TTL"
        time.sleep(0.2)
    wait_for(lambda: gone(jobs, "short-lived"), 30, description="short-lived to be deleted")
    print(f"deleted {(datetime.now(UTC) - expires).total_seconds():.1f}s after finishedAt+ttl")


def test_a_suspended_job_waits_until_resumed(jobs: Jobs) -> None:
    jobs.create("held", job_spec(suspend=True))
    status = jobs.wait_phase("held", "Enqueued", timeout=15)
    assert status["reason"] == "Suspended"
    stays(lambda: jobs.pods("held") == [], 2, "a suspended job created a pod")
    assert jobs.status("held")["reason"] == "Suspended"
    jobs.patch_spec("held", {"suspend": False})
    status = jobs.wait_phase("held", "Succeeded", timeout=30)
    assert history(status) == [(1, "Succeeded")]


# ------------------------------------------------------------------------- crashes


def test_operator_killed_during_a_retry_delay_and_a_running_attempt(
    operator: Operator, jobs: Jobs
) -> None:
    retry = {"attempts": 2, "delays": ["4s"]}
    # "retry": attempt 1 fails fast, the kill lands in its 4 s retry delay; attempt 2 runs 4 s
    # and the second kill lands while it runs. "steady" simply runs through both kills.
    jobs.create("retry", job_spec(sim={"fail-attempts": "1", "duration": "4s"}, retry=retry))
    jobs.create("steady", job_spec(sim={"duration": "8s"}, retry=retry))
    jobs.create("quick", job_spec(sim={"fail-attempts": "1"}, retry=retry))
    try:
        jobs.wait(lambda: jobs.status("retry").get("reason") == "Retrying", 30, "retry delay")
        operator.kill()
        time.sleep(2)
    finally:
        operator.start()
    try:
        jobs.wait(
            lambda: (
                jobs.status("retry").get("phase") == "Running"
                and jobs.status("retry").get("attempt") == 2
            ),
            30,
            "attempt 2 running",
        )
        operator.kill()
        time.sleep(2)
    finally:
        operator.start()

    for name in ("retry", "steady", "quick"):
        status = jobs.wait_phase(name, ("Succeeded", "Failed"), timeout=60)
        assert status["phase"] == "Succeeded", (name, status)
        expected = [(1, "Succeeded")] if name == "steady" else [(1, "Failed"), (2, "Succeeded")]
        assert history(status) == expected, name
        attempts = [n for n, _ in expected]
        assert pod_names(jobs, name) == [f"{name}-{n}" for n in attempts], name
        assert [a["pod"] for a in status["attempts"]] == [f"{name}-{n}" for n in attempts]
    # The retry delay survived the crash: attempt 2 did not start early.
    status = jobs.status("retry")
    gap = pod_created(jobs, "retry")[2] - ts(status["attempts"][0]["finishedAt"])
    print(f"retry gap across an operator crash: {gap.total_seconds():.0f}s (delay 4s)")
    assert gap >= timedelta(seconds=4) - PRECISION
