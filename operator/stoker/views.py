"""What the metrics show of the operator's current view (read at scrape time)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

from stoker import metrics
from stoker.state import Kind, queue_of

if TYPE_CHECKING:
    from stoker.loop import Loop


def job_counts(loop: Loop) -> Iterable[tuple[tuple[str, str, str], int]]:
    """(namespace, queue, phase) -> number of jobs."""
    counts: Counter[tuple[str, str, str]] = Counter()
    for (ns, _), body in list(loop.store.jobs.items()):
        phase = (body.get("status") or {}).get("phase")
        if phase:
            counts[ns, queue_of(body), phase] += 1
    return counts.items()


def queue_figures(loop: Loop) -> Iterable[tuple[tuple[str, str], tuple[int, int | None]]]:
    """(namespace, queue) -> (running, concurrency limit or None)."""
    for key, state in loop.jobs.queue_states().items():
        yield key, (state.running, state.concurrency)


def next_runs(loop: Loop) -> Iterable[tuple[tuple[str, str], float]]:
    """(namespace, RecurringJob) -> its next run as a Unix timestamp."""
    return [(key, at.timestamp()) for key, at in list(loop.recurring.next_run.items())]


def job_bodies(loop: Loop) -> list[metrics.Body]:
    """The BackgroundJobs as last seen (status included), for the waiting-job gauges."""
    return list(loop.store.jobs.values())


def recurring_bodies(loop: Loop) -> list[metrics.Body]:
    """The RecurringJobs as last seen, for their last-schedule and last-success gauges."""
    return list(loop.store.objects[Kind.RECURRING].values())


def collector(loop: Loop) -> metrics.StateCollector:
    """Every state gauge, read from `loop` at scrape time."""
    return metrics.StateCollector(
        lambda: job_counts(loop),
        lambda: queue_figures(loop),
        lambda: next_runs(loop),
        job_bodies=lambda: job_bodies(loop),
        recurring_bodies=lambda: recurring_bodies(loop),
    )
