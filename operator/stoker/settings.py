"""Operator-wide settings, read once from the environment (the Helm chart sets them)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta

from stoker.api.durations import parse_duration


def _int_or_none(text: str | None) -> int | None:
    return int(text) if text not in (None, "", "0") else None


def _duration_or_none(text: str | None) -> timedelta | None:
    return parse_duration(text) if text not in (None, "", "0") else None


@dataclass(frozen=True)
class Settings:
    # Namespaces to serve; empty = every namespace.
    namespaces: tuple[str, ...] = ()
    # Hangfire's WorkerCount: at most this many Running jobs across all queues; None = unlimited.
    max_running: int | None = None
    # ttlAfterFinished for jobs that do not set one; None = keep finished jobs.
    default_ttl_after_finished: timedelta | None = None
    # Client-side rate limit for API writes, so that benchmarks compare like with like.
    api_qps: float = 100.0
    api_burst: int = 200
    metrics_port: int = 8080
    health_port: int = 8081
    # Leader election: only the Lease holder reconciles (HA = 2 replicas).
    leader_election: bool = True
    lease_name: str = "stoker-operator"
    lease_namespace: str = "default"
    lease_duration: timedelta = field(default=timedelta(seconds=15))
    # Every API request gives up after this long (a hung request must not wedge anything).
    request_timeout: timedelta = field(default=timedelta(seconds=30))
    # A pod not running this long after its creation ends its attempt (reason Unschedulable or
    # StartTimeout) when the job sets no `timeout`, which is its start deadline otherwise.
    # None = no limit.
    start_timeout: timedelta | None = field(default=timedelta(minutes=10))
    # The write of an attempt's start waits this long after its pod's creation: a pod that
    # ends by then costs one status write (its end) instead of two. 0 = write at once.
    start_write_delay: timedelta = field(default=timedelta(seconds=1))
    # /healthz fails when the reconcile loop has not completed a pass for this long.
    stall_after: timedelta = field(default=timedelta(seconds=60))
    # Who we are, as the Lease holder and in User-Agent (write counting in benchmarks).
    identity: str = field(default_factory=lambda: os.environ.get("HOSTNAME", "stoker-operator"))

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        e = dict(os.environ if env is None else env)
        ttl = e.get("STOKER_DEFAULT_TTL_AFTER_FINISHED", "")
        return cls(
            namespaces=tuple(n for n in e.get("STOKER_NAMESPACES", "").split(",") if n.strip()),
            max_running=_int_or_none(e.get("STOKER_MAX_RUNNING")),
            default_ttl_after_finished=parse_duration(ttl) if ttl else None,
            api_qps=float(e.get("STOKER_API_QPS", "100")),
            api_burst=int(e.get("STOKER_API_BURST", "200")),
            metrics_port=int(e.get("STOKER_METRICS_PORT", "8080")),
            health_port=int(e.get("STOKER_HEALTH_PORT", "8081")),
            leader_election=e.get("STOKER_LEADER_ELECTION", "true").lower() == "true",
            lease_name=e.get("STOKER_LEASE_NAME", "stoker-operator"),
            lease_namespace=e.get("STOKER_LEASE_NAMESPACE", e.get("POD_NAMESPACE", "default")),
            lease_duration=parse_duration(e.get("STOKER_LEASE_DURATION", "15s")),
            request_timeout=parse_duration(e.get("STOKER_REQUEST_TIMEOUT", "30s")),
            start_timeout=_duration_or_none(e.get("STOKER_START_TIMEOUT", "10m")),
            stall_after=parse_duration(e.get("STOKER_STALL_AFTER", "60s")),
            start_write_delay=parse_duration(e.get("STOKER_START_WRITE_DELAY", "1s")),
            identity=e.get("STOKER_IDENTITY", e.get("HOSTNAME", "stoker-operator")),
        )
