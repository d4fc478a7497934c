"""Benchmark: how late do every-minute RecurringJobs start their runs, next to CronJobs?

N RecurringJobs (stoker) and N batch/v1 CronJobs (kube-controller-manager's CronJob
controller) run side by side in one namespace of one cluster, every minute, for M minutes.
Lag of a run = its job's creationTimestamp - its slot, where the slot is read from the job:
stoker.dev/scheduled-at (or the name: <rj>-<minutes since the epoch>) for a BackgroundJob,
batch.kubernetes.io/cronjob-scheduled-timestamp (or the name suffix, also minutes since the
epoch) for a Job. creationTimestamp has 1 s precision (truncated), so each lag is a whole
number of seconds and "0 s" means "within the second". For sub-second figures the benchmark
also watches both kinds of job and takes the arrival time of each ADDED event here (one clock
for both sides, the same watch delay for both): "seen" lag = arrival - slot. stoker's own
histogram (stoker_recurring_schedule_lag_seconds, the operator's clock) gives its mean.

By default the operator's API client is rate-limited like kube-controller-manager's
(--kube-api-qps 20, --kube-api-burst 30, its defaults), so both sides spend the same budget.

    .venv/bin/python tests/bench/bench_recurring.py            # N=200, M=3
    .venv/bin/python tests/bench/bench_recurring.py --small    # N=20, M=1

Prints figures; asserts nothing about speed. Stops everything it started, even on Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kubernetes
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchkit import bench_cluster, client_env, percentile, resource

from operator_process import GROUP, VERSION

MINUTE = timedelta(minutes=1)
# Runs of a slot are collected this long after it (well before the next slot).
COLLECT_AFTER = timedelta(seconds=50)
# Leave at least this much of a minute for creating the objects before the first slot.
CREATE_MARGIN = timedelta(seconds=45)
KCM_QPS, KCM_BURST = 20, 30
TEMPLATE_POD = {"containers": [{"name": "main", "image": "ghcr.io/acme/tasks:1.4"}]}
CRONJOB_SLOT = "batch.kubernetes.io/cronjob-scheduled-timestamp"


@dataclass
class Side:
    label: str
    expected: int = 0
    # job name -> lag in whole seconds (creationTimestamp - slot)
    lags: dict[str, float] = field(default_factory=dict)
    # job name -> slot, for the "seen" lag
    slots: dict[str, datetime] = field(default_factory=dict)

    def row(self, seen: dict[str, float]) -> list[str]:
        values = sorted(self.lags.values())
        arrived = sorted(
            seen[name] - slot.timestamp() for name, slot in self.slots.items() if name in seen
        )
        return [
            self.label,
            f"{len(values)}/{self.expected}",
            fmt(some_percentile(values, 50)),
            fmt(some_percentile(values, 99)),
            fmt(values[-1] if values else None),
            fmt_ms(some_percentile(arrived, 50)),
            fmt_ms(some_percentile(arrived, 99)),
        ]


class Arrivals:
    """Wall-clock arrival time of each job's ADDED watch event, for one kind of job."""

    def __init__(self, list_fn: Any, *args: Any) -> None:
        self.list_fn, self.args = list_fn, args
        self.seen: dict[str, float] = {}
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()

    def _run(self) -> None:
        version = ""
        while not self.stopped.is_set():
            watch = kubernetes.watch.Watch()
            try:
                for event in watch.stream(
                    self.list_fn, *self.args, resource_version=version, timeout_seconds=10
                ):
                    now = time.time()
                    obj = event["object"]
                    meta = obj["metadata"] if isinstance(obj, dict) else obj.metadata
                    name = meta["name"] if isinstance(meta, dict) else meta.name
                    if event["type"] == "ADDED":
                        self.seen.setdefault(name, now)
                    version = watch.resource_version
                    if self.stopped.is_set():
                        break
            except Exception as e:
                if self.stopped.is_set():
                    return
                if getattr(e, "status", None) == 410:  # Gone: start over from a fresh list
                    version = ""
                else:  # a dropped connection: watch again from where it was
                    time.sleep(1)
            finally:
                watch.stop()


def some_percentile(values: list[float], p: float) -> float | None:
    return percentile(values, p) if values else None


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} s"


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms"


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def slot_from_name(name: str) -> datetime | None:
    suffix = name.rsplit("-", 1)[-1]
    return datetime.fromtimestamp(int(suffix) * 60, UTC) if suffix.isdigit() else None


def sleep_until(moment: datetime) -> None:
    delay = (moment - datetime.now(UTC)).total_seconds()
    if delay > 0:
        time.sleep(delay)


def recurring_job(name: str) -> dict[str, Any]:
    return resource(
        "RecurringJob",
        name,
        {
            "schedule": "* * * * *",
            "timeZone": "UTC",
            "concurrencyPolicy": "Allow",
            "jobTemplate": {"spec": {"template": {"spec": TEMPLATE_POD}}},
        },
    )


def cron_job(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name},
        "spec": {
            "schedule": "* * * * *",
            "timeZone": "UTC",
            "concurrencyPolicy": "Allow",
            "jobTemplate": {
                "spec": {"template": {"spec": {**TEMPLATE_POD, "restartPolicy": "Never"}}}
            },
        },
    }


def collect(
    custom: kubernetes.client.CustomObjectsApi,
    batch: kubernetes.client.BatchV1Api,
    namespace: str,
    slots: set[datetime],
    stoker: Side,
    kcm: Side,
) -> None:
    """Add the runs of `slots` seen now (pruned history does not lose runs already seen)."""
    listed = custom.list_namespaced_custom_object(
        GROUP, VERSION, namespace, "backgroundjobs", label_selector="stoker.dev/recurring-job"
    )
    for job in listed["items"]:
        meta = job["metadata"]
        at = (meta.get("annotations") or {}).get("stoker.dev/scheduled-at")
        slot = parse_ts(at) if at else slot_from_name(meta["name"])
        if slot in slots:
            lag = parse_ts(meta["creationTimestamp"]) - slot
            stoker.lags.setdefault(meta["name"], lag.total_seconds())
            stoker.slots[meta["name"]] = slot
    for job in batch.list_namespaced_job(namespace).items:
        meta = job.metadata
        if not any(ref.kind == "CronJob" for ref in meta.owner_references or []):
            continue
        at = (meta.annotations or {}).get(CRONJOB_SLOT)
        slot = parse_ts(at).astimezone(UTC) if at else slot_from_name(meta.name)
        if slot in slots:
            lag = meta.creation_timestamp - slot
            kcm.lags.setdefault(meta.name, lag.total_seconds())
            kcm.slots[meta.name] = slot


def operator_histogram(text: str) -> tuple[float, float] | None:
    """(count, sum) of stoker_recurring_schedule_lag_seconds."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("stoker_recurring_schedule_lag_seconds_"):
                values[sample.name.rsplit("_", 1)[-1]] = sample.value
    if "count" not in values:
        return None
    return values["count"], values.get("sum", 0.0)


def run(n: int, minutes: int, qps: int, burst: int) -> None:
    with bench_cluster("rj", client_env(qps, burst)) as (cluster, operator, namespace):
        client = cluster.api_client(user_agent="stoker-bench")
        custom = kubernetes.client.CustomObjectsApi(client)
        batch = kubernetes.client.BatchV1Api(client)
        bgj_seen = Arrivals(
            custom.list_namespaced_custom_object, GROUP, VERSION, namespace, "backgroundjobs"
        )
        job_seen = Arrivals(batch.list_namespaced_job, namespace)
        watches = [bgj_seen, job_seen]
        for w in watches:
            w.start()
        try:
            now = datetime.now(UTC)
            boundary = now.replace(second=0, microsecond=0) + MINUTE
            if boundary - now < CREATE_MARGIN:
                sleep_until(boundary + timedelta(seconds=1))
            started = time.monotonic()
            for i in range(n):
                custom.create_namespaced_custom_object(
                    GROUP, VERSION, namespace, "recurringjobs", recurring_job(f"rj-{i}")
                )
                batch.create_namespaced_cron_job(namespace, cron_job(f"cj-{i}"))
            created = datetime.now(UTC)
            first = created.replace(second=0, microsecond=0) + MINUTE
            print(
                f"created {n} RecurringJobs and {n} CronJobs in "
                f"{time.monotonic() - started:.1f} s; "
                f"measuring the slots from {first:%H:%M}Z for {minutes} min",
                flush=True,
            )

            stoker = Side(f"stoker RecurringJob (client QPS {qps}/{burst})", n * minutes)
            kcm = Side(f"kube-controller-manager CronJob (QPS {KCM_QPS}/{KCM_BURST})", n * minutes)
            slots: set[datetime] = set()
            for k in range(minutes):
                slot = first + k * MINUTE
                slots.add(slot)
                deadline = slot + COLLECT_AFTER
                # Poll until this slot's runs are all in, then once more at the deadline.
                while datetime.now(UTC) < deadline:
                    time.sleep(5)
                    collect(custom, batch, namespace, slots, stoker, kcm)
                    if len(stoker.lags) >= n * (k + 1) and len(kcm.lags) >= n * (k + 1):
                        break
                collect(custom, batch, namespace, slots, stoker, kcm)
                print(
                    f"slot {slot:%H:%M}Z: {len(stoker.lags)} stoker runs, "
                    f"{len(kcm.lags)} CronJob runs",
                    flush=True,
                )
            histogram = operator_histogram(operator.metrics())

            print()
            print(f"Schedule lag, {n} every-minute schedules per controller, {minutes} slot(s)")
            print("lag = job creationTimestamp - slot; creationTimestamp has 1 s precision")
            print("(truncated): 0 s means within the same second as the slot. seen = arrival of")
            print(
                "the job's ADDED watch event here - slot (one clock, sub-second, incl. watch "
                "delay)."
            )
            rows = [
                ["controller", "runs", "p50", "p99", "max", "seen p50", "seen p99"],
                stoker.row(bgj_seen.seen),
                kcm.row(job_seen.seen),
            ]
            widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
            for row in rows:
                print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
            if histogram and histogram[0]:
                count, total = histogram
                print(
                    f"stoker_recurring_schedule_lag_seconds (operator clock): {count:.0f} runs, "
                    f"mean {total / count * 1000:.0f} ms"
                )
            print(f"operator log: {operator.log_path}")
        finally:
            for w in watches:
                w.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="N=20, M=1")
    parser.add_argument("--n", type=int, help="schedules per controller (default 200)")
    parser.add_argument("--minutes", type=int, help="slots to measure (default 3)")
    parser.add_argument("--qps", type=int, default=KCM_QPS, help="operator client QPS")
    parser.add_argument("--burst", type=int, default=KCM_BURST, help="operator client burst")
    args = parser.parse_args()
    n = args.n or (20 if args.small else 200)
    minutes = args.minutes or (1 if args.small else 3)
    run(n, minutes, args.qps, args.burst)


if __name__ == "__main__":
    main()
