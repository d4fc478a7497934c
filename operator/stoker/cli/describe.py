"""What `stoker get JOB` prints: the job's spec in brief, its status, attempt history and Events,
laid out as `kubectl describe` lays out an object. Pure: objects and `now` in, text out."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from stoker.cli.tables import NONE, age, human_duration, layout, parse_time, text, until

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def when(value: Any, now: datetime) -> str:
    """A timestamp with its distance from now: 2026-11-30T10:00:00Z (5m ago) / (in 5m)."""
    moment = parse_time(value)
    if moment is None:
        return NONE
    if moment > now:
        return f"{value} ({until(value, now)})"
    return f"{value} ({age(value, now)} ago)"


def pairs(values: Mapping[str, Any] | None, skip: str = "") -> str:
    shown = {k: v for k, v in (values or {}).items() if k != skip}
    return ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) or NONE


def fields(rows: Sequence[tuple[str, str]]) -> str:
    """`Key:  value` lines with the values aligned, as in kubectl describe."""
    width = max(len(key) for key, _ in rows) + 2
    return "".join(f"{(key + ':').ljust(width)}{value}\n" for key, value in rows)


def pod_source(spec: Mapping[str, Any]) -> str:
    template = spec.get("template")
    if not template:
        return f"the template of queue {spec.get('queue') or 'default'}"
    containers = (template.get("spec") or {}).get("containers") or []
    images = [str(c.get("image") or NONE) for c in containers]
    return ", ".join(images) or NONE


def duration(start: Any, finish: Any) -> str:
    began, ended = parse_time(start), parse_time(finish)
    if began is None or ended is None:
        return NONE
    return human_duration(ended - began)


def attempts_table(attempts: Sequence[Mapping[str, Any]], now: datetime) -> str:
    header = ["ATTEMPT", "POD", "RESULT", "EXIT-CODE", "REASON", "STARTED", "DURATION", "MESSAGE"]
    rows = [
        [
            text(a.get("attempt")),
            text(a.get("pod")),
            text(a.get("result")),
            text(a.get("exitCode")),
            text(a.get("reason")),
            age(a.get("startedAt"), now),
            duration(a.get("startedAt"), a.get("finishedAt")),
            " ".join(str(a.get("message") or "").split()) or NONE,
        ]
        for a in attempts
    ]
    return indent(layout(header, rows))


def event_age(event: Mapping[str, Any], now: datetime) -> str:
    """kubectl's AGE of an Event: the last time, and "(x4 over 10m)" when it repeated."""
    last = event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp")
    shown = age(last, now)
    count = int(event.get("count") or 1)
    first = event.get("firstTimestamp") or event.get("eventTime")
    if count > 1 and first:
        shown += f" (x{count} over {age(first, now)})"
    return shown


def event_sort_key(event: Mapping[str, Any]) -> str:
    return str(
        event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp") or ""
    )


def events_table(events: Sequence[Mapping[str, Any]], now: datetime) -> str:
    if not events:
        return "  <none>\n"
    rows = []
    for event in sorted(events, key=event_sort_key):
        source = event.get("source") or {}
        rows.append(
            [
                text(event.get("type")),
                text(event.get("reason")),
                event_age(event, now),
                text(source.get("component") or event.get("reportingComponent")),
                " ".join(str(event.get("message") or "").split()) or NONE,
            ]
        )
    return indent(layout(["TYPE", "REASON", "AGE", "FROM", "MESSAGE"], rows))


def indent(block: str) -> str:
    return "".join(f"  {line}\n" for line in block.splitlines())


def describe_job(job: Mapping[str, Any], events: Sequence[Mapping[str, Any]], now: datetime) -> str:
    meta = job.get("metadata") or {}
    spec = job.get("spec") or {}
    status = job.get("status") or {}
    task = spec.get("task") or {}
    rows: list[tuple[str, str]] = [
        ("Name", text(meta.get("name"))),
        ("Namespace", text(meta.get("namespace"))),
        ("Labels", pairs(meta.get("labels"))),
        ("Annotations", pairs(meta.get("annotations"), skip=LAST_APPLIED)),
        ("Created", when(meta.get("creationTimestamp"), now)),
        ("Queue", text(spec.get("queue"))),
        ("Priority", text(spec.get("priority") or 0)),
        ("Task", text(task.get("name"))),
    ]
    if "args" in task:
        rows.append(("Args", json.dumps(task["args"], separators=(", ", ": "))))
    rows.append(("Image", pod_source(spec)))
    if spec.get("startAt"):
        rows.append(("Start At", when(spec["startAt"], now)))
    if spec.get("startAfter"):
        rows.append(("Start After", str(spec["startAfter"])))
    if spec.get("after"):
        parents = ", ".join(str(p.get("name")) for p in spec["after"])
        rows.append(("After", f"{parents} ({spec.get('afterCondition') or 'Succeeded'})"))
    if spec.get("suspend"):
        rows.append(("Suspend", "true"))
    rows += [
        ("Phase", text(status.get("phase"))),
        ("Reason", text(status.get("reason"))),
        ("Message", text(status.get("message"))),
        ("Attempt", text(status.get("attempt"))),
    ]
    for key, label in (
        ("nextAttemptAt", "Next Attempt"),
        ("enqueuedAt", "Enqueued"),
        ("startedAt", "Started"),
        ("finishedAt", "Finished"),
    ):
        if status.get(key):
            rows.append((label, when(status[key], now)))
    out = fields(rows)
    attempts = status.get("attempts") or []
    out += "Attempts:\n" + (attempts_table(attempts, now) if attempts else "  <none>\n")
    conditions = status.get("conditions") or []
    if conditions:
        header = ["TYPE", "STATUS", "REASON", "MESSAGE"]
        rows_c = [
            [
                text(c.get("type")),
                text(c.get("status")),
                text(c.get("reason")),
                text(c.get("message")),
            ]
            for c in conditions
        ]
        out += "Conditions:\n" + indent(layout(header, rows_c))
    return out + "Events:\n" + events_table(events, now)
