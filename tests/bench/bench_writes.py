"""Benchmark: API writes per BackgroundJob, the budget of ARCHITECTURE.md "Writes are the budget".

    .venv/bin/python tests/bench/bench_writes.py            # 20 jobs of each kind
    .venv/bin/python tests/bench/bench_writes.py --small    # 5 jobs of each kind
    .venv/bin/python tests/bench/bench_writes.py --jobs 50

Starts its own control plane and one operator (deleted at the end, also on Ctrl-C) and runs,
one after the other and each in a fresh namespace:
  (a) jobs that succeed on their first attempt (expected: 3 writes: pod create, status
      Succeeded, Event Completed; 4 when the pod outlives startWriteDelay, 1 s, and its
      Running status is written first);
  (b) jobs that succeed after 2 retries (simulated kubelet fail-attempts "2", retry delays
      [1s]).
Writes are counted twice: from the API server's audit log (entries in the namespace whose
userAgent is the operator's or kopf's, as operator_writes() in tests/cluster/test_foundation.py)
and from the operator's stoker_api_writes_total. Each status write is named by what it wrote,
pairing the audit log's status patches of a job, in order, with the changes a watch saw on it.
Nothing is asserted: the figures are for people.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchkit import (
    Write,
    add_client_options,
    api_writes,
    audit_writes,
    bench_cluster,
    client_env,
    create_all,
    jobs_watch,
    resource,
    wait_quiet,
)

from harness import Cluster, create_namespace, wait_for
from operator_process import GROUP, VERSION, Operator

TERMINAL = frozenset({"Succeeded", "Failed"})
CREATE_THREADS = 4


@dataclass(frozen=True)
class Kind:
    key: str
    title: str
    expected: str
    sim: dict[str, str]
    retry: dict[str, Any] | None


KINDS = (
    Kind(
        "a",
        "succeeds on its first attempt",
        "4 (pod create, status Running, status Succeeded, Event Completed)",
        {},
        None,
    ),
    Kind(
        "b",
        'succeeds after 2 retries (fail-attempts "2", retry delays [1s])',
        "4 + 2 x 4 = 12 at most: each retry adds status Scheduled/Retrying (the failure and "
        "nextAttemptAt), Event Retrying, the next pod's create and its status Running; when "
        "the retry is already due as the failure is seen (a 1 s delay on 1 s timestamps), "
        "the Scheduled write is skipped and the next Running write records the failure: "
        "3 writes for that retry",
        {"fail-attempts": "2"},
        {"attempts": 2, "delays": ["1s"]},
    ),
)


# ---------------------------------------------------------------- what each status write wrote


@dataclass
class History:
    """Every change a watch saw on each job: (phase, reason, attempt), in order."""

    changes: dict[str, list[tuple[str, str, int]]] = field(default_factory=lambda: {})
    final: dict[str, str] = field(default_factory=dict)

    def on_event(self, kind: str, obj: dict[str, Any], at: float) -> None:
        if kind not in ("ADDED", "MODIFIED"):
            return
        name = obj["metadata"]["name"]
        status = obj.get("status") or {}
        self.changes.setdefault(name, [])
        if kind == "MODIFIED":
            self.changes[name].append(
                (str(status.get("phase")), str(status.get("reason")), int(status.get("attempt", 0)))
            )
        if status.get("phase") in TERMINAL:
            self.final[name] = status["phase"]


# ---------------------------------------------------------------- one kind of job


@dataclass
class Result:
    kind: Kind
    n: int
    audit: list[Write]
    metrics: Counter[str]
    history: History
    events: Counter[str]  # reason -> count
    events_of: dict[str, list[str]]  # job -> reasons of its Events, oldest first
    seconds: float


def job_body(name: str, kind: Kind) -> dict[str, Any]:
    annotations = {f"sim.stoker.dev/{k}": v for k, v in kind.sim.items()}
    spec: dict[str, Any] = {
        "template": {
            "metadata": {"annotations": annotations},
            "spec": {"containers": [{"name": "main", "image": "bench:1"}]},
        }
    }
    if kind.retry is not None:
        spec["retry"] = kind.retry
    return resource("BackgroundJob", name, spec)


def measure(cluster: Cluster, operator: Operator, ns: str, kind: Kind, n: int) -> Result:
    core = kubernetes.client.CoreV1Api(cluster.api_client(user_agent="stoker-bench"))
    history = History()
    watch = jobs_watch(cluster, ns, history.on_event)

    def finished() -> int:
        watch.check()
        with watch.lock:
            return len(history.final)

    try:
        # The previous kind's trailing writes must not be counted as this one's.
        wait_quiet(operator, quiet=3, limit=30, interval=0.25)
        before = api_writes(operator.metrics())
        names = [f"{kind.key}-{i:03d}" for i in range(n)]
        print(f"({kind.key}) {n} jobs, each {kind.title}, in {ns} ...", flush=True)
        t0 = time.monotonic()
        create_all(
            cluster,
            names,
            CREATE_THREADS,
            lambda api, name: api.create_namespaced_custom_object(
                GROUP, VERSION, ns, "backgroundjobs", job_body(name, kind)
            ),
        )
        wait_for(lambda: finished() >= n, 120 + n, 0.2, f"{n} jobs finished in {ns}")
        seconds = time.monotonic() - t0
        # Anything the operator still writes after the final status counts too.
        wait_quiet(operator, quiet=3, limit=60, interval=0.25)
        metrics = api_writes(operator.metrics()) - before
    finally:
        watch.stop()
    ours = [
        e
        for e in core.list_namespaced_event(ns).items
        if e.involved_object.kind == "BackgroundJob"
        and (e.source.component if e.source else "") == "stoker-operator"
    ]
    events = Counter(str(e.reason) for e in ours)
    events_of: dict[str, list[str]] = defaultdict(list)
    for e in sorted(ours, key=lambda e: str(e.first_timestamp or e.metadata.creation_timestamp)):
        events_of[str(e.involved_object.name)].append(str(e.reason))
    audit = audit_writes(cluster, ns)
    return Result(kind, n, audit, metrics, history, events, events_of, seconds)


# ---------------------------------------------------------------- the report


def job_of(write: Write, names: set[str]) -> str | None:
    """The job a write belongs to: a pod is named <job>-<attempt>, an Event <job>.<suffix>."""
    if write.resource.startswith("backgroundjobs"):
        stem = write.name
    elif write.resource == "pods":
        stem = write.name.rsplit("-", 1)[0]
    else:
        stem = write.name.split(".")[0]
    return stem if stem in names else None


def stories(result: Result) -> tuple[Counter[tuple[str, ...]], list[Write]]:
    """Each job's writes in order, each named by what it did. Status patches are paired, in
    order, with the changes the watch saw on the job; a job whose patches and changes do not
    match one to one (a patch that changed nothing) keeps its patches unnamed. The audit log
    does not name Events made from generateName, so the job's Events (from the Event list) are
    placed after the status write they rode with: the one of the same reason, or for a retry
    that was already due when the failure was seen, the Running write of the next attempt.
    Returns (story -> number of jobs with it, writes of no job)."""
    names = set(result.history.changes)
    by_job: dict[str, list[Write]] = defaultdict(list)
    unattributed = []
    for w in result.audit:
        if w.resource == "events" and w.verb == "create" and not w.name:
            continue  # told from the Event list below
        job = job_of(w, names)
        if job is None:
            unattributed.append(w)
        else:
            by_job[job].append(w)
    told: Counter[tuple[str, ...]] = Counter()
    for job in sorted(names):
        writes = by_job.get(job, [])
        patches = sum(1 for w in writes if w.resource == "backgroundjobs/status")
        changes = result.history.changes.get(job, [])
        paired = iter(changes if len(changes) == patches else [])
        events = list(result.events_of.get(job, []))
        lines: list[str] = []
        last_reason = ""
        for w in writes:
            if w.resource == "pods" and w.verb == "create":
                lines.append(f"create pod of attempt {w.name.rsplit('-', 1)[1]}")
                continue
            change = next(paired, None) if w.resource == "backgroundjobs/status" else None
            if change is None:
                lines.append(f"{w.verb} {w.resource} {w.name}")
                continue
            phase, reason, attempt = change
            lines.append(f"patch status -> {phase}/{reason}, attempt {attempt}")
            skipped_retry = phase == "Running" and attempt > 1 and last_reason != "Retrying"
            for rode in (reason, "Retrying") if skipped_retry else (reason,):
                if rode in events:
                    events.remove(rode)
                    lines.append(f"create Event {rode}")
            last_reason = reason
        lines.extend(f"create Event {reason} (place unknown)" for reason in events)
        if len(changes) != patches:
            lines.append(f"({patches} status patches, {len(changes)} changes seen)")
        told[tuple(lines)] += 1
    return told, unattributed


def report(result: Result) -> None:
    n, kind = result.n, result.kind
    finals = Counter(result.history.final.values())
    audit_total = len(result.audit)
    metrics_total = sum(result.metrics.values())
    print()
    print(f"({kind.key}) a job that {kind.title}: {n} jobs, {dict(finals)}, {result.seconds:.1f} s")
    print(f"  expected: {kind.expected}")
    print(f"  audit log: {audit_total} writes = {audit_total / n:.2f} per job")
    for what, count in sorted(Counter(f"{w.verb} {w.resource}" for w in result.audit).items()):
        print(f"    {what:32} {count:5} = {count / n:.2f} per job")
    print(f"  stoker_api_writes_total: {metrics_total} = {metrics_total / n:.2f} per job")
    for what, count in sorted(result.metrics.items()):
        if count:
            print(f"    {what:32} {count:5} = {count / n:.2f} per job")
    told, unattributed = stories(result)
    for lines, jobs in told.most_common():
        print(f"  the {len(lines)} writes of {jobs} job(s), in order:")
        for i, line in enumerate(lines, 1):
            print(f"    {i:2}. {line}")
    if unattributed:
        print(f"  writes of no job: {Counter(f'{w.verb} {w.resource}' for w in unattributed)}")
    reasons = ", ".join(f"{r} {c / n:.2f}" for r, c in sorted(result.events.items()))
    posted = sum(1 for w in result.audit if w.resource == "events" and w.verb == "create")
    print(
        f"  Events on the jobs, by reason (per job): {reasons}; "
        f"{sum(result.events.values())} listed, {posted} created in the audit log"
    )


def run(n: int, qps: int, burst: int) -> None:
    with bench_cluster("writes", client_env(qps, burst)) as (cluster, operator, first_ns):
        print(f"operator log: {operator.log_path}", flush=True)
        results = []
        for i, kind in enumerate(KINDS):
            # Each kind in a fresh namespace; the first is the one bench_cluster made.
            ns = first_ns if i == 0 else create_namespace(cluster, "bench-")
            results.append(measure(cluster, operator, ns, kind, n))
        for result in results:
            report(result)
        a, b = (len(r.audit) / r.n for r in results)
        print()
        print(
            f"summary (audit log): (a) {a:.2f} writes per job, (b) {b:.2f} writes per job; "
            f"each retry costs {(b - a) / 2:.2f} writes"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="5 jobs of each kind")
    parser.add_argument("--jobs", type=int, help="jobs of each kind (default 20)")
    add_client_options(parser)
    args = parser.parse_args()
    n = args.jobs or (5 if args.small else 20)

    run(n, args.qps, args.burst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
