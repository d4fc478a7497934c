"""Benchmark: throughput of batch/v1 Jobs (kube-controller-manager's Job controller) next to
Stoker BackgroundJobs (the operator), created the same way on one local control plane.

    .venv/bin/python tests/bench/bench_throughput.py                 # all modes, 3 rounds each
    .venv/bin/python tests/bench/bench_throughput.py --small         # N 100, 1 round
    .venv/bin/python tests/bench/bench_throughput.py --mode equal --rounds 1 --jobs 200

Starts its own control plane (kwok's simulated node only) and one operator process, deleted at
the end (also on Ctrl-C). A mode sets the operator's API client budget (the operator is
restarted with it); the Job controller keeps kube-controller-manager's defaults in every mode:
  equal        operator QPS 20, burst 30 = kube-controller-manager's default; N 400
  unthrottled  operator QPS 2000, burst 4000; N 500 (1000 was asked for, but the Job
               controller's ~3.5 jobs/s would make a full run last ~45 minutes)
  default      the chart's apiQps/apiBurst (charts/stoker/values.yaml); N 500

One round of a mode measures each kind once. A kind ("phase") gets a fresh namespace; its N
one-attempt jobs are created from T threads through one client call,
CustomObjectsApi.create_namespaced_custom_object, with the same pod template (image bench:1,
nodeSelector type=kwok, restartPolicy Never, no sim annotations: the pod succeeds as soon as it
runs); the Job has backoffLimit 0, the BackgroundJob retry.attempts 0.

The kinds run one after the other, never at once: on 2 cores, two controllers at work at the
same time would each measure the other's load. Round 1 runs Jobs first, round 2 Stoker first,
and so on, so that a slow drift (the machine is shared, etcd grows) does not favour one kind.
After a phase is measured its namespace is deleted and waited for, and the next phase starts
once the operator has written nothing for 3 s: every phase starts on an equally empty cluster.

Figures per phase, every time taken here on time.monotonic:
  - jobs/s = N / (first create request sent -> arrival of the last job's terminal state on a
    watch: a Job's Complete or Failed condition, a BackgroundJob's phase Succeeded or Failed);
  - create -> pod: the job's create request sent -> its pod's ADDED on a pod watch; create ->
    done: -> its terminal state on the job watch (p50, p99);
  - CPU ms per job of every process of the control plane and of the operator
    (/proc/<pid>/stat utime + stime), over the phase: from just before the first create until
    no pod, job or Event of the namespace has changed for 2 s after the last terminal state;
  - API writes per job in the namespace by client (the API server's audit log), and the
    operator's own stoker_api_writes_total over the same window.
The operator runs with the production Lease (15 s). Should it exit during a phase (it does
when it misses its Lease's renew deadline), it is started again at once, as its Deployment
would, and the table counts the restarts; its CPU keeps counting, its write counter does not.
The table gives, per figure, the median over rounds and the spread (min-max); the ratio is
the Stoker median over the Job median. Nothing is asserted: the figures are for people.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
import yaml

from stoker.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchkit import (
    Bench,
    Watch,
    api_writes,
    audit_writes_by_agent,
    bench_cluster,
    client_env,
    component_pids,
    cpu_seconds,
    create_all,
    percentile,
    process_args,
    wait_quiet,
)

from harness import REPO, Cluster, create_namespace, wait_for
from operator_process import GROUP, VERSION

OPERATOR = "stoker-operator"
KCM = "kube-controller-manager"
# kube-controller-manager's defaults (its --kube-api-qps, --kube-api-burst,
# --concurrent-job-syncs): each controller has its own client, so the Job controller alone
# has this budget.
KCM_QPS, KCM_BURST, KCM_JOB_SYNCS = 20, 30, 5
QUIET_SECONDS = 2.0


# ---------------------------------------------------------------- the two kinds


def pod_template() -> dict[str, Any]:
    """The pod of both kinds: lands on kwok's node, succeeds at once."""
    return {
        "metadata": {"labels": {"bench": "throughput"}},
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": {"type": "kwok"},
            "containers": [{"name": "main", "image": "bench:1"}],
        },
    }


@dataclass(frozen=True)
class Kind:
    key: str
    title: str
    group: str
    version: str
    plural: str
    body: Callable[[str], dict[str, Any]]
    terminal: Callable[[dict[str, Any]], str | None]  # Succeeded / Failed / None
    controllers: tuple[str, ...]  # its controller's agents in the audit log


def job_body(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": pod_template()},
    }


def job_terminal(obj: dict[str, Any]) -> str | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("status") == "True" and c.get("type") in ("Complete", "Failed"):
            return "Succeeded" if c["type"] == "Complete" else "Failed"
    return None


def background_job_body(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "BackgroundJob",
        "metadata": {"name": name},
        "spec": {"retry": {"attempts": 0}, "template": pod_template()},
    }


def background_job_terminal(obj: dict[str, Any]) -> str | None:
    phase = (obj.get("status") or {}).get("phase")
    return phase if phase in ("Succeeded", "Failed") else None


JOB = Kind(
    "job",
    "batch/v1 Job",
    "batch",
    "v1",
    "jobs",
    job_body,
    job_terminal,
    (f"{KCM}/job-controller",),
)
STOKER = Kind(
    "stoker",
    "BackgroundJob",
    GROUP,
    VERSION,
    "backgroundjobs",
    background_job_body,
    background_job_terminal,
    (OPERATOR, "kopf"),
)


# ---------------------------------------------------------------- modes


@dataclass(frozen=True)
class Mode:
    name: str
    qps: int
    burst: int
    n: int
    what: str


def chart_budget() -> tuple[int, int]:
    """The operator's apiQps and apiBurst in the chart's values.yaml."""
    values = yaml.safe_load((REPO / "charts" / "stoker" / "values.yaml").read_text())
    return int(values["apiQps"]), int(values["apiBurst"])


def modes(small: bool, jobs: int | None) -> dict[str, Mode]:
    qps, burst = chart_budget()

    def n(default: int) -> int:
        return jobs or (100 if small else default)

    return {
        "equal": Mode("equal", KCM_QPS, KCM_BURST, n(400), "kube-controller-manager's default"),
        "unthrottled": Mode("unthrottled", 2000, 4000, n(500), "far above what is used"),
        "default": Mode("default", qps, burst, n(500), "the chart's apiQps/apiBurst"),
    }


# ---------------------------------------------------------------- one phase


@dataclass
class Tracker:
    """What the namespace's watches saw, by job name, as arrival times."""

    kind: Kind
    pod_added: dict[str, float] = field(default_factory=dict)
    done: dict[str, float] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)
    last_event: float = 0.0

    def on_pod(self, event: str, obj: dict[str, Any], at: float) -> None:
        self.last_event = at
        if event != "ADDED":
            return
        for ref in obj["metadata"].get("ownerReferences") or []:
            if ref.get("controller"):
                self.pod_added.setdefault(ref["name"], at)

    def on_job(self, event: str, obj: dict[str, Any], at: float) -> None:
        self.last_event = at
        name = obj["metadata"]["name"]
        result = self.kind.terminal(obj)
        if result is not None and name not in self.done:
            self.done[name] = at
            if result == "Failed":
                self.failed.add(name)

    def on_other(self, event: str, obj: dict[str, Any], at: float) -> None:
        self.last_event = at


@dataclass
class Phase:
    kind: Kind
    n: int
    seconds: float
    create_pod_ms: list[float]
    create_done_ms: list[float]
    failed: int
    cpu: dict[str, float]  # process -> CPU seconds over the phase
    metrics: Counter[str] | None  # the operator's stoker_api_writes_total over the phase
    restarts: int  # times the operator exited (and was started again) during the phase
    audit: Counter[str]  # "agent verb resource" -> writes in the namespace


def processes(bench: Bench) -> dict[str, int]:
    assert bench.operator.proc is not None
    return {**component_pids(bench.cluster), OPERATOR: bench.operator.proc.pid}


def operator_exited(bench: Bench) -> bool:
    """The operator process has ended (a zombie still shows its CPU time in /proc)."""
    assert bench.operator.proc is not None
    try:
        stat = Path(f"/proc/{bench.operator.proc.pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rindex(")") + 2 :].split()[0] in ("Z", "X")


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


def run_phase(bench: Bench, kind: Kind, n: int, threads: int) -> Phase:
    cluster, operator = bench.cluster, bench.operator
    ns = create_namespace(cluster, f"bench-{kind.key}-")
    lock = threading.Lock()
    seen = Tracker(kind)
    core = kubernetes.client.CoreV1Api(cluster.api_client(user_agent="stoker-bench-watch"))
    custom = kubernetes.client.CustomObjectsApi(cluster.api_client(user_agent="stoker-bench-watch"))
    watches = [
        Watch(lambda **kw: core.list_namespaced_pod(ns, **kw), seen.on_pod, lock),
        Watch(
            lambda **kw: custom.list_namespaced_custom_object(
                kind.group, kind.version, ns, kind.plural, **kw
            ),
            seen.on_job,
            lock,
        ),
        Watch(lambda **kw: core.list_namespaced_event(ns, **kw), seen.on_other, lock),
    ]
    sent: dict[str, float] = {}

    def create(api: kubernetes.client.CustomObjectsApi, name: str) -> None:
        sent[name] = time.monotonic()
        api.create_namespaced_custom_object(
            kind.group, kind.version, ns, kind.plural, kind.body(name)
        )

    restarts = 0

    def finished() -> bool:
        nonlocal restarts
        for w in watches:
            w.check()
        if operator_exited(bench):
            # As its Deployment would, start it again; its CPU so far still counts.
            assert operator.proc is not None
            spent = cpu_seconds(operator.proc.pid) - cpu_before[OPERATOR]
            operator.proc.wait()
            restarts += 1
            print(f"  the operator exited (see its log); restart {restarts}", flush=True)
            operator.start()
            pids[OPERATOR] = operator.proc.pid
            cpu_before[OPERATOR] = cpu_seconds(operator.proc.pid) - spent
        with lock:
            return len(seen.done) >= n

    def quiet() -> bool:
        with lock:
            return time.monotonic() - seen.last_event >= QUIET_SECONDS

    try:
        pids = processes(bench)
        cpu_before = cpu_snapshot(pids)
        writes_before = api_writes(operator.metrics())
        names = [f"{kind.key}-{i:05d}" for i in range(n)]
        first = time.monotonic()
        create_all(cluster, names, threads, create)
        wait_for(finished, 120 + 3 * n, 0.1, f"{n} {kind.title}s finished in {ns}")
        wait_for(quiet, 120, 0.2, f"no change in {ns} for {QUIET_SECONDS:g} s")
        cpu_after = cpu_snapshot(pids)
        # A restarted operator counts from zero: its writes are in the audit log only.
        metrics = api_writes(operator.metrics()) - writes_before if not restarts else None
    finally:
        for w in watches:
            w.stop()
    with lock:
        seconds = max(seen.done.values()) - first
        create_pod = [(seen.pod_added[j] - sent[j]) * 1000 for j in names if j in seen.pod_added]
        create_done = [(seen.done[j] - sent[j]) * 1000 for j in names if j in seen.done]
        failed = len(seen.failed)
    audit = audit_writes_by_agent(cluster, ns)
    # The next phase starts on a cluster without this one's objects.
    cluster.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=600s", timeout=660)
    return Phase(
        kind,
        n,
        seconds,
        create_pod,
        create_done,
        failed,
        {k: cpu_after[k] - cpu_before[k] for k in pids},
        metrics,
        restarts,
        audit,
    )


# ---------------------------------------------------------------- figures


def controller_writes(phase: Phase) -> int:
    return sum(c for k, c in phase.audit.items() if k.split(" ")[0] in phase.kind.controllers)


# (row title, figure of a phase or None where it does not apply, format)
Figure = tuple[str, Callable[[Phase], float | None], str]


def figures(pids: dict[str, int]) -> list[Figure]:
    def cpu(name: str) -> Callable[[Phase], float | None]:
        return lambda p: p.cpu[name] * 1000 / p.n

    rows: list[Figure] = [
        ("throughput, jobs/s", lambda p: p.n / p.seconds, ".1f"),
        ("create -> pod p50, ms", lambda p: percentile(p.create_pod_ms, 50), ".0f"),
        ("create -> pod p99, ms", lambda p: percentile(p.create_pod_ms, 99), ".0f"),
        ("create -> done p50, ms", lambda p: percentile(p.create_done_ms, 50), ".0f"),
        ("create -> done p99, ms", lambda p: percentile(p.create_done_ms, 99), ".0f"),
        (
            "controller CPU ms/job (kcm | operator)",
            lambda p: p.cpu[KCM if p.kind is JOB else OPERATOR] * 1000 / p.n,
            ".2f",
        ),
    ]
    rows += [(f"  {name} CPU ms/job", cpu(name), ".2f") for name in [OPERATOR, *pids]]
    rows += [
        ("  all of them, CPU ms/job", lambda p: sum(p.cpu.values()) * 1000 / p.n, ".2f"),
        (
            "controller API writes/job (audit)",
            lambda p: controller_writes(p) / p.n,
            ".2f",
        ),
        (
            "all API writes/job in the namespace (audit)",
            lambda p: sum(p.audit.values()) / p.n,
            ".2f",
        ),
        (
            "stoker_api_writes_total/job",
            lambda p: (
                sum(p.metrics.values()) / p.n
                if p.kind is STOKER and p.metrics is not None
                else None
            ),
            ".2f",
        ),
        ("failed jobs", lambda p: float(p.failed), ".0f"),
        ("operator restarts (it exited)", lambda p: float(p.restarts), ".0f"),
    ]
    return rows


def cell(values: list[float], fmt: str) -> str:
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return format(med, fmt)
    return f"{med:{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def table(rounds: list[dict[str, Phase]], rows: list[Figure]) -> None:
    lines = [("figure", "Job controller", "Stoker", "ratio")]
    for title, of, fmt in rows:
        jobs = [v for r in rounds if (v := of(r[JOB.key])) is not None]
        ours = [v for r in rounds if (v := of(r[STOKER.key])) is not None]
        ratio = "-"
        if jobs and ours and statistics.median(jobs) > 0:
            ratio = f"{statistics.median(ours) / statistics.median(jobs):.2f}"
        lines.append((title, cell(jobs, fmt), cell(ours, fmt), ratio))
    widths = [max(len(line[i]) for line in lines) for i in range(4)]
    for i, line in enumerate(lines):
        print("| " + " | ".join(f"{c:{w}}" for c, w in zip(line, widths, strict=True)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


def writes_breakdown(phase: Phase) -> None:
    print(f"  {phase.kind.title}: {sum(phase.audit.values()) / phase.n:.2f} writes/job")
    for what, count in sorted(phase.audit.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"    {what:64} {count / phase.n:6.2f}")
    if phase.kind is STOKER and phase.metrics is not None:
        print("    stoker_api_writes_total:")
        for what, count in sorted(phase.metrics.items()):
            if count:
                print(f"      {what:62} {count / phase.n:6.2f}")


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


# ---------------------------------------------------------------- the run


def describe_control_plane(cluster: Cluster) -> dict[str, int]:
    pids = component_pids(cluster)
    args = process_args(pids[KCM])
    given = [a for a in args if a.startswith(("--kube-api-", "--concurrent-job-syncs"))]
    print(
        f"Job controller: kube-controller-manager's defaults in every mode: QPS {KCM_QPS}, burst "
        f"{KCM_BURST} (its own client), --concurrent-job-syncs {KCM_JOB_SYNCS}; flags given "
        f"to it that change these: {given or 'none'}"
    )
    return pids


def run_mode(bench: Bench, mode: Mode, rounds: int, threads: int, rows: list[Figure]) -> None:
    operator = bench.operator
    if operator.env.get("STOKER_API_QPS") != str(mode.qps) or operator.env.get(
        "STOKER_API_BURST"
    ) != str(mode.burst):
        operator.stop()
        operator.env.update(client_env(mode.qps, mode.burst))
        operator.start()
    print()
    print(
        f"## mode {mode.name}: operator QPS {mode.qps}, burst {mode.burst} ({mode.what}); "
        f"N {mode.n}, {threads} threads, {rounds} round(s)",
        flush=True,
    )
    results: list[dict[str, Phase]] = []
    for r in range(rounds):
        order = (JOB, STOKER) if r % 2 == 0 else (STOKER, JOB)
        phases: dict[str, Phase] = {}
        for kind in order:
            wait_quiet(operator, quiet=3, limit=120)
            phase = run_phase(bench, kind, mode.n, threads)
            phases[kind.key] = phase
            print(
                f"  round {r + 1}, {kind.title}: {mode.n / phase.seconds:.1f} jobs/s "
                f"({phase.seconds:.1f} s), create->done p50 "
                f"{percentile(phase.create_done_ms, 50):.0f} ms, failed {phase.failed}; "
                f"load {load()}",
                flush=True,
            )
        results.append(phases)
    print()
    print(f"### mode {mode.name}: median (min-max) over {rounds} round(s), N {mode.n}")
    table(results, rows)
    print()
    print(f"API writes per job in the namespace (audit log, by client), round {rounds}:")
    for kind in (JOB, STOKER):
        writes_breakdown(results[-1][kind.key])


def git_commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO
    )
    return done.stdout.strip() or "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("equal", "unthrottled", "default", "all"), default="all")
    parser.add_argument("--rounds", type=int, help="rounds per mode (default 3)")
    parser.add_argument("--small", action="store_true", help="N 100, 1 round")
    parser.add_argument("--jobs", type=int, help="N for every mode")
    parser.add_argument("--threads", type=int, default=8, help="client threads (default 8)")
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.small else 3)
    chosen = modes(args.small, args.jobs)
    run = list(chosen.values()) if args.mode == "all" else [chosen[args.mode]]

    started = time.monotonic()
    qps, burst = chart_budget()
    print(f"# bench_throughput: commit {git_commit()}, nproc {os.cpu_count()}, load {load()}")
    print(
        f"operator defaults: chart values.yaml apiQps {qps}, apiBurst {burst}; "
        f"settings.py when unset: STOKER_API_QPS {Settings.api_qps:g}, "
        f"STOKER_API_BURST {Settings.api_burst}"
    )
    # The production Lease (15 s), not the tests' short one.
    env = {**client_env(run[0].qps, run[0].burst), "STOKER_LEASE_DURATION": "15s"}
    with bench_cluster("throughput", env) as bench:
        print(f"cluster {bench.cluster.name}; operator log {bench.operator.log_path}")
        pids = describe_control_plane(bench.cluster)
        rows = figures(pids)
        for mode in run:
            run_mode(bench, mode, rounds, args.threads, rows)
    print()
    print(f"# done in {(time.monotonic() - started) / 60:.1f} min; load {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
