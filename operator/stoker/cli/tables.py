"""What `stoker ls` prints: kubectl's table layout, ages and columns, from the stored objects.

Pure: every function takes the objects (as the API server returns them) and `now`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from stoker.cli.kinds import Kind

NONE = "<none>"
Row = list[str]


def human_duration(value: timedelta) -> str:
    """A duration the way kubectl prints an AGE: 45s, 3m20s, 42m, 5h10m, 30h, 3d4h, 20d, 2y10d.

    The precision falls as the value grows, in kubectl's steps (apimachinery's HumanDuration),
    so that a column of ages stays narrow and readable."""
    seconds = int(value.total_seconds())
    if seconds < -1:
        return "<invalid>"  # a clock more than a second behind the server's
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        rest = seconds % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        rest = hours % 24
        return f"{days}d{rest}h" if rest else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    years, rest = divmod(days, 365)
    if days < 365 * 8 and rest:
        return f"{years}y{rest}d"
    return f"{years}y"


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp of the API (…Z); None for a missing one."""
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def age(value: Any, now: datetime) -> str:
    """Time since `value`, as kubectl's AGE column; <none> when it is missing."""
    when = parse_time(value)
    return NONE if when is None else human_duration(now - when)


def until(value: Any, now: datetime) -> str:
    """Time until `value` ("in 42s"); "now" once it is due; <none> when it is missing."""
    when = parse_time(value)
    if when is None:
        return NONE
    if when <= now:
        return "now"
    return f"in {human_duration(when - now)}"


def layout(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Columns padded to their widest cell, three spaces apart, as kubectl's tabwriter does."""
    table = [list(header), *(list(row) for row in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = []
    for row in table:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def text(value: Any) -> str:
    """A cell: <none> for a missing value, lower-case booleans as kubectl prints them."""
    if value is None or value == "":
        return NONE
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _get(obj: Mapping[str, Any], *path: str) -> Any:
    value: Any = obj
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[Mapping[str, Any], datetime], str]
    wide: bool = False  # shown only with -o wide


def _path(*path: str) -> Callable[[Mapping[str, Any], datetime], str]:
    return lambda obj, now: text(_get(obj, *path))


def _task(obj: Mapping[str, Any], now: datetime) -> str:
    return text(_get(obj, "spec", "task", "name"))


def _concurrency(obj: Mapping[str, Any], now: datetime) -> str:
    value = _get(obj, "spec", "concurrency")
    return "unlimited" if value is None else str(value)


def _count(*path: str) -> Callable[[Mapping[str, Any], datetime], str]:
    return lambda obj, now: str(_get(obj, *path) or 0)


def _age_of(*path: str) -> Callable[[Mapping[str, Any], datetime], str]:
    return lambda obj, now: age(_get(obj, *path), now)


def _until(*path: str) -> Callable[[Mapping[str, Any], datetime], str]:
    return lambda obj, now: until(_get(obj, *path), now)


AGE = Column("AGE", _age_of("metadata", "creationTimestamp"))

# The CRDs' printer columns (what `kubectl get` shows), then the wide ones.
COLUMNS: dict[Kind, list[Column]] = {
    Kind.JOB: [
        Column("PHASE", _path("status", "phase")),
        Column("QUEUE", _path("spec", "queue")),
        Column("ATTEMPT", _path("status", "attempt")),
        Column("REASON", _path("status", "reason")),
        Column("NEXT-ATTEMPT", _until("status", "nextAttemptAt")),
        AGE,
        Column("PRIORITY", lambda obj, now: text(_get(obj, "spec", "priority") or 0), wide=True),
        Column("TASK", _task, wide=True),
        Column("MESSAGE", _path("status", "message"), wide=True),
    ],
    Kind.RECURRING: [
        Column("SCHEDULE", _path("spec", "schedule")),
        Column("TIMEZONE", _path("spec", "timeZone")),
        Column("SUSPEND", lambda obj, now: text(bool(_get(obj, "spec", "suspend")))),
        Column("LAST", _age_of("status", "lastScheduleTime")),
        Column("NEXT", _until("status", "nextScheduleTime")),
        AGE,
        Column("ACTIVE", lambda obj, now: str(len(_get(obj, "status", "active") or [])), True),
        Column("LAST-JOB", _path("status", "lastJob"), wide=True),
        Column("LAST-SUCCESS", _age_of("status", "lastSuccessfulTime"), wide=True),
    ],
    Kind.QUEUE: [
        Column("CONCURRENCY", _concurrency),
        Column("PRIORITY", lambda obj, now: text(_get(obj, "spec", "priority") or 0)),
        Column("SUSPEND", lambda obj, now: text(bool(_get(obj, "spec", "suspend")))),
        Column("ENQUEUED", _count("status", "enqueued")),
        Column("RUNNING", _count("status", "running")),
        AGE,
        Column("OLDEST-ENQUEUED", _age_of("status", "oldestEnqueuedAt"), wide=True),
    ],
}


def table(
    kind: Kind,
    objects: Sequence[Mapping[str, Any]],
    now: datetime,
    *,
    wide: bool = False,
    namespaces: bool = False,
) -> str:
    """`kubectl get` of `objects`: NAME first, NAMESPACE before it when several are listed."""
    columns = [c for c in COLUMNS[kind] if wide or not c.wide]
    header = ["NAME", *(c.header for c in columns)]
    rows = [
        [text(_get(o, "metadata", "name")), *(c.cell(o, now) for c in columns)] for o in objects
    ]
    if namespaces:
        header.insert(0, "NAMESPACE")
        for row, obj in zip(rows, objects, strict=True):
            row.insert(0, text(_get(obj, "metadata", "namespace")))
    return layout(header, rows)


def names(kind: Kind, objects: Iterable[Mapping[str, Any]]) -> str:
    """-o name: one kind.group/name a line, as kubectl prints it."""
    return "".join(f"{kind.ref(str(_get(o, 'metadata', 'name')))}\n" for o in objects)


def as_list(objects: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Several objects as kubectl prints them with -o json|yaml: one v1 List."""
    return {"apiVersion": "v1", "kind": "List", "items": list(objects), "metadata": {}}


def dump(value: Any, output: str) -> str:
    """-o json (indented as kubectl) or -o yaml."""
    if output == "json":
        return json.dumps(value, indent=4, ensure_ascii=False) + "\n"
    import yaml

    return str(yaml.safe_dump(value, sort_keys=False, allow_unicode=True))
