"""Benchmark: the operator's footprint while N BackgroundJobs wait for a startAt an hour away.

    .venv/bin/python tests/bench/bench_scheduled.py            # 10,000 jobs, 60 s idle window
    .venv/bin/python tests/bench/bench_scheduled.py --small    # 1,000 jobs, 20 s idle window

Starts its own control plane and one operator (deleted at the end, also on Ctrl-C), creates
the jobs from a thread pool in a fresh namespace, waits until every one shows phase Scheduled
(reason Delayed) through a watch, lets the operator settle, then measures the operator process
only (the API server, etcd and kwok share the machine's cores, so a machine-wide figure would
mean nothing):
  - RSS (VmRSS of /proc/<pid>/status), before the jobs and with them all Scheduled;
  - idle CPU over the window, from /proc/<pid>/stat utime+stime, as % of one core;
  - that nothing polls: the operator's API writes during the window, from
    stoker_api_writes_total and from the API server's audit log (the Lease renewal of leader
    election is listed apart: it is the only periodic write by design), and the lines its
    log grew by.
Targets from the issue are printed next to the figures; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import kubernetes
from kubernetes.client.exceptions import ApiException

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchkit import (
    add_client_options,
    api_writes,
    bench_cluster,
    client_env,
    create_all,
    jobs_watch,
    operator_writes,
    resource,
    wait_quiet,
)

from harness import Cluster
from operator_process import GROUP, VERSION, Operator

CREATE_THREADS = 16
TARGET_RSS_MB = 250
TARGET_IDLE_CPU_PERCENT = 2.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- the operator process


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MiB: resident now, and the peak so far."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )

    def mib(name: str) -> float:
        return int(fields[name].split()[0]) / 1024  # reported in kB

    return mib("VmRSS"), mib("VmHWM")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (its threads included), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name may contain spaces and parentheses: split after its closing ")".
    after_comm = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(after_comm[11]), int(after_comm[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / CLK_TCK


# ---------------------------------------------------------------- the audit log


class AuditTail:
    """The operator's writes that reach the API server's audit log after `mark()`."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset = path, 0

    def mark(self) -> None:
        self.offset = self.path.stat().st_size

    def since_mark(self) -> tuple[Counter[str], bool]:
        """Writes by (namespace, verb, resource) since mark; False when the log was rotated."""
        writes: Counter[str] = Counter()
        with self.path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() < self.offset:
                return writes, False
            f.seek(self.offset)
            for w in operator_writes(f):
                writes[f"{w.namespace or '-'} {w.verb} {w.resource}"] += 1
        return writes, True


# ---------------------------------------------------------------- jobs and their phases


def job_body(name: str, start_at: str) -> dict[str, Any]:
    return resource(
        "BackgroundJob",
        name,
        {
            "startAt": start_at,
            "template": {"spec": {"containers": [{"name": "main", "image": "bench:1"}]}},
        },
    )


class Phases:
    """Every job's latest (phase, reason), fed by a watch on the namespace's BackgroundJobs."""

    def __init__(self) -> None:
        self.state: dict[str, tuple[str | None, str | None]] = {}

    def on_event(self, kind: str, obj: dict[str, Any], at: float) -> None:
        if kind in ("ADDED", "MODIFIED"):
            status = obj.get("status") or {}
            self.state[obj["metadata"]["name"]] = (status.get("phase"), status.get("reason"))


def create_jobs(
    cluster: Cluster, namespace: str, names: list[str], start_at: str, stop: threading.Event
) -> None:
    def create(api: kubernetes.client.CustomObjectsApi, name: str) -> None:
        if stop.is_set():  # the run was interrupted: let the pool drain at once
            return
        for pause in (0.5, 1, 2, 4, 8, None):
            try:
                api.create_namespaced_custom_object(
                    GROUP, VERSION, namespace, "backgroundjobs", job_body(name, start_at)
                )
                return
            except ApiException as e:
                # An overloaded API server answers 429/5xx; 409 means an earlier try landed.
                if e.status == 409:
                    return
                if pause is None or e.status not in (429, 500, 503, 504):
                    raise
                time.sleep(pause)

    create_all(cluster, names, CREATE_THREADS, create)


def all_scheduled(cluster: Cluster, namespace: str) -> tuple[Counter[tuple[str, str]], int]:
    """Phase and reason of every job, read by one paged list (the truth, not the watch), and
    the size of the largest job as JSON (what the operator's watch delivers and keeps)."""
    api = kubernetes.client.CustomObjectsApi(cluster.api_client(user_agent="stoker-bench"))
    seen: Counter[tuple[str, str]] = Counter()
    largest = 0
    cont: str | None = None
    while True:
        page: dict[str, Any] = cast(
            dict[str, Any],
            api.list_namespaced_custom_object(
                GROUP, VERSION, namespace, "backgroundjobs", limit=500, _continue=cont
            ),
        )
        for job in page["items"]:
            status = job.get("status") or {}
            seen[(str(status.get("phase")), str(status.get("reason")))] += 1
            largest = max(largest, len(json.dumps(job, separators=(",", ":"))))
        cont = page["metadata"].get("continue")
        if not cont:
            return seen, largest


# ---------------------------------------------------------------- the run


def run(n: int, idle: float, qps: int, burst: int) -> None:
    with bench_cluster("scheduled", client_env(qps, burst)) as (cluster, operator, ns):
        measure(cluster, operator, ns, n, idle)


def measure(cluster: Cluster, operator: Operator, ns: str, n: int, idle: float) -> None:
    log = operator.log_path
    assert operator.proc is not None
    pid = operator.proc.pid
    print(f"operator pid {pid}, log: {log}", flush=True)
    time.sleep(3)  # past start-up (lease, first list) before the baseline
    rss_empty, _ = rss_mb(pid)

    phases = Phases()
    watch = jobs_watch(cluster, ns, phases.on_event, include_listed=True)
    runner = ThreadPoolExecutor(1)
    stop_creating = threading.Event()
    try:
        writes_before = api_writes(operator.metrics())
        start_at = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        names = [f"later-{i:05d}" for i in range(n)]
        print(f"creating {n} jobs (startAt {start_at}) with {CREATE_THREADS} threads ...")
        t0 = time.monotonic()
        cpu0 = cpu_seconds(pid)
        # Created in the background, so that the operator's RSS is sampled on the way.
        creating = runner.submit(create_jobs, cluster, ns, names, start_at, stop_creating)
        created_in: float | None = None

        deadline = time.monotonic() + 600 + n / 10
        last_report = time.monotonic()
        rss_half: tuple[int, float] | None = None
        while True:
            if created_in is None and creating.done():
                creating.result()
                created_in = time.monotonic() - t0
                print(f"  created in {created_in:.1f} s ({n / created_in:.0f} jobs/s)", flush=True)
            watch.check()
            with watch.lock:
                counts = Counter(phases.state.values())
            scheduled = counts[("Scheduled", "Delayed")]
            if scheduled >= n and created_in is not None:
                break
            if rss_half is None and scheduled >= n // 2:
                rss_half = scheduled, rss_mb(pid)[0]
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {scheduled} of {n} jobs Scheduled in time: {counts}")
            if time.monotonic() - last_report >= 5:
                last_report = time.monotonic()
                print(f"  t={last_report - t0:5.1f} s: {scheduled} Scheduled", flush=True)
            time.sleep(0.2)
        all_in = time.monotonic() - t0
        busy_cpu = cpu_seconds(pid) - cpu0
    finally:
        stop_creating.set()
        runner.shutdown(wait=True)
        watch.stop()

    listed, job_bytes = all_scheduled(cluster, ns)
    settled_in = wait_quiet(operator, quiet=5, limit=120)
    rss_full, hwm = rss_mb(pid)
    writes_to_schedule = api_writes(operator.metrics()) - writes_before

    # The idle window: nothing of ours runs but sleep; scrapes happen outside it.
    audit = AuditTail(cluster.audit_log) if cluster.audit_log else None
    writes_at_start = api_writes(operator.metrics())
    log_lines_at_start = len(log.read_bytes().splitlines())
    if audit is not None:
        audit.mark()
    print(f"all Scheduled; idle window of {idle:.0f} s ...", flush=True)
    w0, c0 = time.monotonic(), cpu_seconds(pid)
    time.sleep(idle)
    w1, c1 = time.monotonic(), cpu_seconds(pid)
    rss_after_idle, _ = rss_mb(pid)
    idle_writes = api_writes(operator.metrics()) - writes_at_start
    log_growth = len(log.read_bytes().splitlines()) - log_lines_at_start
    audit_writes, audit_ok = audit.since_mark() if audit is not None else (Counter(), False)
    idle_cpu = (c1 - c0) / (w1 - w0) * 100

    print()
    print(f"jobs: {n} BackgroundJobs with startAt 1 h ahead, one namespace, one operator")
    print(f"phases by one paged list: {dict(listed)}")
    print(
        f"creating: {created_in:.1f} s ({n / created_in:.0f} jobs/s, {CREATE_THREADS} threads); "
        f"first create -> all Scheduled (as seen by a watch): {all_in:.1f} s"
    )
    total_writes = sum(writes_to_schedule.values())
    print(
        f"operator writes to get there: {total_writes:.0f} = {total_writes / n:.2f} per job "
        f"({', '.join(f'{k}: {v:.0f}' for k, v in sorted(writes_to_schedule.items()) if v)}); "
        f"its CPU meanwhile: {busy_cpu:.1f} s = {busy_cpu / n * 1000:.2f} ms per job"
    )
    print(f"the operator stopped writing {settled_in:.1f} s after the list")
    print()
    print(
        f"RSS with {n} jobs Scheduled: {rss_full:.0f} MiB (target <= {TARGET_RSS_MB} MB at "
        f"10,000 jobs); {rss_after_idle:.0f} MiB after the idle window; peak {hwm:.0f} MiB"
    )
    print(
        f"  with no jobs: {rss_empty:.0f} MiB, i.e. "
        f"{(rss_full - rss_empty) * 1024 / n:.1f} KiB per Scheduled job (one job is "
        f"{job_bytes} bytes of JSON, managedFields included)"
    )
    if rss_half is not None:
        half_n, half_rss = rss_half
        print(
            f"  with {half_n} Scheduled: {half_rss:.0f} MiB; the growth from there to {n} is "
            f"{(rss_full - half_rss) * 1024 / (n - half_n):.1f} KiB per job (start-up excluded)"
        )
    print(
        f"idle CPU over {w1 - w0:.1f} s: {c1 - c0:.2f} s = {idle_cpu:.2f} % of one core "
        f"(target <= {TARGET_IDLE_CPU_PERCENT:g} %)"
    )
    idle_total = sum(idle_writes.values())
    print(
        f"API writes during the idle window, stoker_api_writes_total: {idle_total:.0f} "
        f"(should be 0){': ' + str(dict(+idle_writes)) if idle_total else ''}"
    )
    if audit is None:
        print("audit log: not available")
    elif not audit_ok:
        print("audit log: rotated during the window, not counted")
    else:
        lease = {k: v for k, v in audit_writes.items() if k.endswith(" leases")}
        other = {k: v for k, v in audit_writes.items() if k not in lease}
        print(
            f"  audit log, operator user agents: {sum(other.values())} writes besides the Lease "
            f"(should be 0){': ' + str(other) if other else ''}"
        )
        print(
            f"  Lease renewals by leader election: {sum(lease.values())} "
            f"({sum(lease.values()) / (w1 - w0):.2f}/s)"
        )
    print(f"  operator log lines written during the window: {log_growth}")
    print(
        "  (kopf's watches reconnect every 300 s, resuming from their last bookmark without a "
        "re-list; a window of --idle 330 includes one reconnect)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="1,000 jobs, 20 s idle window")
    parser.add_argument("--jobs", type=int, help="number of jobs (default 10,000)")
    parser.add_argument("--idle", type=float, help="idle window in seconds (default 60)")
    add_client_options(parser)
    args = parser.parse_args()
    n = args.jobs or (1000 if args.small else 10_000)
    idle = args.idle or (20.0 if args.small else 60.0)

    run(n, idle, args.qps, args.burst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
