"""Benchmark: API writes per BackgroundJob, the budget of ARCHITECTURE.md "Writes are the budget".

    uv run python tests/bench/bench_writes.py            # 20 jobs of each kind
    uv run python tests/bench/bench_writes.py --small    # 5 jobs of each kind
    uv run python tests/bench/bench_writes.py --jobs 50

Starts its own control plane and one operator (deleted at the end, also on Ctrl-C) and runs,
one after the other and each in a fresh namespace:
  (a) jobs that succeed on their first attempt (expected: 4 writes: pod create, status
      Running, status Succeeded, Event Completed);
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
import json
import os
import re
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.watch.watch import iter_resp_lines

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import REPO, Cluster, KubectlError, start_cluster, stop_cluster, wait_for
from operator_process import GROUP, VERSION, Operator

OPERATOR_AGENTS = ("stoker-operator", "kopf")
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


# ---------------------------------------------------------------- counting


def api_writes(operator: Operator) -> Counter[str]:
    """stoker_api_writes_total by "verb resource"."""
    writes: Counter[str] = Counter()
    for line in operator.metrics().splitlines():
        found = re.match(r"stoker_api_writes_total\{(.*)\} ([0-9.e+]+)$", line)
        if found:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', found.group(1)))
            writes[f"{labels.get('verb')} {labels.get('resource')}"] += round(float(found.group(2)))
    return writes


@dataclass(frozen=True)
class Write:
    verb: str
    resource: str  # with "/subresource"
    name: str
    at: str  # stageTimestamp, microseconds


def operator_writes(cluster: Cluster, namespace: str) -> list[Write]:
    """The operator's writes in `namespace`, in the order the API server completed them."""
    assert cluster.audit_log is not None, "this benchmark starts its own cluster"
    writes = []
    with cluster.audit_log.open("rb") as f:
        for raw in f:
            entry = json.loads(raw)
            ref = entry.get("objectRef") or {}
            if ref.get("namespace") != namespace:
                continue
            if not entry.get("userAgent", "").startswith(OPERATOR_AGENTS):
                continue
            resource = ref.get("resource", "") + (
                f"/{ref['subresource']}" if ref.get("subresource") else ""
            )
            writes.append(
                Write(entry["verb"], resource, ref.get("name", ""), entry.get("stageTimestamp", ""))
            )
    return writes


def wait_quiet(operator: Operator, quiet: float, limit: float) -> None:
    """Wait until the operator's write counter has not moved for `quiet` seconds."""
    start = time.monotonic()
    last, since = api_writes(operator), time.monotonic()
    while time.monotonic() - since < quiet and time.monotonic() - start < limit:
        time.sleep(0.25)
        now = api_writes(operator)
        if now != last:
            last, since = now, time.monotonic()


# ---------------------------------------------------------------- what each status write wrote


@dataclass
class History:
    """Every change a watch saw on each job: (phase, reason, attempt), in order."""

    changes: dict[str, list[tuple[str, str, int]]] = field(default_factory=lambda: {})
    final: dict[str, str] = field(default_factory=dict)

    def on_event(self, kind: str, obj: dict[str, Any]) -> None:
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


class Watch:
    """One watch on a namespace's BackgroundJobs, resumed until stopped."""

    def __init__(self, lister: Callable[..., Any], history: History) -> None:
        self.lister, self.history = lister, history
        self.lock = threading.Lock()
        first = json.loads(lister(_preload_content=False).data)
        self.rv: str = first["metadata"]["resourceVersion"]
        self.error: BaseException | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while not self.stopping.is_set():
                resp = self.lister(
                    watch=True,
                    resource_version=self.rv,
                    timeout_seconds=2,
                    allow_watch_bookmarks=True,
                    _preload_content=False,
                )
                try:
                    for line in iter_resp_lines(resp):  # type: ignore[no-untyped-call]
                        event = json.loads(line)
                        obj = event["object"]
                        if event["type"] == "ERROR":
                            raise RuntimeError(f"watch failed: {obj}")
                        self.rv = obj["metadata"]["resourceVersion"]
                        with self.lock:
                            self.history.on_event(event["type"], obj)
                finally:
                    resp.release_conn()
        except BaseException as e:
            self.error = e

    def finished(self) -> int:
        if self.error is not None:
            raise RuntimeError("the BackgroundJob watch broke") from self.error
        with self.lock:
            return len(self.history.final)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(10)


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
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "BackgroundJob",
        "metadata": {"name": name},
        "spec": spec,
    }


def fresh_namespace(cluster: Cluster) -> str:
    ns = f"bench-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", ns)

    def service_account() -> bool:
        try:
            cluster.kubectl("get", "serviceaccount", "default", "-n", ns)
        except KubectlError:
            return False
        return True

    wait_for(service_account, 30, description="the default ServiceAccount")
    return ns


def measure(cluster: Cluster, operator: Operator, kind: Kind, n: int) -> Result:
    ns = fresh_namespace(cluster)
    custom = kubernetes.client.CustomObjectsApi(cluster.api_client(user_agent="stoker-bench"))
    core = kubernetes.client.CoreV1Api(cluster.api_client(user_agent="stoker-bench"))
    history = History()
    watch = Watch(
        lambda **kw: custom.list_namespaced_custom_object(
            GROUP, VERSION, ns, "backgroundjobs", **kw
        ),
        history,
    )
    try:
        # The previous kind's trailing writes must not be counted as this one's.
        wait_quiet(operator, quiet=3, limit=30)
        before = api_writes(operator)
        names = [f"{kind.key}-{i:03d}" for i in range(n)]
        print(f"({kind.key}) {n} jobs, each {kind.title}, in {ns} ...", flush=True)
        t0 = time.monotonic()

        def create(name: str) -> None:
            custom.create_namespaced_custom_object(
                GROUP, VERSION, ns, "backgroundjobs", job_body(name, kind)
            )

        with ThreadPoolExecutor(CREATE_THREADS) as pool:
            for _ in pool.map(create, names):
                pass
        wait_for(lambda: watch.finished() >= n, 120 + n, 0.2, f"{n} jobs finished in {ns}")
        seconds = time.monotonic() - t0
        # Anything the operator still writes after the final status counts too.
        wait_quiet(operator, quiet=3, limit=60)
        metrics = api_writes(operator) - before
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
    audit = operator_writes(cluster, ns)
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


@dataclass
class Started:
    """What this run started, for the cleanup."""

    cluster: Cluster | None = None
    operator: Operator | None = None


def run(started: Started, n: int, qps: int, burst: int) -> None:
    cluster = started.cluster = start_cluster(f"stoker-bench-writes-{os.getpid()}")
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    for plural in ("backgroundjobs", "recurringjobs", "jobqueues"):
        cluster.kubectl(
            "wait", "--for=condition=Established", f"crd/{plural}.{GROUP}", "--timeout=60s"
        )
    log = Path(tempfile.mkdtemp(prefix="stoker-bench-writes-")) / "operator.log"
    operator = started.operator = Operator(
        cluster,
        log,
        env={
            "STOKER_API_QPS": str(qps),
            "STOKER_API_BURST": str(burst),
            "STOKER_IDENTITY": "stoker-bench",
        },
    )
    operator.start()
    print(f"operator log: {log}", flush=True)
    results = [measure(cluster, operator, kind, n) for kind in KINDS]
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
    parser.add_argument("--qps", type=int, default=500, help="operator STOKER_API_QPS")
    parser.add_argument("--burst", type=int, default=1000, help="operator STOKER_API_BURST")
    args = parser.parse_args()
    n = args.jobs or (5 if args.small else 20)

    started = Started()
    try:
        run(started, n, args.qps, args.burst)
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        if started.operator is not None:
            started.operator.stop()
        if started.cluster is not None:
            stop_cluster(started.cluster)
    return 0


if __name__ == "__main__":
    sys.exit(main())
