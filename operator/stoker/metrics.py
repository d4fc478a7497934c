"""Prometheus metrics, named as in API.md. Labels never carry job or pod names.

Counters move when the operator's write that makes a transition succeeds, so a restart does
not count a transition twice. Gauges of current state (jobs per phase, queue running and
limit, next recurring run) are read from the operator's in-memory view at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)

DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)

JOBS_CREATED = Counter(
    "stoker_jobs_created_total",
    "BackgroundJobs seen for the first time.",
    ["namespace", "queue"],
    registry=REGISTRY,
)
ATTEMPTS_STARTED = Counter(
    "stoker_attempts_started_total",
    "Attempts whose pod was created.",
    ["namespace", "queue"],
    registry=REGISTRY,
)
ATTEMPTS_FINISHED = Counter(
    "stoker_attempts_finished_total",
    "Attempts that ended; result = succeeded | failed | timeout.",
    ["namespace", "queue", "result"],
    registry=REGISTRY,
)
JOBS_FINISHED = Counter(
    "stoker_jobs_finished_total",
    "Jobs that reached Succeeded or Failed.",
    ["namespace", "queue", "phase"],
    registry=REGISTRY,
)
RETRIES = Counter(
    "stoker_retries_total",
    "Retries scheduled after a failed attempt.",
    ["namespace", "queue"],
    registry=REGISTRY,
)
ATTEMPT_DURATION = Histogram(
    "stoker_attempt_duration_seconds",
    "Time from an attempt's start to its end.",
    ["namespace", "queue", "result"],
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)
QUEUE_WAIT = Histogram(
    "stoker_queue_wait_seconds",
    "Time from a job being ready to its pod being created.",
    ["namespace", "queue"],
    buckets=WAIT_BUCKETS,
    registry=REGISTRY,
)
RECURRING_LAG = Histogram(
    "stoker_recurring_schedule_lag_seconds",
    "Time from a recurring slot to its job's creation.",
    buckets=LAG_BUCKETS,
    registry=REGISTRY,
)
RECURRING_MISSED = Counter(
    "stoker_recurring_missed_runs_total",
    "Recurring slots skipped by misfire policy or deadline.",
    ["namespace"],
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "stoker_reconcile_errors_total",
    "Reconciles that raised, by kind of object.",
    ["kind"],
    registry=REGISTRY,
)
BUILD_INFO = Gauge(
    "stoker_build_info", "The running operator's version.", ["version"], registry=REGISTRY
)
LEADER = Gauge(
    "stoker_leader",
    "1 on the replica that holds the leader Lease, 0 on a standby.",
    registry=REGISTRY,
)
API_WRITES = Counter(
    "stoker_api_writes_total",
    "Writes the operator sent to the API server (the write budget).",
    ["verb", "resource"],
    registry=REGISTRY,
)

# (namespace, queue, phase) -> count; (namespace, queue) -> (running, limit or None);
# (namespace, recurringjob) -> next run as a Unix timestamp.
JobCounts = Callable[[], Iterable[tuple[tuple[str, str, str], int]]]
QueueFigures = Callable[[], Iterable[tuple[tuple[str, str], tuple[int, int | None]]]]
NextRuns = Callable[[], Iterable[tuple[tuple[str, str], float]]]


class StateCollector(Collector):
    """Gauges of current state, computed from the operator's view when scraped, so that a
    series disappears with its object instead of lingering at its last value."""

    def __init__(self, jobs: JobCounts, queues: QueueFigures, next_runs: NextRuns) -> None:
        self.jobs, self.queues, self.next_runs = jobs, queues, next_runs

    def collect(self) -> Iterable[Metric]:
        jobs = GaugeMetricFamily(
            "stoker_jobs",
            "BackgroundJobs by current phase.",
            labels=["namespace", "queue", "phase"],
        )
        for (ns, queue, phase), count in self.jobs():
            jobs.add_metric([ns, queue, phase], count)
        running = GaugeMetricFamily(
            "stoker_queue_running", "Running jobs per queue.", labels=["namespace", "queue"]
        )
        limit = GaugeMetricFamily(
            "stoker_queue_concurrency_limit",
            "A queue's concurrency limit (absent when unlimited).",
            labels=["namespace", "queue"],
        )
        for (ns, queue), (count, cap) in self.queues():
            running.add_metric([ns, queue], count)
            if cap is not None:
                limit.add_metric([ns, queue], cap)
        nxt = GaugeMetricFamily(
            "stoker_recurring_next_run_timestamp_seconds",
            "When a RecurringJob runs next (Unix time).",
            labels=["namespace", "recurringjob"],
        )
        for (ns, name), ts in self.next_runs():
            nxt.add_metric([ns, name], ts)
        yield from (jobs, running, limit, nxt)
