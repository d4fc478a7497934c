"""Prometheus metrics, named as in API.md. Labels never carry job or pod names.

Counters move when the operator's write that makes a transition succeeds, so a restart does
not count a transition twice. Gauges of current state (jobs per phase and waiting reason,
queue running, limit and oldest wait, recurring last/next/last-success times) are read from
the operator's in-memory view at scrape time, by pure functions over the objects' bodies.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)
# process_* (CPU, memory, open fds, start time), python_info and python_gc_*: an operator
# that leaks or spins shows it on the dashboard. prometheus_client's default collectors,
# registered on Stoker's own registry (the default registry is not served).
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_collector)

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
# Why a slot did not run: Late (the operator was down or behind), Skip (misfirePolicy Skip),
# Forbid (concurrencyPolicy Forbid). An extension of API.md's {namespace}: alerts want Late only.
MISSED_REASONS = ("Late", "Skip", "Forbid")
RECURRING_MISSED = Counter(
    "stoker_recurring_missed_runs_total",
    "Recurring slots that did not run, by reason: Late, Skip (misfirePolicy), Forbid.",
    ["namespace", "reason"],
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
SUPERSEDED = Counter(
    "stoker_writes_superseded_total",
    "Decisions dropped before their write was sent, because newer events made a newer one.",
    registry=REGISTRY,
)


PHASES = ("Awaiting", "Scheduled", "Enqueued", "Running", "Succeeded", "Failed")
# Phases whose jobs wait for something, counted by status.reason in stoker_jobs_waiting.
# Scheduled is among them: its reason tells a delayed start (Delayed) from a retry (Retrying).
WAITING_PHASES = frozenset({"Awaiting", "Scheduled", "Enqueued"})
# Enqueued on purpose (spec.suspend of the job or of its JobQueue): never "stuck".
HELD_BY_USER = frozenset({"Suspended", "QueueSuspended"})

Body = Mapping[str, Any]
QueueKey = tuple[str, str]  # (namespace, queue)
ObjectKey = tuple[str, str]  # (namespace, name)

# (namespace, queue, phase) -> count; (namespace, queue) -> (running, limit or None);
# (namespace, recurringjob) -> next run as a Unix timestamp.
JobCounts = Callable[[], Iterable[tuple[tuple[str, str, str], int]]]
QueueFigures = Callable[[], Iterable[tuple[QueueKey, tuple[int, int | None]]]]
NextRuns = Callable[[], Iterable[tuple[ObjectKey, float]]]
Bodies = Callable[[], Iterable[Body]]


@dataclass(frozen=True)
class JobFacts:
    """What the gauges need of one BackgroundJob."""

    namespace: str
    queue: str
    phase: str | None
    reason: str | None
    enqueued_at: float | None  # Unix time


@dataclass(frozen=True)
class RecurringFacts:
    namespace: str
    name: str
    last_schedule: float | None  # Unix time
    last_success: float | None


def _timestamp(text: Any) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def job_facts(body: Body) -> JobFacts:
    status, spec = body.get("status") or {}, body.get("spec") or {}
    phase = status.get("phase")
    return JobFacts(
        namespace=body["metadata"]["namespace"],
        queue=spec.get("queue") or "default",
        phase=phase,
        reason=status.get("reason"),
        # Parsed only where a gauge reads it: thousands of jobs are scraped every few seconds.
        enqueued_at=_timestamp(status.get("enqueuedAt")) if phase == "Enqueued" else None,
    )


def recurring_facts(body: Body) -> RecurringFacts:
    status = body.get("status") or {}
    return RecurringFacts(
        namespace=body["metadata"]["namespace"],
        name=body["metadata"]["name"],
        last_schedule=_timestamp(status.get("lastScheduleTime")),
        last_success=_timestamp(status.get("lastSuccessfulTime")),
    )


def phase_counts(
    counts: Iterable[tuple[tuple[str, str, str], int]], queues: Iterable[QueueKey]
) -> dict[tuple[str, str, str], int]:
    """Jobs per (namespace, queue, phase), with a 0 for every phase of every queue that has
    jobs or a JobQueue: a phase that empties reads 0, not "no data", and sum() and rate-like
    panels over phases never lose a series."""
    counted = list(counts)
    keys = {(ns, queue) for (ns, queue, _), _ in counted} | set(queues)
    out = {(ns, queue, phase): 0 for ns, queue in keys for phase in PHASES}
    for key, count in counted:
        out[key] = out.get(key, 0) + count
    return out


def waiting_counts(jobs: Iterable[JobFacts]) -> dict[tuple[str, str, str], int]:
    """Waiting jobs (Awaiting, Scheduled, Enqueued) per (namespace, queue, reason)."""
    tally: Tally[tuple[str, str, str]] = Tally()
    for job in jobs:
        if job.phase in WAITING_PHASES:
            tally[job.namespace, job.queue, job.reason or job.phase or ""] += 1
    return dict(tally)


def oldest_enqueued(jobs: Iterable[JobFacts]) -> dict[QueueKey, float]:
    """Per queue, when its longest-waiting Enqueued job was enqueued, leaving out the jobs a
    user holds (a suspended job or queue): "waiting too long" must mean a stall."""
    oldest: dict[QueueKey, float] = {}
    for job in jobs:
        if job.phase != "Enqueued" or job.enqueued_at is None or job.reason in HELD_BY_USER:
            continue
        key = (job.namespace, job.queue)
        oldest[key] = min(oldest.get(key, job.enqueued_at), job.enqueued_at)
    return oldest


def recurring_times(
    recurring: Iterable[RecurringFacts],
) -> tuple[dict[ObjectKey, float], dict[ObjectKey, float]]:
    """(last schedule, last success) per RecurringJob; a time it never had has no series."""
    last: dict[ObjectKey, float] = {}
    success: dict[ObjectKey, float] = {}
    for rj in recurring:
        if rj.last_schedule is not None:
            last[rj.namespace, rj.name] = rj.last_schedule
        if rj.last_success is not None:
            success[rj.namespace, rj.name] = rj.last_success
    return last, success


ATTEMPT_RESULTS = ("succeeded", "failed", "timeout")
FINISHED_PHASES = ("Succeeded", "Failed")
KINDS = ("BackgroundJob", "RecurringJob", "JobQueue")


def prime_counters(queues: Iterable[QueueKey], recurring_namespaces: Iterable[str]) -> None:
    """Create at 0 the counter series of every known queue and RecurringJob namespace.

    A series born at its first increment hides that increment from rate() and increase(),
    which see only growth between samples: the first failures of a queue, or the first
    missed run, would never reach StokerJobsFailing or StokerRecurringMissedRuns.
    """
    for ns, queue in queues:
        for counter in (JOBS_CREATED, ATTEMPTS_STARTED, RETRIES):
            counter.labels(ns, queue)
        for result in ATTEMPT_RESULTS:
            ATTEMPTS_FINISHED.labels(ns, queue, result)
        for phase in FINISHED_PHASES:
            JOBS_FINISHED.labels(ns, queue, phase)
    for ns in recurring_namespaces:
        for reason in MISSED_REASONS:
            RECURRING_MISSED.labels(ns, reason)


for _kind in KINDS:
    RECONCILE_ERRORS.labels(kind=_kind)


def _nothing() -> Iterable[Body]:
    return ()


class StateCollector(Collector):
    """Gauges of current state, computed from the operator's view when scraped, so that a
    series disappears with its object instead of lingering at its last value.

    `jobs`, `queues` and `next_runs` give the reconciler's figures; `job_bodies` and
    `recurring_bodies` the BackgroundJob and RecurringJob bodies it watches (plain dicts,
    read only)."""

    def __init__(
        self,
        jobs: JobCounts,
        queues: QueueFigures,
        next_runs: NextRuns,
        *,
        job_bodies: Bodies = _nothing,
        recurring_bodies: Bodies = _nothing,
    ) -> None:
        self.jobs, self.queues, self.next_runs = jobs, queues, next_runs
        self.job_bodies, self.recurring_bodies = job_bodies, recurring_bodies

    def collect(self) -> Iterable[Metric]:
        queue_figures = list(self.queues())
        recurring = [recurring_facts(body) for body in self.recurring_bodies()]
        phases = phase_counts(self.jobs(), (key for key, _ in queue_figures))
        # The counters are collected before this collector, so primed series show from the
        # next scrape on: only an increment within a queue's first scrape interval is lost.
        prime_counters({(ns, q) for ns, q, _ in phases}, {rj.namespace for rj in recurring})
        jobs = GaugeMetricFamily(
            "stoker_jobs",
            "BackgroundJobs by current phase (0 for the phases a queue has none in).",
            labels=["namespace", "queue", "phase"],
        )
        for (ns, queue, phase), count in sorted(phases.items()):
            jobs.add_metric([ns, queue, phase], count)
        running = GaugeMetricFamily(
            "stoker_queue_running", "Running jobs per queue.", labels=["namespace", "queue"]
        )
        limit = GaugeMetricFamily(
            "stoker_queue_concurrency_limit",
            "A queue's concurrency limit (absent when unlimited).",
            labels=["namespace", "queue"],
        )
        for (ns, queue), (count, cap) in queue_figures:
            running.add_metric([ns, queue], count)
            if cap is not None:
                limit.add_metric([ns, queue], cap)
        nxt = GaugeMetricFamily(
            "stoker_recurring_next_run_timestamp_seconds",
            "When a RecurringJob runs next (Unix time; absent while suspended).",
            labels=["namespace", "recurringjob"],
        )
        for (ns, name), ts in self.next_runs():
            nxt.add_metric([ns, name], ts)
        yield from (jobs, running, limit, nxt)
        yield from self._waiting()
        yield from self._recurring(recurring)

    def _waiting(self) -> Iterable[Metric]:
        facts = [job_facts(body) for body in self.job_bodies()]
        waiting = GaugeMetricFamily(
            "stoker_jobs_waiting",
            "Awaiting, Scheduled and Enqueued jobs by status.reason.",
            labels=["namespace", "queue", "reason"],
        )
        for (ns, queue, reason), count in sorted(waiting_counts(facts).items()):
            waiting.add_metric([ns, queue, reason], count)
        oldest = GaugeMetricFamily(
            "stoker_queue_oldest_enqueued_timestamp_seconds",
            "When the longest-waiting Enqueued job of a queue was enqueued (Unix time; jobs "
            "and queues suspended by a user are left out).",
            labels=["namespace", "queue"],
        )
        for (ns, queue), ts in sorted(oldest_enqueued(facts).items()):
            oldest.add_metric([ns, queue], ts)
        yield from (waiting, oldest)

    def _recurring(self, recurring: list[RecurringFacts]) -> Iterable[Metric]:
        last, success = recurring_times(recurring)
        for name, help_text, values in (
            (
                "stoker_recurring_last_schedule_timestamp_seconds",
                "When a RecurringJob last created a scheduled run (Unix time).",
                last,
            ),
            (
                "stoker_recurring_last_success_timestamp_seconds",
                "When a run of a RecurringJob last succeeded (Unix time; absent if none has).",
                success,
            ),
        ):
            family = GaugeMetricFamily(name, help_text, labels=["namespace", "recurringjob"])
            for (ns, rj), ts in sorted(values.items()):
                family.add_metric([ns, rj], ts)
            yield family
