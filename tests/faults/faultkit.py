"""What the fault tests share: Stoker objects through the API, a canary, an operator that is
restarted when it exits (as a Deployment's kubelet would), and the figures for the note.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
import yaml
from kubernetes.client.exceptions import ApiException

from harness import Cluster, wait_for
from operator_process import GROUP, VERSION, Operator

TERMINAL = ("Succeeded", "Failed")


def proxied_kubeconfig(cluster: Cluster, port: int) -> Path:
    """A copy of the cluster's kubeconfig whose server is 127.0.0.1:`port` (the proxy).
    Written next to the original: certificate paths in it may be relative to it."""
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    for entry in config["clusters"]:
        scheme = entry["cluster"]["server"].split("://", 1)[0]
        entry["cluster"]["server"] = f"{scheme}://127.0.0.1:{port}"
    path = cluster.kubeconfig.with_name(f"kubeconfig-proxy-{port}.yaml")
    path.write_text(yaml.safe_dump(config))
    return path


def apiserver_port(cluster: Cluster) -> int:
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    server: str = config["clusters"][0]["cluster"]["server"]
    return int(server.rsplit(":", 1)[1].split("/")[0])


def job_spec(sim: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    """A BackgroundJob spec whose pod the simulated kubelet runs (`sim`: API.md's
    sim.stoker.dev annotations)."""
    return {
        "template": {
            "metadata": {"annotations": {f"sim.stoker.dev/{k}": v for k, v in (sim or {}).items()}},
            "spec": {"containers": [{"name": "main", "image": "ghcr.io/acme/tasks:1.4"}]},
        },
        **extra,
    }


class Stoker:
    """Stoker objects of one namespace, through the admin client (never the proxy)."""

    def __init__(self, api: kubernetes.client.ApiClient, namespace: str) -> None:
        self.client = api
        self.api = kubernetes.client.CustomObjectsApi(api)
        self.core = kubernetes.client.CoreV1Api(api)
        self.namespace = namespace

    def create(
        self,
        name: str,
        spec: dict[str, Any],
        kind: str = "BackgroundJob",
        annotations: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": kind,
            "metadata": {"name": name, "annotations": annotations or {}},
            "spec": spec,
        }
        result: dict[str, Any] = self.api.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, plural(kind), body
        )
        return result

    def get(self, name: str, kind: str = "BackgroundJob") -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self.api.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural(kind), name
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return result

    def status(self, name: str, kind: str = "BackgroundJob") -> dict[str, Any]:
        return dict((self.get(name, kind) or {}).get("status") or {})

    def patch(self, name: str, patch: dict[str, Any], kind: str = "BackgroundJob") -> None:
        self.api.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, plural(kind), name, patch
        )

    def delete(self, name: str, kind: str = "BackgroundJob") -> None:
        self.api.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, plural(kind), name)

    def statuses(self) -> dict[str, dict[str, Any]]:
        """Every BackgroundJob's status by name (one raw list: cheap for 1,000 jobs)."""
        raw = self.api.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "backgroundjobs", _preload_content=False
        )
        items = json.loads(raw.data)["items"]
        return {i["metadata"]["name"]: dict(i.get("status") or {}) for i in items}

    def pods(self, job: str) -> dict[str, str]:
        """The pods of `job`: name -> phase."""
        pods = self.core.list_namespaced_pod(
            self.namespace, label_selector=f"stoker.dev/job-name={job}"
        )
        return {p.metadata.name: p.status.phase for p in pods.items}

    def all_pods(self) -> set[str]:
        """Names of every pod in the namespace."""
        raw = self.core.list_namespaced_pod(self.namespace, _preload_content=False)
        return {p["metadata"]["name"] for p in json.loads(raw.data)["items"]}

    def events(self, name: str) -> list[Any]:
        found = self.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name}"
        )
        return list(found.items)

    def wait_phase(
        self, name: str, phases: str | tuple[str, ...], timeout: float = 60
    ) -> dict[str, Any]:
        wanted = (phases,) if isinstance(phases, str) else phases

        def reached() -> dict[str, Any] | None:
            status = self.status(name)
            return status if status.get("phase") in wanted else None

        return wait_for(reached, timeout, 0.1, f"{self.namespace}/{name} in {wanted}")

    def wait_gone(self, name: str, kind: str = "BackgroundJob", timeout: float = 60) -> None:
        wait_for(lambda: self.get(name, kind) is None, timeout, 0.1, f"{kind} {name} to be deleted")


def plural(kind: str) -> str:
    return {"BackgroundJob": "backgroundjobs", "RecurringJob": "recurringjobs"}.get(
        kind, "jobqueues"
    )


def create_many(
    cluster: Cluster, namespace: str, names: list[str], spec: dict[str, Any], threads: int = 4
) -> None:
    """Create BackgroundJobs `names` with `spec` from a pool of threads, one client each."""
    local = threading.local()

    def one(name: str) -> None:
        if not hasattr(local, "stoker"):
            local.stoker = Stoker(cluster.api_client(user_agent="stoker-fault-tests"), namespace)
        local.stoker.create(name, spec)

    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(one, names):
            pass


class Canary:
    """A job in a namespace no fault touches: the service as everyone else sees it."""

    def __init__(self, stoker: Stoker) -> None:
        self.stoker = stoker

    def run(self, timeout: float = 60) -> float:
        """Create a job and return the seconds until it Succeeded (on its first attempt)."""
        name = f"canary-{uuid.uuid4().hex[:8]}"
        start = time.monotonic()
        self.stoker.create(name, job_spec())
        status = self.stoker.wait_phase(name, TERMINAL, timeout)
        assert status["phase"] == "Succeeded", f"canary {name}: {status}"
        assert status["attempt"] == 1, f"canary {name}: {status}"
        return time.monotonic() - start


class SupervisedOperator:
    """An operator process started again `restart_delay` seconds after it exits, as the
    kubelet restarts the container of the operator's Deployment (CrashLoopBackOff starts at
    10 s; shorter here to keep the tests short)."""

    def __init__(self, operator: Operator, restart_delay: float = 1.0) -> None:
        self.operator, self.restart_delay = operator, restart_delay
        self.exits: list[tuple[float, int | None]] = []  # (time.time(), exit status)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> None:
        self.operator.start()
        self._thread.start()

    @property
    def pid(self) -> int:
        assert self.operator.proc is not None
        return self.operator.proc.pid

    def kill(self) -> None:
        """SIGKILL; the supervisor starts a new process at once."""
        with self._lock:
            self.operator.kill()

    def wait_leading(self, timeout: float = 60) -> None:
        def leading() -> bool:
            with self._lock:
                proc = self.operator.proc
                if proc is None or proc.poll() is not None:
                    return False
                try:
                    return self.operator.leading()
                except OSError:  # the endpoint went away between two requests
                    return False

        wait_for(leading, timeout, 0.05, "the operator leading")

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(10)
        self.operator.stop()

    def _watch(self) -> None:
        while not self._stopping.wait(0.05):
            with self._lock:
                proc = self.operator.proc
                if proc is None or proc.poll() is None:
                    continue
                self.exits.append((time.time(), proc.returncode))
            if self._stopping.wait(self.restart_delay):
                return
            with self._lock:
                self.operator.start(wait=False)


@dataclass
class Figures:
    """What the note needs per fault: what happened, how long until service resumed, what
    was lost. Collected by the conftest and printed at the end of the run."""

    fault: str
    happened: str = ""
    resumed_s: float | None = None
    lost: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        resumed = "-" if self.resumed_s is None else f"{self.resumed_s:.1f} s"
        more = ", ".join(f"{k}={v}" for k, v in self.extra.items())
        return (
            f"{self.fault}: {self.happened}; service resumed after {resumed}; "
            f"lost: {self.lost}" + (f"; {more}" if more else "")
        )


def job_gauge(metrics_text: str, namespace: str) -> dict[str, int]:
    """stoker_jobs of `namespace` by phase, from the operator's /metrics: its own view."""
    counts: dict[str, int] = {}
    for line in metrics_text.splitlines():
        found = re.match(r"stoker_jobs\{(.*)\} ([0-9.e+]+)$", line)
        if not found:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', found.group(1)))
        value = round(float(found.group(2)))
        if labels.get("namespace") == namespace and value:
            counts[labels["phase"]] = counts.get(labels["phase"], 0) + value
    return counts


def phase_counts(statuses: dict[str, dict[str, Any]]) -> Counter[str]:
    return Counter(str(s.get("phase")) for s in statuses.values())


def not_first_time_successes(statuses: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Jobs that did not succeed on exactly one attempt: lost, failed or retried."""
    return {
        name: s
        for name, s in statuses.items()
        if s.get("phase") != "Succeeded" or s.get("attempt") != 1 or len(s.get("attempts", [])) != 1
    }
