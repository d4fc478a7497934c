"""Every dashboard query and every alert expression, run by a real Prometheus that scrapes a
running operator: a renamed metric or a broken query fails here, not on someone's dashboard.

The pinned prometheus (hack/build-control-plane.sh) scrapes the operator every second the way
prometheus-operator scrapes it through the chart's ServiceMonitor: under the job and namespace
labels of the metrics Service, with the endpoint's path and honorLabels. The test creates a
queue with a Running and a waiting job, a Failed, a Retrying and a Succeeded job and an
every-minute RecurringJob, waits until the operator has reported all of them, then runs each
query. With `pytest -s` it prints each query and what it returned.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import re
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jobs_api import Jobs, job_spec

from harness import REPO, build_bin_dir, wait_for
from operator_process import Operator, free_port

DASHBOARD = REPO / "charts" / "stoker" / "dashboards" / "stoker.json"
CHART = REPO / "charts" / "stoker"
# What the chart's ServiceMonitor makes of the operator's target (release stoker in
# stoker-system): StokerOperatorDown selects on exactly these.
SCRAPE_JOB, SCRAPE_NAMESPACE = "stoker-metrics", "stoker-system"
# Metric names a query may read: Stoker's own, and the process metrics of its registry.
METRIC = re.compile(r"\b(?:stoker|process|python)_[A-Za-z0-9_]+\b")
LABEL_VALUES = re.compile(r"^label_values\((.+),\s*(\w+)\)$")


def _die_with_parent() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Prometheus:
    """A prometheus process scraping one target every second, with its HTTP API."""

    def __init__(
        self, binary: Path, workdir: Path, target_port: int, endpoint: dict[str, Any]
    ) -> None:
        self.port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [
                {
                    "job_name": SCRAPE_JOB,
                    "metrics_path": endpoint["path"],
                    # Without it the target's namespace label would rename every Stoker
                    # namespace label to exported_namespace, and no query would match.
                    "honor_labels": endpoint.get("honorLabels", False),
                    "static_configs": [
                        {
                            "targets": [f"127.0.0.1:{target_port}"],
                            "labels": {"namespace": SCRAPE_NAMESPACE},
                        }
                    ],
                }
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log_path = workdir / "prometheus.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    str(binary),
                    f"--config.file={workdir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def get(self, path: str, **params: str) -> Any:
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited {self.proc.returncode}; see {self.log_path}")
        url = f"http://127.0.0.1:{self.port}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as e:
            body = json.loads(e.read())
        assert body["status"] == "success", f"{params}: {body.get('error')}"
        return body["data"]

    def query(self, expr: str) -> Any:
        return self.get("/api/v1/query", query=expr)

    def ready(self) -> bool:
        url = f"http://127.0.0.1:{self.port}/-/ready"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1):
            return True
        return False

    def names(self) -> set[str]:
        return set(self.get("/api/v1/label/__name__/values"))


def helm_template(template: str, *values: str) -> dict[str, Any]:
    """One template of the chart, rendered as release stoker in stoker-system."""
    done = subprocess.run(
        [
            str(build_bin_dir() / "helm"), "template", "stoker", str(CHART),
            "--namespace", SCRAPE_NAMESPACE, "--kube-version", "1.34.0",
            "--show-only", f"templates/{template}", *(a for v in values for a in ("--set", v)),
        ],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    doc: dict[str, Any] = yaml.safe_load(done.stdout)
    return doc


@pytest.fixture
def prometheus(operator: Operator, tmp_path: Path) -> Iterator[Prometheus]:
    # Scraped as the chart's ServiceMonitor has prometheus-operator scrape it.
    monitor = helm_template("servicemonitor.yaml", "serviceMonitor.enabled=true")
    (endpoint,) = monitor["spec"]["endpoints"]
    prom = Prometheus(build_bin_dir() / "prometheus", tmp_path, operator.metrics_port, endpoint)
    try:
        wait_for(prom.ready, timeout=60, description="prometheus ready")
        yield prom
    finally:
        prom.stop()
        print(f"prometheus log: {prom.log_path}")


def dashboard_queries(namespace: str) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target, with Grafana's variables made concrete."""
    dashboard = json.loads(DASHBOARD.read_text())
    values = {
        "$namespace": namespace,
        "$queue": "mail|default",
        "$__rate_interval": "1m",
        "$__range": "5m",
    }

    def concrete(expr: str) -> str:
        for variable, value in values.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"a Grafana variable this test does not know: {expr}"
        return expr

    queries = []
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            # Grafana's label_values(selector, label) is the values of `label` in selector.
            match = LABEL_VALUES.match(variable["definition"])
            assert match, variable["definition"]
            selector, label = match.groups()
            queries.append((f"${variable['name']}", concrete(f"count by ({label}) ({selector})")))
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            queries.append((f"{panel['title']} [{target['refId']}]", concrete(target["expr"])))
    return queries


def alert_expressions() -> list[tuple[str, str]]:
    spec = helm_template("prometheusrule.yaml", "prometheusRule.enabled=true")["spec"]
    return [(f"alert {r['alert']}", r["expr"]) for g in spec["groups"] for r in g["rules"]]


def shown(data: dict[str, Any]) -> str:
    """A query result in one line: label values=value per series, or the scalar."""
    if data["resultType"] == "scalar":
        return data["result"][1]
    rows = []
    for series in data["result"]:
        labels = ",".join(
            f"{k}={v}" for k, v in sorted(series["metric"].items()) if k not in {"job", "instance"}
        )
        rows.append(f"{labels or '{}'}={series['value'][1]}")
    return "; ".join(rows) if rows else "(empty)"


def populate(jobs: Jobs, prometheus: Prometheus) -> None:
    """One object in every state a panel shows, and wait until each is reached."""
    jobs.create("mail", {"concurrency": 1}, kind="JobQueue", plural="jobqueues")
    jobs.create("long", job_spec(sim={"duration": "600s"}, queue="mail"))
    jobs.create("first", job_spec())
    jobs.wait_phase("long", "Running")
    # The counters of a queue exist at 0 before its jobs finish, or increase() would not see
    # the first of them: wait for Prometheus to have scraped them at 0.
    primed = f'stoker_jobs_finished_total{{namespace="{jobs.namespace}", phase="Failed"}} == 0'
    wait_for(
        lambda: len(prometheus.query(primed)["result"]) == 2,
        timeout=30,
        # Never there if the scrape renamed Stoker's namespace label (no honorLabels).
        description="the Failed counters of both queues at 0",
    )
    jobs.create("queued", job_spec(queue="mail"))
    jobs.create("fails", job_spec(sim={"fail-attempts": "always"}, retry={"attempts": 0}))
    jobs.create("retrying", job_spec(sim={"fail-attempts": "1"}, retry={"delays": ["1h"]}))
    jobs.create("ok", job_spec())
    jobs.create(
        "nightly",
        {"schedule": "* * * * *", "jobTemplate": {"spec": job_spec()}},
        kind="RecurringJob",
        plural="recurringjobs",
    )
    assert jobs.wait_phase("queued", "Enqueued")["reason"] == "QueueFull"
    jobs.wait_phase("fails", "Failed")
    assert jobs.wait_phase("retrying", "Scheduled")["reason"] == "Retrying"
    jobs.wait_phase("ok", "Succeeded")
    # The first slot of an every-minute schedule, and its run's success.
    jobs.wait(
        lambda: "lastSuccessfulTime" in jobs.status("nightly", "recurringjobs"),
        timeout=90,
        what="nightly's first successful run",
    )


def test_every_dashboard_query_and_alert_runs_on_scraped_metrics(
    operator: Operator, prometheus: Prometheus, jobs: Jobs
) -> None:
    populate(jobs, prometheus)
    # Two scrapes after the last change, so that rate() and increase() have samples to compare.
    time.sleep(3)

    def scraped() -> set[str] | None:
        names = prometheus.names()
        return names if "stoker_recurring_last_success_timestamp_seconds" in names else None

    names = wait_for(scraped, timeout=30, description="the recurring gauges in prometheus")
    queries = dashboard_queries(jobs.namespace) + alert_expressions()
    table, missing = [], []
    for title, expr in queries:
        data = prometheus.query(expr)  # fails the test on a query Prometheus refuses
        table.append((title, expr, shown(data)))
        missing += [(title, name) for name in METRIC.findall(expr) if name not in names]
    width = max(len(title) for title, _, _ in table)
    print(f"\n{len(table)} queries against the operator's metrics (namespace {jobs.namespace}):")
    for title, expr, value in table:
        print(f"{title:<{width}}  {value}\n{'':<{width}}  {expr}")
    assert not missing, f"queries read metrics the operator does not export: {missing}"

    results = {title: value for title, _, value in table}
    ns = f"namespace={jobs.namespace}"
    # The rows a user opens the dashboard for show this test's objects.
    assert f"{ns},queue=mail=1" in results["Queues [A]"]  # enqueued
    assert f"{ns},queue=mail=1" in results["Queues [B]"]  # running
    assert f"{ns},queue=mail=1" in results["Queues [C]"]  # limit
    assert f"{ns},queue=mail=" in results["Queues [D]"]  # oldest wait
    assert f"{ns},recurringjob=nightly=" in results["Recurring jobs [C]"]  # last success
    assert "reason=QueueFull=1" in results["Waiting jobs by reason [A]"]
    assert "reason=Retrying=1" in results["Waiting jobs by reason [A]"]
    # One job of each finished: the 24 h counts see even a queue's first finished job.
    for phase in ("Succeeded", "Failed"):
        assert float(results[f"{phase} (24 h) [A]"].removeprefix("{}=")) >= 0.9, phase
    # StokerRecurringScheduleLag reads the 60 s bucket by its le label as Prometheus 3 ingests it.
    assert prometheus.query('stoker_recurring_schedule_lag_seconds_bucket{le="60.0"}')["result"]
    # The operator is up under the ServiceMonitor's labels: the down alert selects it.
    assert results["alert StokerOperatorDown"] == "(empty)"
