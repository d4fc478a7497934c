"""RecurringJob on the real control plane: cron slots, concurrency, suspend, trigger, misfires,
bad input, history, edits, deletion and metrics.

Scenarios that need real minutes share one timeline (the `minutes` fixture), so the file waits
for about four minutes in all instead of several each: it creates every every-minute
RecurringJob at once, snapshots the cluster a few seconds after each slot, stops the operator
across two slots and starts it again. Each test then asserts on its part of those snapshots.
The other scenarios use triggers and far-away schedules and take seconds.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import kubernetes
import pytest
from jobs_api import Jobs, job_spec
from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families

from harness import Cluster, create_namespace, wait_for
from operator_process import Operator

RJ = "recurringjobs"
MINUTE = timedelta(minutes=1)
# creationTimestamp has 1 s precision (truncated); the target is 1 s of lag. A run
# later than this bound was not created at its slot.
LAG_BOUND = timedelta(seconds=5)
# A far-away schedule: scenarios that must not see a slot fire use it.
YEARLY = "0 0 1 1 *"


def rj_spec(
    schedule: str = "* * * * *", sim: dict[str, str] | None = None, **extra: Any
) -> dict[str, Any]:
    return {"schedule": schedule, "jobTemplate": {"spec": job_spec(sim=sim)}, **extra}


def ts(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def minutes(slot: datetime) -> int:
    return int(slot.timestamp()) // 60


def slot_of(job: dict[str, Any]) -> datetime | None:
    name = job["metadata"]["name"]
    suffix = name.rsplit("-", 1)[-1]
    return datetime.fromtimestamp(int(suffix) * 60, UTC) if suffix.isdigit() else None


def runs_of(jobs: dict[str, dict[str, Any]], rj: str) -> dict[str, dict[str, Any]]:
    return {
        name: job
        for name, job in jobs.items()
        if job["metadata"].get("labels", {}).get("stoker.dev/recurring-job") == rj
    }


def metric(text: str, name: str, **labels: str) -> float | None:
    """One sample of the operator's /metrics, or None when the series is absent."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def reasons_for(jobs: Jobs, name: str) -> set[str]:
    events = jobs.core.list_namespaced_event(
        jobs.namespace, field_selector=f"involvedObject.name={name}"
    ).items
    return {e.reason for e in events}


def sleep_until(moment: datetime) -> None:
    delay = (moment - datetime.now(UTC)).total_seconds()
    if delay > 0:
        time.sleep(delay)


# ---------------------------------------------------------------- quick scenarios


def test_a_trigger_runs_once_per_new_token_and_leaves_the_schedule(jobs: Jobs) -> None:
    jobs.create("adhoc", rj_spec(YEARLY), kind="RecurringJob", plural=RJ)
    before = jobs.wait(lambda: jobs.status("adhoc", RJ).get("nextScheduleTime"), 30)

    def runs() -> list[str]:
        return sorted(j["metadata"]["name"] for j in jobs.list(selector="stoker.dev/recurring-job"))

    jobs.annotate("adhoc", "stoker.dev/trigger", "deploy-41", RJ)
    (first,) = jobs.wait(runs, 30, "the job of token deploy-41")
    jobs.wait_phase(first, "Succeeded")
    # The same token seen again (any other change wakes the RecurringJob) creates nothing.
    jobs.annotate("adhoc", "example.com/touched", "1", RJ)
    jobs.wait(lambda: jobs.status("adhoc", RJ).get("lastJob") == first, 30, "lastJob")
    time.sleep(3)
    assert runs() == [first]

    jobs.annotate("adhoc", "stoker.dev/trigger", "deploy-42", RJ)
    both = jobs.wait(lambda: r if len(r := runs()) == 2 else None, 30, "token deploy-42")
    (second,) = set(both) - {first}
    status = jobs.wait(
        lambda: s if (s := jobs.status("adhoc", RJ)).get("lastJob") == second else None, 30
    )
    assert status["nextScheduleTime"] == before
    assert "lastScheduleTime" not in status  # a trigger is not a slot
    job = jobs.get(second)
    assert job["metadata"]["labels"]["stoker.dev/recurring-job"] == "adhoc"
    assert "stoker.dev/scheduled-at" not in (job["metadata"].get("annotations") or {})
    assert "Triggered" in reasons_for(jobs, "adhoc")
    time.sleep(2)
    assert len(runs()) == 2


def test_history_limits_keep_only_the_newest_finished_runs(jobs: Jobs) -> None:
    jobs.create(
        "tidy",
        rj_spec(YEARLY, successfulJobsHistoryLimit=1),
        kind="RecurringJob",
        plural=RJ,
    )
    failing = rj_spec(YEARLY, sim={"fail-attempts": "always"}, failedJobsHistoryLimit=1)
    failing["jobTemplate"]["spec"]["retry"] = {"attempts": 0}
    jobs.create("broken", failing, kind="RecurringJob", plural=RJ)

    made: dict[str, list[str]] = {"tidy": [], "broken": []}
    for token in ("a", "b", "c"):
        for rj, phase in (("tidy", "Succeeded"), ("broken", "Failed")):
            jobs.annotate(rj, "stoker.dev/trigger", token, RJ)
            name = jobs.wait(
                lambda rj=rj: next(
                    (
                        j["metadata"]["name"]
                        for j in jobs.list(selector=f"stoker.dev/recurring-job={rj}")
                        if j["metadata"]["name"] not in made[rj]
                    ),
                    None,
                ),
                30,
                f"the run of {rj} for token {token}",
            )
            made[rj].append(name)
            jobs.wait_phase(name, phase)
            # Finish times have 1 s precision: keep "newest" unambiguous.
            time.sleep(1.1)

    for rj in ("tidy", "broken"):

        def left(rj: str = rj) -> list[str] | None:
            names = [
                j["metadata"]["name"] for j in jobs.list(selector=f"stoker.dev/recurring-job={rj}")
            ]
            return names if len(names) == 1 else None

        assert jobs.wait(left, 60, f"pruning of {rj}'s runs") == [made[rj][-1]]
    status = jobs.status("tidy", RJ)
    assert status["lastSuccessfulTime"] == jobs.status(made["tidy"][-1])["finishedAt"]
    assert not status.get("active")


def test_a_changed_schedule_takes_effect_at_once(jobs: Jobs) -> None:
    jobs.create("moving", rj_spec(YEARLY, timeZone="UTC"), kind="RecurringJob", plural=RJ)
    first = jobs.wait(lambda: jobs.status("moving", RJ).get("nextScheduleTime"), 30)
    assert first == f"{datetime.now(UTC).year + 1}-01-01T00:00:00Z"

    jobs.patch_spec("moving", {"schedule": "0 12 * * *", "timeZone": "Asia/Tokyo"}, RJ)
    now = datetime.now(UTC)
    noon_tokyo = now.replace(hour=3, minute=0, second=0, microsecond=0)
    if noon_tokyo <= now:
        noon_tokyo += timedelta(days=1)
    started = time.monotonic()
    status = jobs.wait(
        lambda: s if (s := jobs.status("moving", RJ)).get("nextScheduleTime") != first else None,
        15,
        "the new nextScheduleTime",
    )
    print(f"new schedule seen in status after {time.monotonic() - started:.1f} s")
    assert status["nextScheduleTime"] == ts(noon_tokyo)
    assert status["observedGeneration"] == 2
    assert "lastScheduleTime" not in status  # the new schedule's past did not run
    assert jobs.list(selector="stoker.dev/recurring-job=moving") == []


def test_deleting_a_recurring_job_removes_its_jobs(jobs: Jobs) -> None:
    jobs.create("doomed", rj_spec(YEARLY, sim={"duration": "10m"}), kind="RecurringJob", plural=RJ)
    jobs.annotate("doomed", "stoker.dev/trigger", "1", RJ)
    (run,) = jobs.wait(
        lambda: jobs.list(selector="stoker.dev/recurring-job=doomed"), 30, "the triggered run"
    )
    name = run["metadata"]["name"]
    jobs.wait_phase(name, "Running")
    wait_for(lambda: jobs.pods(name), 30, description=f"the pod of {name}")
    (owner,) = run["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("RecurringJob", "doomed", True)

    jobs.delete("doomed", RJ)
    wait_for(
        lambda: not jobs.list(selector="stoker.dev/recurring-job=doomed"),
        60,
        description="garbage collection of the RecurringJob's runs",
    )
    wait_for(lambda: not jobs.pods(name), 60, description=f"garbage collection of {name}'s pod")


def test_an_unknown_time_zone_is_reported_and_the_others_keep_working(
    jobs: Jobs, operator: Operator
) -> None:
    jobs.create("martian", rj_spec(timeZone="Mars/Base"), kind="RecurringJob", plural=RJ)
    jobs.create("bad-minute", rj_spec("61 * * * *"), kind="RecurringJob", plural=RJ)
    jobs.create("earthly", rj_spec(YEARLY), kind="RecurringJob", plural=RJ)

    def valid(name: str) -> dict[str, Any] | None:
        for c in jobs.status(name, RJ).get("conditions") or []:
            if c["type"] == "Valid":
                return dict(c)
        return None

    martian = jobs.wait(lambda: valid("martian"), 30, "Valid on martian")
    assert (martian["status"], martian["reason"]) == ("False", "InvalidSchedule")
    assert martian["message"] == (
        "unknown time zone 'Mars/Base': use an IANA name such as Europe/Berlin or UTC"
    )
    minute = jobs.wait(lambda: valid("bad-minute"), 30, "Valid on bad-minute")
    assert minute["status"] == "False"
    assert "minute field '61' is not valid" in minute["message"]
    assert "nextScheduleTime" not in jobs.status("martian", RJ)
    assert "InvalidSchedule" in reasons_for(jobs, "martian")

    # The operator is alive and still serves the others.
    assert operator.proc is not None and operator.proc.poll() is None
    jobs.wait(lambda: valid("earthly"), 30, "Valid on earthly")
    assert valid("earthly")["status"] == "True"  # type: ignore[index]
    jobs.annotate("earthly", "stoker.dev/trigger", "still-alive", RJ)
    (run,) = jobs.wait(
        lambda: jobs.list(selector="stoker.dev/recurring-job=earthly"), 30, "a run of earthly"
    )
    jobs.wait_phase(run["metadata"]["name"], "Succeeded")
    assert jobs.list(selector="stoker.dev/recurring-job=martian") == []


def test_a_name_too_long_for_its_runs_is_refused_at_admission(jobs: Jobs) -> None:
    with pytest.raises(ApiException) as refused:
        jobs.create("a" * 53, rj_spec(), kind="RecurringJob", plural=RJ)
    assert refused.value.status == 422
    assert "name must be at most 52 characters" in str(refused.value.body)
    jobs.create("a" * 52, rj_spec(YEARLY), kind="RecurringJob", plural=RJ)


@pytest.mark.parametrize(
    "schedule",
    ["0 * * * * *", "* * * *", "@every 5m", ""],
)
def test_a_malformed_cron_is_refused_at_admission(jobs: Jobs, schedule: str) -> None:
    with pytest.raises(ApiException) as refused:
        jobs.create("refused", rj_spec(schedule), kind="RecurringJob", plural=RJ)
    assert refused.value.status == 422
    message = (
        refused.value.body.decode()
        if isinstance(refused.value.body, bytes)
        else str(refused.value.body)
    )
    expected = (
        "should be at least 1 chars long"
        if not schedule
        else ("schedule must have 5 fields (minute hour day-of-month month day-of-week)")
    )
    assert expected in message


def test_the_next_run_gauge_follows_the_recurring_job(jobs: Jobs, operator: Operator) -> None:
    jobs.create("gauged", rj_spec(YEARLY), kind="RecurringJob", plural=RJ)
    nxt = parse_ts(jobs.wait(lambda: jobs.status("gauged", RJ).get("nextScheduleTime"), 30))

    def series() -> float | None:
        return metric(
            operator.metrics(),
            "stoker_recurring_next_run_timestamp_seconds",
            namespace=jobs.namespace,
            recurringjob="gauged",
        )

    assert wait_for(series, 15, description="the next-run series") == nxt.timestamp()
    jobs.delete("gauged", RJ)
    wait_for(lambda: series() is None, 15, description="the next-run series to disappear")


# ---------------------------------------------------------------- the shared timeline


@dataclass
class Snapshot:
    at: datetime
    rjs: dict[str, dict[str, Any]]
    jobs: dict[str, dict[str, Any]]
    metrics: str = ""
    table: str = ""


@dataclass
class Timeline:
    namespace: str
    first: datetime  # T0: the first slot of every RecurringJob here
    before: Snapshot  # just after creation, before T0
    at_first: Snapshot  # T0 + a few seconds (paused still suspended)
    at_second: Snapshot  # T0 + 1 min + a few seconds
    after_restart: Snapshot  # the operator was down across T0 + 2 min and T0 + 3 min
    resumed_next: str | None  # paused's nextScheduleTime right after resuming it
    stopped_at: datetime  # when the operator was killed
    started_at: datetime  # when it was started again

    def slot(self, n: int) -> datetime:
        return self.first + n * MINUTE

    def name(self, rj: str, n: int) -> str:
        return f"{rj}-{minutes(self.slot(n))}"


# RecurringJob -> spec; every one fires each minute.
TIMELINE = {
    "fire": rj_spec(sim={"duration": "20s"}),
    "forbid": rj_spec(sim={"duration": "100s"}, concurrencyPolicy="Forbid"),
    "replace": rj_spec(sim={"duration": "10m"}, concurrencyPolicy="Replace"),
    "paused": rj_spec(suspend=True),
    "runonce": rj_spec(misfirePolicy="RunOnce"),
    "runall": rj_spec(misfirePolicy="RunAll"),
    "skip": rj_spec(misfirePolicy="Skip"),
}
SETTLE = timedelta(seconds=8)  # how long after a slot its snapshot is taken
# Skip's grace for an every-minute schedule is half a minute: restarting later than that
# after the last missed slot makes it late, and well before the next slot keeps it missed.
RESTART_AFTER_SLOT = timedelta(seconds=35)


def _snapshot(jobs: Jobs, cluster: Cluster, operator: Operator) -> Snapshot:
    at = datetime.now(UTC)
    return Snapshot(
        at=at,
        rjs={r["metadata"]["name"]: r for r in jobs.list(RJ)},
        jobs={j["metadata"]["name"]: j for j in jobs.list()},
        metrics=operator.metrics() if operator.proc and operator.proc.poll() is None else "",
        table=cluster.kubectl("get", "rj", "--namespace", jobs.namespace),
    )


@pytest.fixture(scope="module")
def minutes_timeline(
    cluster: Cluster,
    operator: Operator,
    api: kubernetes.client.CustomObjectsApi,
    core: kubernetes.client.CoreV1Api,
) -> Iterator[tuple[Timeline, Jobs]]:
    namespace = create_namespace(cluster, "t-rj-")
    jobs = Jobs(api, core, namespace)
    try:
        # Create everything well before a minute boundary, so that boundary is everyone's T0.
        now = datetime.now(UTC)
        boundary = now.replace(second=0, microsecond=0) + MINUTE
        if boundary - now < timedelta(seconds=8):
            sleep_until(boundary + timedelta(seconds=1))
        for name, spec in TIMELINE.items():
            jobs.create(name, spec, kind="RecurringJob", plural=RJ)
        created = max(parse_ts(r["metadata"]["creationTimestamp"]) for r in jobs.list(RJ))
        first = created.replace(second=0) + MINUTE
        wait_for(
            lambda: all(r.get("status", {}).get("observedGeneration") == 1 for r in jobs.list(RJ)),
            30,
            description="the first status of every RecurringJob",
        )
        before = _snapshot(jobs, cluster, operator)

        sleep_until(first + SETTLE)
        at_first = _snapshot(jobs, cluster, operator)
        jobs.patch_spec("paused", {"suspend": False}, RJ)
        resumed_next: str | None = None
        with contextlib.suppress(AssertionError):
            resumed_next = wait_for(lambda: jobs.status("paused", RJ).get("nextScheduleTime"), 15)

        sleep_until(first + MINUTE + SETTLE)
        at_second = _snapshot(jobs, cluster, operator)

        stopped_at = datetime.now(UTC)
        operator.kill()
        sleep_until(first + 3 * MINUTE + RESTART_AFTER_SLOT)
        started_at = datetime.now(UTC)
        operator.start()
        sleep_until(started_at + timedelta(seconds=12))
        # A loaded machine may take longer to start the operator: wait until it has handled the
        # outage (each RecurringJob looks to T0 + 4 min), but no later than that slot itself.
        next_slot = ts(first + 4 * MINUTE)
        with contextlib.suppress(AssertionError):
            wait_for(
                lambda: all(
                    jobs.status(name, RJ).get("nextScheduleTime") == next_slot
                    for name in ("runonce", "runall", "skip")
                ),
                max(0.0, (first + 4 * MINUTE - datetime.now(UTC)).total_seconds() - 3),
            )
        after_restart = _snapshot(jobs, cluster, operator)
        print(
            f"T0 {ts(first)}; operator killed at {ts(stopped_at)}, started at {ts(started_at)}; "
            f"snapshot {(after_restart.at - started_at).total_seconds():.0f} s later"
        )
        yield (
            Timeline(
                namespace,
                first,
                before,
                at_first,
                at_second,
                after_restart,
                resumed_next,
                stopped_at,
                started_at,
            ),
            jobs,
        )
    finally:
        if operator.proc is None or operator.proc.poll() is not None:
            operator.start()
        cluster.kubectl("delete", "namespace", namespace, "--wait=false")


def test_an_every_minute_schedule_fires_on_time_twice(
    minutes_timeline: tuple[Timeline, Jobs],
) -> None:
    tl, _ = minutes_timeline
    rj = tl.before.rjs["fire"]
    status = rj["status"]
    assert status["nextScheduleTime"] == ts(tl.slot(0))
    assert "lastScheduleTime" not in status and "lastJob" not in status

    # T0 + 8 s: the first run exists and is running (it lasts 20 s).
    status = tl.at_first.rjs["fire"]["status"]
    assert set(runs_of(tl.at_first.jobs, "fire")) == {tl.name("fire", 0)}
    assert status["lastScheduleTime"] == ts(tl.slot(0))
    assert status["nextScheduleTime"] == ts(tl.slot(1))
    assert status["lastJob"] == tl.name("fire", 0)
    assert status["active"] == [tl.name("fire", 0)]

    # T0 + 68 s: the second run is active, the first succeeded.
    runs = runs_of(tl.at_second.jobs, "fire")
    assert set(runs) == {tl.name("fire", 0), tl.name("fire", 1)}
    status = tl.at_second.rjs["fire"]["status"]
    assert status["lastScheduleTime"] == ts(tl.slot(1))
    assert status["nextScheduleTime"] == ts(tl.slot(2))
    assert status["lastJob"] == tl.name("fire", 1)
    assert status["active"] == [tl.name("fire", 1)]
    first_done = runs[tl.name("fire", 0)]["status"]
    assert first_done["phase"] == "Succeeded"
    assert status["lastSuccessfulTime"] == first_done["finishedAt"]

    for n in (0, 1):
        job = runs[tl.name("fire", n)]
        meta = job["metadata"]
        assert meta["labels"]["stoker.dev/recurring-job"] == "fire"
        assert meta["annotations"]["stoker.dev/scheduled-at"] == ts(tl.slot(n))
        (owner,) = meta["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"]) == (
            "RecurringJob",
            "fire",
            rj["metadata"]["uid"],
        )
        assert owner["controller"] is True
        lag = parse_ts(meta["creationTimestamp"]) - tl.slot(n)
        print(
            f"fire slot {ts(tl.slot(n))}: job created {lag.total_seconds():.0f} s later "
            "(creationTimestamp has 1 s precision)"
        )
        assert timedelta(0) <= lag <= LAG_BOUND


def table_rows(table: str) -> dict[str, dict[str, str]]:
    """`kubectl get` output by NAME, then by column header (cut at the header's offsets)."""
    header, *lines = table.splitlines()
    starts = [i for i, c in enumerate(header) if c != " " and (i == 0 or header[i - 1] == " ")]
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    rows = [{header[a:b].strip(): line[a:b].strip() for a, b in bounds} for line in lines]
    return {row["NAME"]: row for row in rows}


def test_kubectl_get_rj_shows_schedule_time_zone_suspend_last_next_age(
    minutes_timeline: tuple[Timeline, Jobs],
) -> None:
    tl, _ = minutes_timeline
    print(tl.at_second.table)
    rows = table_rows(tl.at_second.table)
    assert list(rows["fire"]) == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "LAST", "NEXT", "AGE"]
    fire = rows["fire"]
    assert fire["SCHEDULE"] == "* * * * *"
    # The manifest leaves timeZone and suspend out: the columns show what is in effect.
    assert (fire["TIMEZONE"], fire["SUSPEND"]) == ("UTC", "false")
    # An age: the snapshot was taken a few seconds after the slot.
    assert fire["LAST"].endswith("s") and 8 <= int(fire["LAST"][:-1]) <= 30
    assert fire["NEXT"] == ts(tl.slot(2))
    # An age such as 95s, 2m or 2m8s (kubectl drops the seconds of a whole minute).
    assert re.fullmatch(r"\d+s|\d+m(\d+s)?", fire["AGE"]), fire["AGE"]


def test_forbid_skips_a_slot_while_its_run_is_active(
    minutes_timeline: tuple[Timeline, Jobs],
) -> None:
    tl, jobs = minutes_timeline
    runs = runs_of(tl.at_second.jobs, "forbid")
    # The 100 s run of T0 was still running at T0 + 1 min, so that slot made no job.
    assert set(runs) == {tl.name("forbid", 0)}
    assert runs[tl.name("forbid", 0)]["status"]["phase"] == "Running"
    status = tl.at_second.rjs["forbid"]["status"]
    assert status["lastScheduleTime"] == ts(tl.slot(0))
    assert status["nextScheduleTime"] == ts(tl.slot(1) + MINUTE)
    assert status["active"] == [tl.name("forbid", 0)]
    assert "SkippedForbid" in reasons_for(jobs, "forbid")


def test_replace_deletes_the_running_job_and_creates_the_new_one(
    minutes_timeline: tuple[Timeline, Jobs],
) -> None:
    tl, jobs = minutes_timeline
    assert tl.at_first.jobs[tl.name("replace", 0)]["status"]["phase"] == "Running"
    runs = runs_of(tl.at_second.jobs, "replace")
    assert set(runs) == {tl.name("replace", 1)}
    status = tl.at_second.rjs["replace"]["status"]
    assert status["active"] == [tl.name("replace", 1)]
    assert status["lastJob"] == tl.name("replace", 1)
    assert "Replaced" in reasons_for(jobs, "replace")
    # Its pod went with it.
    wait_for(lambda: not jobs.pods(tl.name("replace", 0)), 60, description="the replaced pod")


def test_suspend_runs_nothing_and_resume_runs_the_next_slot(
    minutes_timeline: tuple[Timeline, Jobs],
) -> None:
    tl, _ = minutes_timeline
    for snap in (tl.before, tl.at_first):
        status = snap.rjs["paused"].get("status") or {}
        assert "nextScheduleTime" not in status
        assert "lastScheduleTime" not in status
        assert runs_of(snap.jobs, "paused") == {}
    assert tl.resumed_next == ts(tl.slot(1))
    assert set(runs_of(tl.at_second.jobs, "paused")) == {tl.name("paused", 1)}
    status = tl.at_second.rjs["paused"]["status"]
    assert status["lastScheduleTime"] == ts(tl.slot(1))
    assert status["nextScheduleTime"] == ts(tl.slot(2))


def test_misfire_policies_after_the_operator_was_down_across_two_slots(
    minutes_timeline: tuple[Timeline, Jobs],
) -> None:
    tl, jobs = minutes_timeline
    # Down from after T0 + 1 min until 35 s after T0 + 3 min.
    assert tl.stopped_at < tl.slot(2) and tl.slot(3) + timedelta(seconds=30) < tl.started_at
    missed = (tl.slot(2), tl.slot(3))
    expected = {"runonce": [tl.slot(3)], "runall": [tl.slot(2), tl.slot(3)], "skip": []}
    for rj, slots in expected.items():
        before = sorted(s for j in runs_of(tl.at_second.jobs, rj).values() if (s := slot_of(j)))
        assert before == [tl.slot(0), tl.slot(1)], rj  # each ran on time before the outage
        made = sorted(
            s
            for j in runs_of(tl.after_restart.jobs, rj).values()
            if (s := slot_of(j)) and missed[0] <= s <= missed[1]
        )
        assert made == slots, rj
        status = tl.after_restart.rjs[rj]["status"]
        assert status["nextScheduleTime"] == ts(tl.slot(4)), rj
        assert status["lastScheduleTime"] == ts(slots[-1] if slots else tl.slot(1)), rj
    assert "MissedRuns" in reasons_for(jobs, "runonce")
    assert "MissedRuns" in reasons_for(jobs, "skip")
    assert "MissedRuns" not in reasons_for(jobs, "runall")


def test_recurring_metrics_on_the_operator(minutes_timeline: tuple[Timeline, Jobs]) -> None:
    tl, _ = minutes_timeline
    text, ns = tl.at_second.metrics, tl.namespace
    slot_runs = [j for j in tl.at_second.jobs.values() if slot_of(j)]
    count = metric(text, "stoker_recurring_schedule_lag_seconds_count")
    total = metric(text, "stoker_recurring_schedule_lag_seconds_sum")
    assert count is not None and total is not None
    assert count >= len(slot_runs)
    print(f"stoker_recurring_schedule_lag_seconds: {count:.0f} runs, mean {total / count:.3f} s")
    assert metric(text, "stoker_recurring_schedule_lag_seconds_bucket", le="+Inf") == count
    nxt = metric(
        text, "stoker_recurring_next_run_timestamp_seconds", namespace=ns, recurringjob="fire"
    )
    assert nxt == tl.slot(2).timestamp()
    # Forbid skipped T0 + 1 min.
    forbid = metric(text, "stoker_recurring_missed_runs_total", namespace=ns, reason="Forbid")
    assert (forbid or 0) >= 1
    # After the restart: runonce missed one slot (late) and skip two (as asked); counters
    # start from zero.
    after = tl.after_restart.metrics
    late = metric(after, "stoker_recurring_missed_runs_total", namespace=ns, reason="Late")
    skipped = metric(after, "stoker_recurring_missed_runs_total", namespace=ns, reason="Skip")
    assert late is not None and late >= 1
    assert skipped is not None and skipped >= 2
