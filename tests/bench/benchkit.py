"""What the benchmarks share: their own cluster and operator, a resumable watch, the operator's
write counts (from its metrics and from the audit log), and percentiles.

The benchmarks run as scripts from tests/bench, so this module is importable by its bare name;
it puts tests/ on sys.path for harness and operator_process.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import kubernetes
from kubernetes.watch.watch import iter_resp_lines

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import Cluster, apply_crds, create_namespace, start_cluster, stop_cluster
from operator_process import GROUP, VERSION, Operator

# The operator's own client, and kopf's (which writes its finalizers and events).
OPERATOR_AGENTS = ("stoker-operator", "kopf")


# ---------------------------------------------------------------- cluster and operator


class Bench(NamedTuple):
    cluster: Cluster
    operator: Operator
    namespace: str


def _terminated(signum: int, frame: object) -> None:
    # SIGTERM unwinds like Ctrl-C, so that the finally blocks stop what was started.
    raise SystemExit(143)


@contextmanager
def bench_cluster(name: str, operator_env: dict[str, str]) -> Iterator[Bench]:
    """A fresh cluster stoker-bench-NAME-PID with the CRDs, a namespace bench-*, and a serving
    operator (log in a fresh temp dir) with `operator_env`; all stopped on the way out, also on
    an exception, Ctrl-C (then exits 130) or SIGTERM (exits 143)."""
    previous = signal.signal(signal.SIGTERM, _terminated)
    cluster: Cluster | None = None
    operator: Operator | None = None
    try:
        cluster = start_cluster(f"stoker-bench-{name}-{os.getpid()}")
        apply_crds(cluster)
        namespace = create_namespace(cluster, "bench-")
        log = Path(tempfile.mkdtemp(prefix=f"stoker-bench-{name}-")) / "operator.log"
        operator = Operator(cluster, log, env={"STOKER_IDENTITY": "stoker-bench", **operator_env})
        operator.start()
        yield Bench(cluster, operator, namespace)
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        if operator is not None:
            operator.stop()
        if cluster is not None:
            stop_cluster(cluster)
        signal.signal(signal.SIGTERM, previous)


def add_client_options(parser: argparse.ArgumentParser) -> None:
    """--qps and --burst, the operator's API client rate limit (client_env)."""
    parser.add_argument("--qps", type=int, default=500, help="operator STOKER_API_QPS")
    parser.add_argument("--burst", type=int, default=1000, help="operator STOKER_API_BURST")


def client_env(qps: int, burst: int) -> dict[str, str]:
    """The operator's API client rate limit."""
    return {"STOKER_API_QPS": str(qps), "STOKER_API_BURST": str(burst)}


def resource(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """A stoker custom resource."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }


def create_all(
    cluster: Cluster,
    names: list[str],
    threads: int,
    create: Callable[[kubernetes.client.CustomObjectsApi, str], None],
) -> None:
    """create(api, name) for every name from a pool of `threads`, one API client per thread."""
    local = threading.local()

    def one(name: str) -> None:
        if not hasattr(local, "api"):
            local.api = kubernetes.client.CustomObjectsApi(
                cluster.api_client(user_agent="stoker-bench")
            )
        create(local.api, name)

    pool = ThreadPoolExecutor(threads)
    try:
        for _ in pool.map(one, names):
            pass
    finally:
        pool.shutdown(cancel_futures=True)  # on Ctrl-C, do not send the rest first


# ---------------------------------------------------------------- watches


class Watch:
    """One raw watch, resumed from the last resourceVersion until stopped. Every event but
    BOOKMARK goes to sink(type, object, arrival on time.monotonic) under `lock`; with
    `include_listed`, so do the objects of the initial list (as ADDED)."""

    def __init__(
        self,
        lister: Callable[..., Any],
        sink: Callable[[str, dict[str, Any], float], None],
        lock: threading.Lock | None = None,
        include_listed: bool = False,
    ) -> None:
        self.lister, self.sink = lister, sink
        self.lock = lock or threading.Lock()
        first = json.loads(lister(_preload_content=False).data)
        self.rv: str = first["metadata"]["resourceVersion"]
        if include_listed:
            at = time.monotonic()
            with self.lock:
                for obj in first["items"]:
                    self.sink("ADDED", obj, at)
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
                    for line in iter_resp_lines(resp):
                        at = time.monotonic()
                        event = json.loads(line)
                        obj = event["object"]
                        if event["type"] == "ERROR":
                            raise RuntimeError(f"watch failed: {obj}")
                        self.rv = obj["metadata"]["resourceVersion"]
                        if event["type"] != "BOOKMARK":
                            with self.lock:
                                self.sink(event["type"], obj, at)
                finally:
                    resp.release_conn()
        except BaseException as e:
            self.error = e

    def check(self) -> None:
        if self.error is not None:
            raise RuntimeError("a watch broke") from self.error

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(10)


def jobs_watch(
    cluster: Cluster,
    namespace: str,
    sink: Callable[[str, dict[str, Any], float], None],
    user_agent: str = "stoker-bench",
    lock: threading.Lock | None = None,
    include_listed: bool = False,
) -> Watch:
    """A Watch on the BackgroundJobs of `namespace`, on its own API client."""
    api = kubernetes.client.CustomObjectsApi(cluster.api_client(user_agent=user_agent))
    return Watch(
        lambda **kw: api.list_namespaced_custom_object(
            GROUP, VERSION, namespace, "backgroundjobs", **kw
        ),
        sink,
        lock,
        include_listed,
    )


# ---------------------------------------------------------------- the operator's writes


def api_writes(metrics_text: str) -> Counter[str]:
    """stoker_api_writes_total by "verb resource", from the operator's /metrics."""
    writes: Counter[str] = Counter()
    for line in metrics_text.splitlines():
        found = re.match(r"stoker_api_writes_total\{(.*)\} ([0-9.e+]+)$", line)
        if found:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', found.group(1)))
            writes[f"{labels.get('verb')} {labels.get('resource')}"] += round(float(found.group(2)))
    return writes


def wait_quiet(operator: Operator, quiet: float, limit: float, interval: float = 0.5) -> float:
    """Wait until the operator's write counter has not moved for `quiet` seconds (at most
    `limit` seconds); return how long that took."""
    start = time.monotonic()
    last, since = api_writes(operator.metrics()), time.monotonic()
    while time.monotonic() - since < quiet and time.monotonic() - start < limit:
        time.sleep(interval)
        now = api_writes(operator.metrics())
        if now != last:
            last, since = now, time.monotonic()
    return time.monotonic() - start


@dataclass(frozen=True)
class Write:
    verb: str
    resource: str  # with "/subresource"
    namespace: str  # "" for a cluster-scoped object
    name: str
    at: str  # stageTimestamp, microseconds


def operator_writes(entries: Iterable[bytes]) -> Iterator[Write]:
    """The operator's writes among audit log lines, in the order the API server completed them."""
    for raw in entries:
        entry = json.loads(raw)
        if not entry.get("userAgent", "").startswith(OPERATOR_AGENTS):
            continue
        ref = entry.get("objectRef") or {}
        resource = ref.get("resource", "") + (
            f"/{ref['subresource']}" if ref.get("subresource") else ""
        )
        yield Write(
            entry["verb"],
            resource,
            ref.get("namespace", ""),
            ref.get("name", ""),
            entry.get("stageTimestamp", ""),
        )


def audit_writes(cluster: Cluster, namespace: str) -> list[Write]:
    """The operator's writes in `namespace`, from the API server's audit log."""
    assert cluster.audit_log is not None, "the benchmarks start their own cluster"
    with cluster.audit_log.open("rb") as f:
        return [w for w in operator_writes(f) if w.namespace == namespace]


# ---------------------------------------------------------------- figures


def percentile(values: Iterable[float], p: float) -> float:
    """Nearest-rank percentile (of at least one value)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


# ---------------------------------------------------------------- processes and all writes


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process so far (/proc/<pid>/stat utime + stime)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Fields after the command name (which may hold spaces) start at field 3, the state.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def component_pids(cluster: Cluster) -> dict[str, int]:
    """The control plane's processes (etcd, kube-apiserver, kube-controller-manager,
    kube-scheduler, kwok-controller) by name, from kwokctl's pid files."""
    pids = cluster.kubeconfig.parent / "pids"
    return {f.stem: int(f.read_text().strip()) for f in sorted(pids.glob("*.pid"))}


def process_args(pid: int) -> list[str]:
    """A process's command line."""
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def agent_of(user_agent: str) -> str:
    """A short name for a client: "kube-controller-manager/v1.34.4 (linux/amd64)
    kubernetes/abc/job-controller" -> "kube-controller-manager/job-controller", "kopf/1.x" ->
    "kopf"."""
    words = user_agent.split(" ")
    name = words[0].split("/")[0]
    tail = words[-1].split("/") if len(words) > 1 else []
    return f"{name}/{tail[-1]}" if len(tail) >= 3 else name


def audit_writes_by_agent(cluster: Cluster, namespace: str) -> Counter[str]:
    """Every client's writes in `namespace` from the audit log, by "agent verb resource"."""
    assert cluster.audit_log is not None, "the benchmarks start their own cluster"
    writes: Counter[str] = Counter()
    with cluster.audit_log.open("rb") as f:
        for raw in f:
            entry = json.loads(raw)
            ref = entry.get("objectRef") or {}
            if ref.get("namespace") != namespace:
                continue
            resource = ref.get("resource", "") + (
                f"/{ref['subresource']}" if ref.get("subresource") else ""
            )
            writes[f"{agent_of(entry.get('userAgent', ''))} {entry['verb']} {resource}"] += 1
    return writes


# ---------------------------------------------------------------- a cluster without an operator


@contextmanager
def bench_control_plane(name: str) -> Iterator[Cluster]:
    """A fresh cluster stoker-bench-NAME-PID with the CRDs and no operator (the benchmark
    starts its own, when it wants); stopped on the way out like bench_cluster's."""
    previous = signal.signal(signal.SIGTERM, _terminated)
    cluster: Cluster | None = None
    try:
        cluster = start_cluster(f"stoker-bench-{name}-{os.getpid()}")
        apply_crds(cluster)
        yield cluster
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        if cluster is not None:
            stop_cluster(cluster)
        signal.signal(signal.SIGTERM, previous)
