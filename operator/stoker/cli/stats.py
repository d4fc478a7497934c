"""What `stoker stats` counts: the Hangfire dashboard's numbers, per queue, from the stored jobs.

Jobs per phase now, and jobs that finished (status.finishedAt) in the last 24 hours. Jobs already
deleted (ttlAfterFinished, onExhausted: Delete, by hand) are not counted: the Prometheus
counters keep that history. Pure: objects and `now` in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from stoker.api.models import DEFAULT_QUEUE
from stoker.cli.tables import layout, parse_time

PHASES = ("Awaiting", "Scheduled", "Enqueued", "Running", "Succeeded", "Failed")
WINDOW = timedelta(hours=24)


@dataclass
class QueueStats:
    namespace: str
    queue: str
    phases: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PHASES, 0))
    total: int = 0  # includes jobs the operator has not given a phase yet
    succeeded_24h: int = 0
    failed_24h: int = 0

    def add(self, other: QueueStats) -> None:
        for phase, count in other.phases.items():
            self.phases[phase] += count
        self.total += other.total
        self.succeeded_24h += other.succeeded_24h
        self.failed_24h += other.failed_24h

    def wire(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "queue": self.queue,
            "phases": self.phases,
            "total": self.total,
            "succeededLast24h": self.succeeded_24h,
            "failedLast24h": self.failed_24h,
        }


def count(
    jobs: Iterable[Mapping[str, Any]], queues: Iterable[Mapping[str, Any]], now: datetime
) -> list[QueueStats]:
    """One QueueStats per (namespace, queue) that has a JobQueue or a job, sorted by name."""
    found: dict[tuple[str, str], QueueStats] = {}

    def entry(namespace: str, queue: str) -> QueueStats:
        return found.setdefault((namespace, queue), QueueStats(namespace, queue))

    for queue in queues:
        meta = queue.get("metadata") or {}
        entry(str(meta.get("namespace") or ""), str(meta.get("name")))
    for job in jobs:
        meta = job.get("metadata") or {}
        spec = job.get("spec") or {}
        status = job.get("status") or {}
        stats = entry(str(meta.get("namespace") or ""), str(spec.get("queue") or DEFAULT_QUEUE))
        stats.total += 1
        phase = status.get("phase")
        if phase in stats.phases:
            stats.phases[phase] += 1
        finished = parse_time(status.get("finishedAt"))
        if finished is not None and now - finished <= WINDOW:
            if phase == "Succeeded":
                stats.succeeded_24h += 1
            elif phase == "Failed":
                stats.failed_24h += 1
    return [found[key] for key in sorted(found)]


def total(rows: Sequence[QueueStats]) -> QueueStats:
    summed = QueueStats("", "TOTAL")
    for row in rows:
        summed.add(row)
    return summed


def recurring_summary(recurring: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    suspended = sum(1 for r in recurring if (r.get("spec") or {}).get("suspend"))
    return {"total": len(recurring), "suspended": suspended}


def render(
    rows: Sequence[QueueStats], recurring: Mapping[str, int], *, namespaces: bool = False
) -> str:
    header = ["QUEUE", *(p.upper() for p in PHASES), "TOTAL", "SUCCEEDED-24H", "FAILED-24H"]
    shown = list(rows)
    if len(shown) > 1:
        shown.append(total(rows))
    table_rows = [
        [
            row.queue,
            *(str(row.phases[p]) for p in PHASES),
            str(row.total),
            str(row.succeeded_24h),
            str(row.failed_24h),
        ]
        for row in shown
    ]
    if namespaces:
        header.insert(0, "NAMESPACE")
        for cells, row in zip(table_rows, shown, strict=True):
            cells.insert(0, row.namespace)
    out = layout(header, table_rows)
    suspended = f" ({recurring['suspended']} suspended)" if recurring["suspended"] else ""
    return out + f"\nRecurring jobs: {recurring['total']}{suspended}\n"


def wire(rows: Sequence[QueueStats], recurring: Mapping[str, int]) -> dict[str, Any]:
    """-o json|yaml: the same numbers for scripts."""
    return {
        "queues": [row.wire() for row in rows],
        "total": {k: v for k, v in total(rows).wire().items() if k not in ("namespace", "queue")},
        "recurringJobs": dict(recurring),
    }
