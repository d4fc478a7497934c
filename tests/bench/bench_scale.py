"""Benchmark: the operator started on a cluster that keeps 50,000 finished BackgroundJobs.

    .venv/bin/python tests/bench/bench_scale.py              # 50,000 jobs, 1,000 RecurringJobs
    .venv/bin/python tests/bench/bench_scale.py --small      # 5,000 jobs, 100 RecurringJobs
    .venv/bin/python tests/bench/bench_scale.py --rounds 3   # three operator starts, one load

The issue's scale target: with 50,000 finished BackgroundJobs kept (no TTL) and 1,000
RecurringJobs, the operator's RSS stays <= 400 MiB, it makes its first decision <= 30 s after
it starts, and a job created then gets its pod in <= 1 s.

Starts its own control plane (deleted at the end, also on Ctrl-C). With no operator running:
  1. (unless --no-baseline) one operator round on the empty cluster, for the RSS of nothing;
  2. loads the jobs from a thread pool, spread over --namespaces namespaces: each job is
     created with a realistic spec (one container, a task with small args, a queue), then its
     status is replaced by the one the operator would have written once its one attempt ended
     (computed by the operator's own phase machine, stoker.core.lifecycle: Succeeded, or Failed
     for every tenth job, attempt history, conditions, observedGeneration), so that the
     operator has nothing to write to them; then the RecurringJobs, yearly ("0 0 1 1 *", they
     do not fire during the run), with the status stoker.core.recurring computes, a third of
     them with a past lastScheduleTime. --pods K also creates the terminated pods of the
     first K jobs (built by stoker.core.podspec, bound to the kwok node, which ends them at
     once; every tenth Failed). A real cluster keeps at most 12,500 terminated pods:
     kube-controller-manager's PodGC (--terminated-pod-gc-threshold) deletes the oldest beyond.
Then each round (--rounds) starts a fresh operator process, with one pending probe job created
just before in a fresh namespace, and measures, on the operator process only:
  - startup to first decision: process start to the probe job's pod ADDED (a pod watch); the
    milestones before it come from the operator's log timestamps;
  - its CPU seconds up to then, and up to when its CPU use fell quiet;
  - RSS (VmRSS) and peak RSS (VmHWM) from /proc, --settle seconds after it fell quiet;
  - its API writes during startup (stoker_api_writes_total, scraped after the RSS);
  - create -> pod ADDED latency of --probes jobs created one at a time, 1 s apart.
Nothing is asserted: the figures, and the targets next to them, are for people.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

import kubernetes
from kubernetes.client.exceptions import ApiException

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_scheduled import cpu_seconds, rss_mb
from benchkit import (
    Watch,
    add_client_options,
    api_writes,
    bench_control_plane,
    client_env,
    create_all,
    percentile,
    resource,
)

from harness import REPO, Cluster, create_namespace
from operator_process import GROUP, VERSION, Operator
from stoker.core import lifecycle, recurring, schedule
from stoker.core.podspec import build_pod
from stoker.handlers.jobs import job_view
from stoker.handlers.recurring import recurring_view

T = TypeVar("T")

TARGET_RSS_MIB = 400
TARGET_STARTUP_S = 30.0
TARGET_POD_S = 1.0
QUEUES = ("default", "email", "reports")  # email and reports exist as JobQueues
IMAGE = "ghcr.io/acme/tasks:1.4"
KWOK_NODE = "kwok-node-0"
YEARLY = "0 0 1 1 *"
PROGRESS_EVERY = 5000
# CPU use of the operator below this share of one core, over QUIET_WINDOW s, is "quiet".
QUIET_SHARE, QUIET_WINDOW = 0.05, 2.0
LOG_MILESTONES = ("stoker serving", " leads (lease ")


# ---------------------------------------------------------------- API calls under load


def retried(call: Callable[[], T]) -> T:
    """An overloaded API server answers 429 or 5xx: wait and try again."""
    for pause in (0.5, 1, 2, 4, 8, 16, None):
        try:
            return call()
        except ApiException as e:
            if pause is None or e.status not in (429, 500, 503, 504):
                raise
            time.sleep(pause)
    raise AssertionError("unreachable")


def create_object(
    api: kubernetes.client.CustomObjectsApi, namespace: str, plural: str, body: dict[str, Any]
) -> dict[str, Any]:
    """Create, or get what an earlier try that timed out created."""
    try:
        return cast(
            dict[str, Any],
            retried(
                lambda: api.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)
            ),
        )
    except ApiException as e:
        if e.status != 409:
            raise
        name = body["metadata"]["name"]
        return cast(
            dict[str, Any],
            retried(
                lambda: api.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
            ),
        )


def replace_status(
    api: kubernetes.client.CustomObjectsApi,
    plural: str,
    obj: dict[str, Any],
    status: dict[str, Any],
) -> None:
    meta = obj["metadata"]
    body = {**obj, "status": status}
    retried(
        lambda: api.replace_namespaced_custom_object_status(
            GROUP, VERSION, meta["namespace"], plural, meta["name"], body, _preload_content=False
        )
    )


# ---------------------------------------------------------------- the objects


def template(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    container = {
        "name": "main",
        "image": IMAGE,
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
    }
    return {"metadata": {"annotations": annotations or {}}, "spec": {"containers": [container]}}


def job_body(name: str, i: int, failed: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "queue": QUEUES[i % len(QUEUES)],
        "template": template(),
        "task": {
            "name": "send_welcome_email",
            "args": {"user_id": i, "email": f"u{i}@example.com"},
        },
    }
    if failed:
        spec["retry"] = {"attempts": 0}  # so that its one failed attempt ends it
    return resource("BackgroundJob", name, spec)


def finished_status(body: dict[str, Any], failed: bool, run_seconds: float) -> dict[str, Any]:
    """The status the operator writes once the job's first attempt ended: its own phase
    machine run through ready -> started -> pod terminated."""
    job = job_view(body)
    ready = lifecycle.decide(job, [], {}, job.created_at)
    assert ready.ready_attempt == 1, ready.status
    pod = lifecycle.pod_name(job.name, 1)
    started = lifecycle.started(ready.status, job.spec, 1, pod, job.created_at)
    ended = job.created_at + timedelta(seconds=run_seconds)
    outcome = lifecycle.PodView(
        name=pod,
        attempt=1,
        phase="Failed" if failed else "Succeeded",
        started_at=job.created_at,
        finished_at=ended,
        exit_code=1 if failed else 0,
        reason="Error" if failed else "Completed",
        created_at=job.created_at,
    )
    done = lifecycle.decide(dataclasses.replace(job, status=started), [outcome], {}, ended)
    assert done.status.phase == ("Failed" if failed else "Succeeded"), done.status
    return done.status.wire()


def terminated_pod(body: dict[str, Any], failed: bool) -> dict[str, Any]:
    """The attempt's pod as the operator builds it, bound to the kwok node, which runs it to
    its end at once (Failed when its annotations say so)."""
    pod = build_pod(job_view(body), 1)
    if failed:
        pod["metadata"]["annotations"]["sim.stoker.dev/fail-attempts"] = "always"
    pod["spec"]["nodeName"] = KWOK_NODE
    return pod


def recurring_body(name: str, i: int) -> dict[str, Any]:
    job_spec = {
        "queue": "reports",
        "template": template(),
        "task": {"name": "yearly_report", "args": {"report": i}},
    }
    return resource(
        "RecurringJob",
        name,
        {"schedule": YEARLY, "timeZone": "UTC", "jobTemplate": {"spec": job_spec}},
    )


def recurring_status(body: dict[str, Any], ran: bool, now: datetime) -> dict[str, Any]:
    """The status stoker.core.recurring computes; with `ran`, as after last January's run."""
    rj = recurring_view(body)
    status = recurring.decide(rj, [], now).status
    if ran:
        slot = datetime(now.year, 1, 1, tzinfo=UTC)
        status.last_schedule_time = slot
        status.last_job = schedule.job_name(rj.name, slot)
        status.last_successful_time = slot + timedelta(seconds=42)
    return status.wire()


# ---------------------------------------------------------------- loading


@dataclass
class Loaded:
    namespaces: list[str]
    jobs: int
    recurring: int
    pods: int
    seconds: float
    phases: Counter[str] = field(default_factory=Counter)


class Progress:
    def __init__(self, what: str, total: int) -> None:
        self.what, self.total, self.done = what, total, 0
        self.lock = threading.Lock()
        self.start = time.monotonic()

    def one(self) -> None:
        with self.lock:
            self.done += 1
            if self.done % PROGRESS_EVERY == 0 or self.done == self.total:
                took = time.monotonic() - self.start
                print(
                    f"  {self.done:6d} of {self.total} {self.what} in {took:5.1f} s "
                    f"({self.done / took:.0f}/s)",
                    flush=True,
                )


def load(
    cluster: Cluster, n_jobs: int, n_recurring: int, n_namespaces: int, n_pods: int, threads: int
) -> Loaded:
    t0 = time.monotonic()
    namespaces = [create_namespace(cluster, f"scale{i}-") for i in range(n_namespaces)]
    custom = kubernetes.client.CustomObjectsApi(cluster.api_client(user_agent="stoker-bench"))
    for ns in namespaces:
        for queue in QUEUES[1:]:
            create_object(custom, ns, "jobqueues", resource("JobQueue", queue, {"concurrency": 20}))

    print(
        f"loading {n_jobs} finished BackgroundJobs (create + status) over {n_namespaces} "
        f"namespaces with {threads} threads, the first {n_pods} with their terminated pod ...",
        flush=True,
    )
    progress = Progress("jobs", n_jobs)
    phases: Counter[str] = Counter()
    pods_of = threading.local()

    def one_job(api: kubernetes.client.CustomObjectsApi, name: str) -> None:
        i = int(name.rsplit("-", 1)[1])
        failed = i % 10 == 9
        ns = namespaces[i % n_namespaces]
        created = create_object(api, ns, "backgroundjobs", job_body(name, i, failed))
        status = finished_status(created, failed, run_seconds=1 + i % 10)
        replace_status(api, "backgroundjobs", created, status)
        if i < n_pods:
            if not hasattr(pods_of, "core"):
                pods_of.core = kubernetes.client.CoreV1Api(api.api_client)
            pod = terminated_pod(created, failed)
            try:
                retried(lambda: pods_of.core.create_namespaced_pod(ns, pod))
            except ApiException as e:
                if e.status != 409:
                    raise
        with progress.lock:
            phases[status["phase"]] += 1
        progress.one()

    create_all(cluster, [f"job-{i:06d}" for i in range(n_jobs)], threads, one_job)
    jobs_in = time.monotonic() - t0
    print(f"  jobs loaded in {jobs_in:.1f} s: {dict(phases)}", flush=True)

    now = datetime.now(UTC)
    progress = Progress("RecurringJobs", n_recurring)

    def one_recurring(api: kubernetes.client.CustomObjectsApi, name: str) -> None:
        i = int(name.rsplit("-", 1)[1])
        created = create_object(
            api, namespaces[i % n_namespaces], "recurringjobs", recurring_body(name, i)
        )
        replace_status(api, "recurringjobs", created, recurring_status(created, i % 3 == 0, now))
        progress.one()

    create_all(cluster, [f"report-{i:05d}" for i in range(n_recurring)], threads, one_recurring)
    if n_pods:
        wait_pods_terminated(cluster, n_pods)
    took = time.monotonic() - t0
    print(f"loaded in {took:.1f} s", flush=True)
    return Loaded(namespaces, n_jobs, n_recurring, n_pods, took, phases)


def wait_pods_terminated(cluster: Cluster, n: int, limit: float = 600) -> None:
    """Until the kwok node has ended every pod (one paged list per look)."""
    core = kubernetes.client.CoreV1Api(cluster.api_client(user_agent="stoker-bench"))
    deadline = time.monotonic() + limit
    while True:
        phases: Counter[str] = Counter()
        cont: str | None = None
        while True:
            page = core.list_pod_for_all_namespaces(
                label_selector="stoker.dev/job-uid", limit=500, _continue=cont
            )
            phases.update(str(p.status.phase if p.status else None) for p in page.items)
            cont = page.metadata._continue if page.metadata else None
            if not cont:
                break
        ended = phases["Succeeded"] + phases["Failed"]
        print(f"  pods: {dict(phases)}", flush=True)
        if ended >= n or time.monotonic() > deadline:
            return
        time.sleep(5)


# ---------------------------------------------------------------- one operator start


@dataclass
class Round:
    label: str
    startup: float  # process start -> probe pod ADDED
    milestones: dict[str, float]  # log milestone -> seconds after process start
    cpu_startup: float
    cpu_to_quiet: float
    quiet_after: float
    rss: float
    hwm: float
    writes: Counter[str]
    latencies: list[float]
    log: Path


class OperatorExited(RuntimeError):
    """The operator ended before it was measured (its last log line says why)."""


class PodArrivals:
    """When each pod's ADDED event arrived (time.monotonic)."""

    def __init__(self) -> None:
        self.added: dict[str, float] = {}

    def on_event(self, kind: str, obj: dict[str, Any], at: float) -> None:
        if kind == "ADDED":
            self.added.setdefault(obj["metadata"]["name"], at)


def probe_job(name: str) -> dict[str, Any]:
    return resource("BackgroundJob", name, {"template": template()})


def wait_until(predicate: Callable[[], bool], limit: float, what: str) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > limit:
            raise TimeoutError(f"no {what} after {limit:.0f} s")
        time.sleep(0.02)
    return time.monotonic()


def wait_cpu_quiet(pid: int, limit: float) -> float:
    """Until the process used less than QUIET_SHARE of a core over QUIET_WINDOW seconds."""
    start = time.monotonic()
    last = cpu_seconds(pid)
    while time.monotonic() - start < limit:
        time.sleep(QUIET_WINDOW)
        now = cpu_seconds(pid)
        if now - last < QUIET_SHARE * QUIET_WINDOW:
            break
        last = now
    return time.monotonic()


def log_milestones(log: Path, started_wall: float) -> dict[str, float]:
    """Seconds from process start to the first log line, and to each milestone's line
    (timestamps in the log's local-time asctime form, millisecond precision)."""
    found: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        try:
            at = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        except ValueError:
            continue
        found.setdefault("first log line", at - started_wall)
        for milestone in LOG_MILESTONES:
            if milestone in line:
                found.setdefault(milestone.strip(), at - started_wall)
    return found


def operator_round(
    cluster: Cluster, label: str, env: dict[str, str], probes: int, settle: float
) -> Round:
    ns = create_namespace(cluster, "probe-")
    custom = kubernetes.client.CustomObjectsApi(cluster.api_client(user_agent="stoker-bench"))
    core = kubernetes.client.CoreV1Api(cluster.api_client(user_agent="stoker-bench-watch"))
    pods = PodArrivals()
    watch = Watch(lambda **kw: core.list_namespaced_pod(ns, **kw), pods.on_event)
    log = Path(tempfile.mkdtemp(prefix="stoker-bench-scale-")) / "operator.log"
    operator = Operator(cluster, log, env={"STOKER_IDENTITY": "stoker-bench", **env})
    try:
        create_object(custom, ns, "backgroundjobs", probe_job("probe"))
        print(f"[{label}] starting the operator (log: {log}) ...", flush=True)
        started_wall, t0 = time.time(), time.monotonic()
        operator.start(wait=False)
        assert operator.proc is not None
        pid = operator.proc.pid

        def arrived(pod: str) -> bool:
            watch.check()
            if operator.proc is not None and operator.proc.poll() is not None:
                last = log.read_text(errors="replace").strip().splitlines()[-1:]
                raise OperatorExited(
                    f"[{label}] the operator exited {time.monotonic() - t0:.0f} s after its "
                    f"start: {' '.join(last)}"
                )
            with watch.lock:
                return pod in pods.added

        wait_until(lambda: arrived("probe-1"), 900, "pod for the probe job")
        cpu_startup = cpu_seconds(pid)
        with watch.lock:
            startup = pods.added["probe-1"] - t0
        print(f"[{label}]   probe pod after {startup:.2f} s ({cpu_startup:.1f} s CPU)", flush=True)
        quiet_at = wait_cpu_quiet(pid, limit=600)
        cpu_to_quiet = cpu_seconds(pid)
        time.sleep(settle)
        rss, hwm = rss_mb(pid)
        writes = api_writes(operator.metrics())
        print(
            f"[{label}]   CPU quiet {quiet_at - t0:.1f} s after start; RSS {rss:.0f} MiB "
            f"(peak {hwm:.0f} MiB) {settle:.0f} s later",
            flush=True,
        )

        latencies = []
        for i in range(probes):
            name = f"probe-{i:02d}"
            sent = time.monotonic()
            create_object(custom, ns, "backgroundjobs", probe_job(name))
            wait_until(partial(arrived, f"{name}-1"), 60, f"pod for {name}")
            with watch.lock:
                latencies.append(pods.added[f"{name}-1"] - sent)
            time.sleep(max(0.0, sent + 1.0 - time.monotonic()))
        if latencies:
            print(
                f"[{label}]   create -> pod ADDED over {probes} jobs: p50 "
                f"{percentile(latencies, 50) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms",
                flush=True,
            )
    finally:
        operator.stop()
        watch.stop()
    return Round(
        label,
        startup,
        log_milestones(log, started_wall),
        cpu_startup,
        cpu_to_quiet,
        quiet_at - t0,
        rss,
        hwm,
        writes,
        latencies,
        log,
    )


# ---------------------------------------------------------------- report


def spread(values: list[float], fmt: str = "{:.1f}") -> str:
    """median (min-max), or the one value."""
    if len(values) == 1:
        return fmt.format(values[0])
    middle, low, high = statistics.median(values), min(values), max(values)
    return f"{fmt.format(middle)} ({fmt.format(low)}-{fmt.format(high)})"


def report(loaded: Loaded, rounds: list[Round], baseline: Round | None, exits: list[str]) -> None:
    print()
    for line in exits:
        print(line)
    if not rounds:
        print("no operator round got as far as its first decision: no figures")
        return
    objects = loaded.jobs + loaded.recurring
    print(
        f"loaded: {loaded.jobs} BackgroundJobs ({dict(loaded.phases)}), {loaded.recurring} "
        f"RecurringJobs, {loaded.pods} terminated pods, {len(loaded.namespaces)} namespaces, "
        f"in {loaded.seconds:.0f} s"
    )
    for r in ([baseline] if baseline else []) + rounds:
        milestones = ", ".join(f"{k} {v:.2f} s" for k, v in r.milestones.items())
        writes = {k: v for k, v in sorted(r.writes.items()) if v}
        print(
            f"{r.label}: {milestones}, probe pod {r.startup:.2f} s; CPU {r.cpu_startup:.1f} s "
            f"to the probe pod, {r.cpu_to_quiet:.1f} s to quiet ({r.quiet_after:.1f} s); "
            f"RSS {r.rss:.0f} MiB, peak {r.hwm:.0f} MiB; writes {writes}"
        )
    lat = [x * 1000 for r in rounds for x in r.latencies]
    rows: list[tuple[str, str, str]] = [
        (
            "startup to first decision (s)",
            spread([r.startup for r in rounds], "{:.2f}"),
            f"<= {TARGET_STARTUP_S:g} s",
        ),
    ]
    for milestone in ("first log line", *(m.strip() for m in LOG_MILESTONES)):
        values = [r.milestones[milestone] for r in rounds if milestone in r.milestones]
        if values:
            rows.append((f"  start -> log '{milestone}' (s)", spread(values, "{:.2f}"), ""))
    rows += [
        ("CPU to first decision (s)", spread([r.cpu_startup for r in rounds]), ""),
        ("CPU until quiet (s)", spread([r.cpu_to_quiet for r in rounds]), ""),
        (
            "RSS after settling (MiB)",
            spread([r.rss for r in rounds], "{:.0f}"),
            f"<= {TARGET_RSS_MIB} MiB",
        ),
        (
            "peak RSS, VmHWM (MiB)",
            spread([r.hwm for r in rounds], "{:.0f}"),
            f"<= {TARGET_RSS_MIB} MiB",
        ),
    ]
    if baseline is not None:
        rows += [
            ("  empty cluster: RSS (MiB)", f"{baseline.rss:.0f}", ""),
            ("  empty cluster: startup (s)", f"{baseline.startup:.2f}", ""),
            (
                f"  RSS per object at the margin (KiB, {objects} objects)",
                spread([(r.rss - baseline.rss) * 1024 / objects for r in rounds]),
                "",
            ),
        ]
    if lat:
        rows += [
            (
                f"create -> pod, p50 (ms; {len(lat)} jobs)",
                spread([percentile(r.latencies, 50) * 1000 for r in rounds], "{:.0f}"),
                f"<= {TARGET_POD_S * 1000:.0f} ms",
            ),
            (
                "create -> pod, max (ms)",
                spread([max(r.latencies) * 1000 for r in rounds], "{:.0f}"),
                f"<= {TARGET_POD_S * 1000:.0f} ms",
            ),
        ]
    rows.append(
        (
            "operator writes in startup",
            spread([float(sum(r.writes.values())) for r in rounds], "{:.0f}"),
            "",
        )
    )
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    print()
    print(
        f"{'figure':<{width}} | {f'median (min-max) of {len(rounds)} round(s)':<{vwidth}} | target"
    )
    for figure, value, target in rows:
        print(f"{figure:<{width}} | {value:<{vwidth}} | {target}")


def header(argv: list[str]) -> None:
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    load1, load5, load15 = os.getloadavg()
    print(
        f"bench_scale {' '.join(argv)}: HEAD {head or '?'}, nproc {os.cpu_count()}, "
        f"load average {load1:.2f} {load5:.2f} {load15:.2f}, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="5,000 jobs, 100 RecurringJobs")
    parser.add_argument("--jobs", type=int, help="finished BackgroundJobs (default 50,000)")
    parser.add_argument("--recurring", type=int, help="RecurringJobs (default 1,000)")
    parser.add_argument("--namespaces", type=int, default=10, help="spread over (default 10)")
    parser.add_argument("--pods", type=int, default=0, help="terminated pods of the first jobs")
    parser.add_argument("--threads", type=int, default=16, help="loading threads (default 16)")
    parser.add_argument("--rounds", type=int, default=1, help="operator starts (default 1)")
    parser.add_argument("--probes", type=int, default=20, help="jobs created after startup")
    parser.add_argument("--settle", type=float, default=20.0, help="quiet seconds before RSS")
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the operator round on the empty cluster"
    )
    parser.add_argument(
        "--stall-after",
        help="operator STOKER_STALL_AFTER (default: the operator's, 60s): it exits when a kind "
        "is not watched this long after it leads, i.e. when its first listing is that slow",
    )
    parser.add_argument(
        "--lease-duration",
        default="15s",
        help="operator STOKER_LEASE_DURATION (default 15s, production's; the tests use 10s): a "
        "leader whose event loop is blocked for 2/3 of it cannot renew the Lease and exits",
    )
    add_client_options(parser)
    args = parser.parse_args()
    n_jobs = args.jobs if args.jobs is not None else (5000 if args.small else 50_000)
    n_recurring = args.recurring if args.recurring is not None else (100 if args.small else 1000)
    env = {**client_env(args.qps, args.burst), "STOKER_LEASE_DURATION": args.lease_duration}
    if args.stall_after:
        env["STOKER_STALL_AFTER"] = args.stall_after

    header(sys.argv[1:])
    with bench_control_plane("scale") as cluster:
        baseline = None
        if not args.no_baseline:
            baseline = operator_round(cluster, "empty cluster", env, 0, args.settle)
        loaded = load(cluster, n_jobs, n_recurring, args.namespaces, args.pods, args.threads)
        rounds, exits = [], []
        for r in range(args.rounds):
            try:
                rounds.append(
                    operator_round(cluster, f"round {r + 1}", env, args.probes, args.settle)
                )
            except OperatorExited as e:
                print(e, flush=True)
                exits.append(str(e))
        report(loaded, rounds, baseline, exits)
    return 0


if __name__ == "__main__":
    sys.exit(main())
