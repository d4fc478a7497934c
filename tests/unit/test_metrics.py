"""Every metric of the API contract is exported, with its contracted labels; the state gauges
computed at scrape time from the objects' bodies."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from stoker import metrics, views
from stoker.state import Kind

# ../shared/API.md, "Prometheus metrics": name -> labels.
CONTRACT = {
    "stoker_jobs_created_total": {"namespace", "queue"},
    "stoker_attempts_started_total": {"namespace", "queue"},
    "stoker_attempts_finished_total": {"namespace", "queue", "result"},
    "stoker_jobs_finished_total": {"namespace", "queue", "phase"},
    "stoker_retries_total": {"namespace", "queue"},
    "stoker_attempt_duration_seconds": {"namespace", "queue", "result"},
    "stoker_queue_wait_seconds": {"namespace", "queue"},
    "stoker_jobs": {"namespace", "queue", "phase"},
    "stoker_queue_running": {"namespace", "queue"},
    "stoker_queue_concurrency_limit": {"namespace", "queue"},
    "stoker_recurring_schedule_lag_seconds": set(),
    "stoker_recurring_missed_runs_total": {"namespace", "reason"},
    "stoker_recurring_next_run_timestamp_seconds": {"namespace", "recurringjob"},
    "stoker_reconcile_errors_total": {"kind"},
    "stoker_build_info": {"version"},
    "stoker_recurring_last_schedule_timestamp_seconds": {"namespace", "recurringjob"},
    "stoker_recurring_last_success_timestamp_seconds": {"namespace", "recurringjob"},
    "stoker_jobs_waiting": {"namespace", "queue", "reason"},
    "stoker_queue_oldest_enqueued_timestamp_seconds": {"namespace", "queue"},
    "stoker_leader": set(),
}

T0 = "2026-11-30T22:00:00Z"
T0_UNIX = datetime(2026, 11, 30, 22, tzinfo=UTC).timestamp()


def job(
    phase: str | None,
    reason: str | None = None,
    queue: str | None = "q",
    ns: str = "ns",
    enqueued_at: str | None = None,
) -> dict[str, Any]:
    status = {"phase": phase, "reason": reason, "enqueuedAt": enqueued_at}
    return {
        "metadata": {"namespace": ns, "name": "j"},
        "spec": {"queue": queue} if queue else {},
        "status": {k: v for k, v in status.items() if v is not None},
    }


def recurring(name: str, status: dict[str, str], ns: str = "ns") -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name}, "spec": {}, "status": status}


def exported() -> dict[str, set[str]]:
    registry = CollectorRegistry()
    for collector in list(metrics.REGISTRY._collector_to_names):
        registry.register(collector)
    registry.register(
        metrics.StateCollector(
            lambda: [(("ns", "q", "Running"), 2)],
            lambda: [(("ns", "q"), (2, 5))],
            lambda: [(("ns", "nightly"), 1.8e9)],
            job_bodies=lambda: [job("Enqueued", "QueueFull", enqueued_at=T0)],
            recurring_bodies=lambda: [
                recurring("nightly", {"lastScheduleTime": T0, "lastSuccessfulTime": T0})
            ],
        )
    )
    families: dict[str, set[str]] = {}
    for family in registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = {k for s in family.samples for k in s.labels if k != "le"}
        families[name] = labels
    return families


def test_every_contracted_metric_is_exported_with_its_labels() -> None:
    metrics.BUILD_INFO.labels(version="test").set(1)
    for counter in (metrics.JOBS_CREATED, metrics.ATTEMPTS_STARTED, metrics.RETRIES):
        counter.labels("ns", "q").inc(0)
    metrics.ATTEMPTS_FINISHED.labels("ns", "q", "succeeded").inc(0)
    metrics.JOBS_FINISHED.labels("ns", "q", "Succeeded").inc(0)
    metrics.ATTEMPT_DURATION.labels("ns", "q", "succeeded").observe(1)
    metrics.QUEUE_WAIT.labels("ns", "q").observe(0.1)
    metrics.RECURRING_LAG.observe(0.2)
    metrics.RECURRING_MISSED.labels("ns", "Late").inc(0)
    metrics.RECONCILE_ERRORS.labels(kind="BackgroundJob").inc(0)
    families = exported()
    for name, labels in CONTRACT.items():
        assert name in families, name
        assert families[name] == labels, (name, families[name])


def test_no_job_or_pod_names_in_labels() -> None:
    text = generate_latest(metrics.REGISTRY).decode()
    assert "job_name" not in text and "pod=" not in text


def test_process_metrics_are_served_from_stokers_registry() -> None:
    names = {
        f.name for f in text_string_to_metric_families(generate_latest(metrics.REGISTRY).decode())
    }
    assert {"process_cpu_seconds", "process_resident_memory_bytes", "python_info"} <= names


def samples(collector: metrics.StateCollector) -> dict[str, dict[tuple[str, ...], float]]:
    """name -> {label values in label-name order: value} of everything the collector yields."""
    out: dict[str, dict[tuple[str, ...], float]] = {}
    for family in collector.collect():
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(v for _, v in sorted(s.labels.items()))] = s.value
    return out


def test_every_phase_of_a_known_queue_has_a_series() -> None:
    counts = metrics.phase_counts([(("ns", "q", "Running"), 2)], [("ns", "idle"), ("ns", "q")])
    assert counts == {
        **{("ns", queue, phase): 0 for queue in ("q", "idle") for phase in metrics.PHASES},
        ("ns", "q", "Running"): 2,
    }
    assert len(metrics.PHASES) == 6
    assert metrics.phase_counts([], []) == {}


def test_collector_serves_zero_phases_for_queues_without_jobs() -> None:
    collector = metrics.StateCollector(lambda: [], lambda: [(("ns", "idle"), (0, 3))], list)
    jobs = samples(collector)["stoker_jobs"]
    assert jobs == {("ns", phase, "idle"): 0 for phase in metrics.PHASES}


def test_waiting_jobs_by_reason() -> None:
    facts = [
        metrics.job_facts(b)
        for b in (
            job("Enqueued", "QueueFull"),
            job("Enqueued", "QueueFull"),
            job("Enqueued", "PodCreateFailed", queue=None),
            job("Awaiting", "WaitingForJobs"),
            job("Scheduled", "Retrying"),
            job("Scheduled", "Delayed", ns="other"),
            job("Running", "Started"),
            job("Succeeded", "Completed"),
            job(None),
        )
    ]
    assert metrics.waiting_counts(facts) == {
        ("ns", "q", "QueueFull"): 2,
        ("ns", "default", "PodCreateFailed"): 1,
        ("ns", "q", "WaitingForJobs"): 1,
        ("ns", "q", "Retrying"): 1,
        ("other", "q", "Delayed"): 1,
    }


def test_oldest_enqueued_leaves_out_jobs_held_by_a_user() -> None:
    def at(minutes: int) -> str:
        return f"2026-11-30T22:{minutes:02d}:00Z"

    facts = [
        metrics.job_facts(b)
        for b in (
            job("Enqueued", "QueueFull", enqueued_at=at(5)),
            job("Enqueued", "ConcurrencyKeyHeld", enqueued_at=at(0)),
            job("Enqueued", "Suspended", enqueued_at="2026-11-30T20:00:00Z"),
            job("Enqueued", "QueueSuspended", queue="paused", enqueued_at=at(0)),
            job("Running", enqueued_at="2026-11-30T19:00:00Z"),
            job("Enqueued", "QueueFull", queue="b", enqueued_at=at(9)),
            job("Enqueued", "QueueFull", queue="b"),
        )
    ]
    assert metrics.oldest_enqueued(facts) == {("ns", "q"): T0_UNIX, ("ns", "b"): T0_UNIX + 540}


def test_recurring_times_from_status() -> None:
    bodies = [
        recurring(
            "nightly", {"lastScheduleTime": T0, "lastSuccessfulTime": "2026-11-29T22:00:00Z"}
        ),
        recurring("never-ok", {"lastScheduleTime": T0}),
        recurring("new", {}),
    ]
    last, success = metrics.recurring_times(metrics.recurring_facts(b) for b in bodies)
    assert last == {("ns", "nightly"): T0_UNIX, ("ns", "never-ok"): T0_UNIX}
    assert success == {("ns", "nightly"): T0_UNIX - 86400}


def test_collector_reads_the_current_bodies_at_each_scrape() -> None:
    rjs = [recurring("nightly", {"lastScheduleTime": T0, "lastSuccessfulTime": T0})]
    jobs = [job("Enqueued", "QueueFull", enqueued_at=T0)]
    collector = metrics.StateCollector(
        list, list, list, job_bodies=lambda: jobs, recurring_bodies=lambda: rjs
    )
    first = samples(collector)
    assert first["stoker_recurring_last_success_timestamp_seconds"] == {("ns", "nightly"): T0_UNIX}
    assert first["stoker_recurring_last_schedule_timestamp_seconds"] == {("ns", "nightly"): T0_UNIX}
    assert first["stoker_jobs_waiting"] == {("ns", "q", "QueueFull"): 1}
    assert first["stoker_queue_oldest_enqueued_timestamp_seconds"] == {("ns", "q"): T0_UNIX}
    rjs.clear()
    jobs[0] = job("Running")
    second = samples(collector)
    # A deleted RecurringJob's series go with it; a started job no longer waits.
    for name in (
        "stoker_recurring_last_success_timestamp_seconds",
        "stoker_recurring_last_schedule_timestamp_seconds",
        "stoker_jobs_waiting",
        "stoker_queue_oldest_enqueued_timestamp_seconds",
    ):
        assert name not in second, name


def value(name: str, **labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, labels)


def test_counters_of_known_queues_and_recurring_namespaces_start_at_zero() -> None:
    collector = metrics.StateCollector(
        lambda: [(("primed", "q", "Enqueued"), 1)],
        lambda: [(("primed", "idle"), (0, None))],
        list,
        recurring_bodies=lambda: [recurring("nightly", {}, ns="primed-rj")],
    )
    assert (
        value("stoker_jobs_finished_total", namespace="primed", queue="q", phase="Failed") is None
    )
    list(collector.collect())
    for queue in ("q", "idle"):
        where = {"namespace": "primed", "queue": queue}
        for phase in ("Succeeded", "Failed"):
            assert value("stoker_jobs_finished_total", **where, phase=phase) == 0
        for result in ("succeeded", "failed", "timeout"):
            assert value("stoker_attempts_finished_total", **where, result=result) == 0
        for name in ("jobs_created", "attempts_started", "retries"):
            assert value(f"stoker_{name}_total", **where) == 0
    assert value("stoker_recurring_missed_runs_total", namespace="primed-rj", reason="Late") == 0
    for kind in ("BackgroundJob", "RecurringJob", "JobQueue"):
        assert value("stoker_reconcile_errors_total", kind=kind) is not None


class FakeStore:
    def __init__(self, jobs: list[dict[str, Any]], rjs: list[dict[str, Any]]) -> None:
        self.jobs = {(b["metadata"]["namespace"], str(i)): b for i, b in enumerate(jobs)}
        self.objects = {Kind.RECURRING: {("ns", b["metadata"]["name"]): b for b in rjs}}


def test_views_feed_the_collector_from_the_loops_store() -> None:
    loop: Any = type("FakeLoop", (), {})()
    loop.store = FakeStore(
        [job("Enqueued", "QueueFull", enqueued_at=T0)],
        [recurring("nightly", {"lastSuccessfulTime": T0})],
    )
    loop.jobs = type("Jobs", (), {"queue_states": staticmethod(dict)})()
    loop.recurring = type("Recurring", (), {"next_run": {}})()
    got = samples(views.collector(loop))
    assert got["stoker_jobs"][("ns", "Enqueued", "q")] == 1
    assert got["stoker_jobs_waiting"] == {("ns", "q", "QueueFull"): 1}
    assert got["stoker_recurring_last_success_timestamp_seconds"] == {("ns", "nightly"): T0_UNIX}
