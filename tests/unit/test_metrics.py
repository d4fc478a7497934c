"""Every metric of the API contract is exported, with its contracted labels."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from stoker import metrics

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
    "stoker_recurring_missed_runs_total": {"namespace"},
    "stoker_recurring_next_run_timestamp_seconds": {"namespace", "recurringjob"},
    "stoker_reconcile_errors_total": {"kind"},
    "stoker_build_info": {"version"},
}


def exported() -> dict[str, set[str]]:
    registry = CollectorRegistry()
    for collector in list(metrics.REGISTRY._collector_to_names):
        registry.register(collector)
    registry.register(
        metrics.StateCollector(
            lambda: [(("ns", "q", "Running"), 2)],
            lambda: [(("ns", "q"), (2, 5))],
            lambda: [(("ns", "nightly"), 1.8e9)],
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
    metrics.RECURRING_MISSED.labels("ns").inc(0)
    metrics.RECONCILE_ERRORS.labels(kind="BackgroundJob").inc(0)
    families = exported()
    for name, labels in CONTRACT.items():
        assert name in families, name
        assert families[name] == labels, (name, families[name])


def test_no_job_or_pod_names_in_labels() -> None:
    text = generate_latest(metrics.REGISTRY).decode()
    assert "job_name" not in text and "pod=" not in text
