"""The fault cluster's API server audit log, read as the record of what was written.

hack/kwok/audit-policy.yaml logs one Metadata event per write request (ResponseComplete
only): verb, user agent, object reference, response code and timestamps, no bodies. The
log is the ground truth for "no pod name created twice" and "no write from the old leader
after its deadline": it records what the API server did, not what a client believed.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# The operator's own client; kopf's client (its watches, its rare Events) says "kopf/...".
OPERATOR_AGENT = "stoker-operator/"


@dataclass(frozen=True)
class Entry:
    verb: str
    resource: str  # "pods", "backgroundjobs/status", ...
    namespace: str
    name: str
    code: int
    user_agent: str
    received: float  # requestReceivedTimestamp, seconds since the epoch
    completed: float  # stageTimestamp (response complete), seconds since the epoch
    uri: str

    @property
    def dry_run(self) -> bool:
        """A dry-run request (the admission probes'): admitted or refused, never stored."""
        return "dryRun=" in self.uri

    @property
    def operator(self) -> bool:
        return self.user_agent.startswith(OPERATOR_AGENT)

    def by(self, identity: str) -> bool:
        """Sent by the operator process of this STOKER_IDENTITY (its User-Agent ends with
        `(<identity>)`)."""
        return self.operator and self.user_agent.endswith(f"({identity})")


def epoch(stamp: str) -> float:
    """An audit timestamp (RFC 3339, microseconds, Z) as seconds since the epoch."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC).timestamp()


def parse(lines: Iterable[bytes]) -> Iterator[Entry]:
    for raw in lines:
        if not raw.strip():
            continue
        try:
            event: dict[str, Any] = json.loads(raw)
        except json.JSONDecodeError:
            continue  # a line being written right now
        ref = event.get("objectRef") or {}
        resource = ref.get("resource", "")
        if ref.get("subresource"):
            resource += "/" + ref["subresource"]
        yield Entry(
            verb=event.get("verb", ""),
            resource=resource,
            namespace=ref.get("namespace", ""),
            name=ref.get("name", ""),
            code=int((event.get("responseStatus") or {}).get("code", 0)),
            user_agent=event.get("userAgent", ""),
            received=epoch(event["requestReceivedTimestamp"]),
            completed=epoch(event["stageTimestamp"]),
            uri=event.get("requestURI", ""),
        )


class AuditLog:
    """Entries of one audit log file, read from a mark onwards (tests share the cluster)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def mark(self) -> None:
        """Later reads start here: what earlier tests wrote is not this test's business."""
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def entries(self) -> list[Entry]:
        with self.path.open("rb") as f:
            f.seek(self.offset)
            return list(parse(f))


def pod_creates(entries: Iterable[Entry], namespace: str) -> Counter[str]:
    """Pod name -> creates that the API server answered 201 Created (409s are the operator
    finding its pod, not a second pod)."""
    return Counter(
        e.name
        for e in entries
        if e.verb == "create"
        and e.resource == "pods"
        and e.namespace == namespace
        and e.code == 201
        and not e.dry_run
    )


def created_twice(entries: Iterable[Entry], namespace: str) -> dict[str, int]:
    return {name: n for name, n in pod_creates(entries, namespace).items() if n > 1}


def pods_created_after(
    entries: Iterable[Entry], namespace: str, job: str, after: float
) -> list[Entry]:
    """Pods of `job` (named <job>-<attempt>) created after `after` (epoch seconds): a job
    deleted at `after` must get none, or the operator still acts on a ghost of it."""
    prefix = f"{job}-"
    return [
        e
        for e in entries
        if e.verb == "create"
        and e.resource == "pods"
        and e.namespace == namespace
        and e.code == 201
        and not e.dry_run
        and e.name.startswith(prefix)
        and e.name[len(prefix) :].isdigit()
        and e.received > after
    ]


def writes(entries: Iterable[Entry]) -> list[Entry]:
    return [e for e in entries if e.verb in ("create", "update", "patch", "delete")]
