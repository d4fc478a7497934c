"""The `stoker` command line against the real control plane and operator: every command, run as
the installed console script, does the dashboard's work and says so in kubectl's words."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jobs_api import Jobs

from harness import Cluster, wait_for
from operator_process import Operator

BIN = Path(sys.executable).parent
IMAGE = "ghcr.io/acme/tasks:1.4"
FAIL_ONCE = "sim.stoker.dev/fail-attempts=1"
FAIL_ALWAYS = "sim.stoker.dev/fail-attempts=always"


class Stoker:
    """Runs `stoker ... -n <namespace>` with the cluster's kubeconfig, as a user would."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.cluster, self.namespace = cluster, namespace

    def run(
        self, *args: str, namespaced: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(BIN / "stoker"), *args]
        if namespaced:
            argv += ["-n", self.namespace]
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig), **(env or {})},
            check=False,
        )

    def __call__(self, *args: str, namespaced: bool = True) -> str:
        """stdout of a command that must succeed."""
        done = self.run(*args, namespaced=namespaced)
        assert done.returncode == 0, f"stoker {' '.join(args)}: {done.stderr}"
        return done.stdout

    def fails(self, *args: str, code: int = 1) -> str:
        """stderr of a command that must fail with `code`, in one line (no traceback)."""
        done = self.run(*args)
        assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
        if code == 1:
            assert "Traceback" not in done.stderr
        return done.stderr


@pytest.fixture
def stoker(operator: Operator, cluster: Cluster, namespace: str) -> Stoker:
    return Stoker(cluster, namespace)


def enqueue(stoker: Stoker, task: str, *args: str) -> str:
    name = stoker("enqueue", task, "--image", IMAGE, *args).strip()
    assert name.startswith(task.replace("_", "-"))
    return name


def queues(jobs: Jobs, *names: str) -> None:
    """JobQueues with no limits: a job naming a queue that does not exist waits for it."""
    for name in names:
        jobs.create(name, {}, kind="JobQueue", plural="jobqueues")


def rows(table: str) -> dict[str, dict[str, str]]:
    """A kubectl table as {name: {column: cell}} (cells hold no spaces in these tests)."""
    header, *lines = table.splitlines()
    columns = header.split()
    return {line.split()[0]: dict(zip(columns, line.split(), strict=True)) for line in lines}


def test_enqueue_ls_get_and_stats(stoker: Stoker, jobs: Jobs) -> None:
    queues(jobs, "billing")
    ok = enqueue(stoker, "send_email", "--args", '{"user_id": 9}', "--priority", "5")
    bad = enqueue(
        stoker,
        "charge_card",
        "--queue",
        "billing",
        "--retries",
        "0",
        "--pod-annotation",
        FAIL_ALWAYS,
    )
    jobs.wait_phase(ok, "Succeeded")
    jobs.wait_phase(bad, "Failed")
    assert jobs.get(ok)["spec"]["task"] == {"name": "send_email", "args": {"user_id": 9}}

    listed = rows(stoker("ls"))
    assert listed[ok] == {
        "NAME": ok,
        "PHASE": "Succeeded",
        "QUEUE": "default",
        "ATTEMPT": "1",
        "REASON": "Completed",
        "NEXT-ATTEMPT": "<none>",
        "AGE": listed[ok]["AGE"],
    }
    assert listed[bad]["PHASE"] == "Failed" and listed[bad]["QUEUE"] == "billing"
    assert list(rows(stoker("ls", "--phase", "failed"))) == [bad]
    assert list(rows(stoker("ls", "--queue", "billing"))) == [bad]
    wide = stoker("ls", "-o", "wide").splitlines()
    assert wide[0].split()[-3:] == ["PRIORITY", "TASK", "MESSAGE"]
    assert stoker("ls", "-o", "name").split() == sorted(
        [f"backgroundjob.stoker.dev/{ok}", f"backgroundjob.stoker.dev/{bad}"]
    )
    listing = json.loads(stoker("ls", "-o", "json"))
    assert listing["kind"] == "List" and {i["metadata"]["name"] for i in listing["items"]} == {
        ok,
        bad,
    }
    everywhere = stoker("ls", "-A", namespaced=False)
    assert everywhere.startswith("NAMESPACE") and f"{stoker.namespace} " in everywhere

    described = stoker("get", bad)
    assert f"Name:        {bad}\n" in described
    assert "Phase:       Failed\n" in described
    assert "Attempts:\n  ATTEMPT   POD" in described
    assert f"  1         {bad}-1   Failed   1 " in described
    events = described.split("Events:\n", 1)[1]
    assert events.startswith("  TYPE ") and "stoker" in events
    as_yaml = yaml.safe_load(stoker("get", ok, "-o", "yaml"))
    assert as_yaml["kind"] == "BackgroundJob" and as_yaml["status"]["phase"] == "Succeeded"

    stats = rows(stoker("stats").split("\n\n")[0])
    assert stats["default"]["SUCCEEDED"] == "1" and stats["default"]["SUCCEEDED-24H"] == "1"
    assert stats["billing"]["FAILED"] == "1" and stats["billing"]["FAILED-24H"] == "1"
    assert stats["TOTAL"]["TOTAL"] == "2"
    numbers = json.loads(stoker("stats", "-o", "json"))
    assert numbers["total"]["failedLast24h"] == 1


def test_enqueue_without_an_image_runs_from_the_queue_template(stoker: Stoker, jobs: Jobs) -> None:
    jobs.create(
        "workers",
        {"template": {"spec": {"containers": [{"name": "main", "image": IMAGE}]}}},
        kind="JobQueue",
        plural="jobqueues",
    )
    name = stoker("enqueue", "resize_image", "--queue", "workers", "--args", '{"id": 1}').strip()
    assert "template" not in jobs.get(name)["spec"]
    jobs.wait_phase(name, "Succeeded")
    (pod,) = jobs.pods(name)
    assert pod.spec.containers[0].image == IMAGE


def test_scheduled_jobs_continuations_and_retry_now(stoker: Stoker, jobs: Jobs) -> None:
    queues(jobs, "sync")
    later = enqueue(stoker, "send_reminder", "--delay", "1h")
    status = jobs.wait_phase(later, "Scheduled")
    assert re.search(rf"^{later}\s+Scheduled\s.*\sDelayed\s+in (59|60)m\s", stoker("ls"), re.M)
    assert status["reason"] == "Delayed"
    child = enqueue(stoker, "log_reminder", "--after", later)
    jobs.wait_phase(child, "Awaiting")

    # retry-now refuses what it cannot move, and moves what it can.
    refused = stoker.fails("retry-now", child)
    assert refused == (
        f"error: backgroundjob.stoker.dev/{child} is Awaiting: "
        "retry-now applies to Scheduled jobs\n"
    )
    assert stoker("retry-now", later) == f"backgroundjob.stoker.dev/{later} retrying now\n"
    jobs.wait_phase(later, "Succeeded")
    jobs.wait_phase(child, "Succeeded")

    # In bulk: every Scheduled job (here: a retry waiting out its delay) of one queue.
    flaky = enqueue(
        stoker,
        "sync",
        "--queue",
        "sync",
        "--pod-annotation",
        FAIL_ONCE,
        "--retries",
        "1",
    )
    jobs.patch_spec(flaky, {"retry": {"attempts": 1, "delays": ["1h"]}})
    jobs.wait(lambda: jobs.status(flaky).get("reason") == "Retrying", what="a retry delay")
    assert stoker("retry-now", "--phase", "Scheduled", "--queue", "sync") == (
        f"backgroundjob.stoker.dev/{flaky} retrying now\n"
    )
    assert [a["result"] for a in jobs.wait_phase(flaky, "Succeeded")["attempts"]] == [
        "Failed",
        "Succeeded",
    ]


def test_requeue_one_and_all_failed(stoker: Stoker, jobs: Jobs) -> None:
    queues(jobs, "imports", "exports", "held")
    annotations = ["--pod-annotation", FAIL_ONCE, "--retries", "0"]
    failed = [enqueue(stoker, "import_rows", "--queue", "imports", *annotations) for _ in range(2)]
    other = enqueue(stoker, "export_rows", "--queue", "exports", *annotations)
    done = enqueue(stoker, "noop")
    for name in [*failed, other]:
        jobs.wait_phase(name, "Failed")
    jobs.wait_phase(done, "Succeeded")

    # Hangfire's "requeue all failed", within one queue.
    out = stoker("requeue", "--phase", "Failed", "--queue", "imports")
    assert sorted(out.splitlines()) == sorted(
        f"backgroundjob.stoker.dev/{n} requeued" for n in failed
    )
    for name in failed:
        status = jobs.wait_phase(name, "Succeeded")
        assert [(a["attempt"], a["result"]) for a in status["attempts"]] == [
            (1, "Failed"),
            (2, "Succeeded"),
        ]
    assert jobs.status(other)["phase"] == "Failed"

    # By name, several at once: the one that cannot be requeued is reported, the rest done.
    stoker("suspend", "queue", "held")
    enqueued = enqueue(stoker, "wait", "--queue", "held")
    jobs.wait(lambda: jobs.status(enqueued).get("reason") == "QueueSuspended", what="suspended")
    result = stoker.run("requeue", other, enqueued, "missing")
    assert result.returncode == 1
    assert result.stdout == f"backgroundjob.stoker.dev/{other} requeued\n"
    assert result.stderr.splitlines() == [
        f"error: backgroundjob.stoker.dev/{enqueued} is Enqueued: requeue applies to Failed or "
        "Succeeded jobs",
        'Error from server (NotFound): backgroundjobs.stoker.dev "missing" not found',
    ]
    assert jobs.wait_phase(other, "Succeeded")["attempt"] == 2
    assert stoker("requeue", done) == f"backgroundjob.stoker.dev/{done} requeued\n"
    jobs.wait(lambda: jobs.status(done).get("attempt") == 2, what="the requeued run")


def test_trigger_and_ls_recurring(stoker: Stoker, jobs: Jobs) -> None:
    jobs.create(
        "yearly-report",
        {
            "schedule": "0 0 1 1 *",
            "jobTemplate": {
                "spec": {"template": {"spec": {"containers": [{"name": "main", "image": IMAGE}]}}}
            },
        },
        kind="RecurringJob",
        plural="recurringjobs",
    )
    listed = stoker("ls", "recurring")
    assert listed.split()[:8] == [
        "NAME",
        "SCHEDULE",
        "TIMEZONE",
        "SUSPEND",
        "LAST",
        "NEXT",
        "AGE",
        "yearly-report",
    ]
    assert stoker("trigger", "yearly-report") == "recurringjob.stoker.dev/yearly-report triggered\n"
    created = jobs.wait(
        lambda: jobs.list(selector="stoker.dev/recurring-job=yearly-report"), what="a run"
    )
    jobs.wait_phase(created[0]["metadata"]["name"], "Succeeded")
    err = stoker.fails("trigger", "no-such-rj")
    assert err == 'Error from server (NotFound): recurringjobs.stoker.dev "no-such-rj" not found\n'


def test_suspend_and_resume_jobs_recurring_jobs_and_queues(stoker: Stoker, jobs: Jobs) -> None:
    # The default queue has no object until it is suspended.
    assert stoker("suspend", "queue", "default") == (
        "jobqueue.stoker.dev/default created, suspended\n"
    )
    waiting = enqueue(stoker, "send_email")
    jobs.wait(lambda: jobs.status(waiting).get("reason") == "QueueSuspended", what="held")
    queues = rows(stoker("ls", "queues"))
    assert queues["default"]["SUSPEND"] == "true" and queues["default"]["ENQUEUED"] == "1"
    assert stoker("resume", "queue", "default") == "jobqueue.stoker.dev/default resumed\n"
    jobs.wait_phase(waiting, "Succeeded")

    held = enqueue(stoker, "send_email", "--delay", "1h")
    assert stoker("suspend", "job", held) == f"backgroundjob.stoker.dev/{held} suspended\n"
    assert jobs.get(held)["spec"]["suspend"] is True
    stoker("resume", "bgj", held)
    assert jobs.get(held)["spec"]["suspend"] is False

    jobs.create(
        "hourly",
        {
            "schedule": "@hourly",
            "jobTemplate": {
                "spec": {"template": {"spec": {"containers": [{"name": "main", "image": IMAGE}]}}}
            },
        },
        kind="RecurringJob",
        plural="recurringjobs",
    )
    stoker("suspend", "recurring", "hourly")
    assert rows(stoker("ls", "rj"))["hourly"]["SUSPEND"] == "true"
    stoker("resume", "rj", "hourly")
    assert jobs.get("hourly", "recurringjobs")["spec"]["suspend"] is False
    err = stoker.fails("suspend", "queue", "nope")
    assert err == 'Error from server (NotFound): jobqueues.stoker.dev "nope" not found\n'


def test_delete_by_name_and_by_phase(stoker: Stoker, jobs: Jobs) -> None:
    a = enqueue(stoker, "a")
    b = enqueue(stoker, "b", "--pod-annotation", FAIL_ALWAYS, "--retries", "0")
    c = enqueue(stoker, "c", "--delay", "1h")
    jobs.wait_phase(a, "Succeeded")
    jobs.wait_phase(b, "Failed")
    jobs.wait_phase(c, "Scheduled")
    assert stoker("delete", "--phase", "Failed") == f"backgroundjob.stoker.dev/{b} deleted\n"
    assert stoker("delete", a, c).splitlines() == [
        f"backgroundjob.stoker.dev/{a} deleted",
        f"backgroundjob.stoker.dev/{c} deleted",
    ]
    wait_for(lambda: not jobs.list(), 30, description="every job gone")
    err = stoker.fails("delete", a)
    assert err == f'Error from server (NotFound): backgroundjobs.stoker.dev "{a}" not found\n'
    nothing = stoker.run("requeue", "--phase", "Failed")
    assert nothing.returncode == 0
    assert nothing.stderr == f"No resources found in {stoker.namespace} namespace.\n"


def test_errors_are_one_line_with_exit_1(stoker: Stoker, cluster: Cluster, tmp_path: Path) -> None:
    assert stoker.fails("get", "nope") == (
        'Error from server (NotFound): backgroundjobs.stoker.dev "nope" not found\n'
    )
    assert stoker.fails("logs", "nope").startswith("Error from server (NotFound)")
    assert stoker.fails("enqueue", "t", "--args", "{nope").startswith("error: --args is not JSON")
    # Admission refuses what the schema refuses: said in one line.
    refused = stoker.fails("enqueue", "t", "--image", IMAGE, "--name", "Bad_Name")
    assert refused.startswith("error: ") and refused.count("\n") == 1
    assert stoker.fails("ls", "--phase", "Nope", code=2)

    # Forbidden: a service account that may read nothing.
    cluster.kubectl("create", "serviceaccount", "nobody", "-n", stoker.namespace)
    token = cluster.kubectl("create", "token", "nobody", "-n", stoker.namespace).strip()
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    user = config["users"][0]
    user["user"] = {"token": token}
    kubeconfig = tmp_path / "nobody.yaml"
    kubeconfig.write_text(yaml.safe_dump(config))
    forbidden = stoker.fails("ls", "--kubeconfig", str(kubeconfig))
    assert forbidden.startswith("Error from server (Forbidden): backgroundjobs.stoker.dev is ")
    assert forbidden.count("\n") == 1


def test_completion_offers_the_jobs_of_the_namespace(stoker: Stoker, jobs: Jobs) -> None:
    name = enqueue(stoker, "complete_me")
    env = {
        "_STOKER_COMPLETE": "bash_complete",
        "COMP_WORDS": f"stoker get -n {stoker.namespace} complete",
        "COMP_CWORD": "4",
    }
    done = stoker.run(namespaced=False, env=env)
    assert done.returncode == 0
    assert done.stdout.splitlines() == [f"plain,{name}"]


# ---------------------------------------------------------------- logs

# The file is in the kubelet's log format (time, stream, tag, text); logs show the text.
SIMULATED_LOG = "".join(
    line.split(" ", 3)[3] + "\n"
    for line in (Path(__file__).parents[2] / "hack/kwok/simulated-pod.log").read_text().splitlines()
)
LOG_NODE = "stoker-cli-logs-node"


@pytest.fixture(scope="module")
def log_node(cluster: Cluster) -> Iterator[str]:
    """A kwok node the API server reaches on loopback for pods/log: kwok-node-0 names itself by
    a hostname nothing resolves. Tainted, so that only the pods that ask land on it."""
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": LOG_NODE,
            "annotations": {"kwok.x-k8s.io/node": "fake"},
            "labels": {"kubernetes.io/hostname": LOG_NODE, "type": "kwok"},
        },
        "spec": {"taints": [{"key": LOG_NODE, "value": "true", "effect": "NoSchedule"}]},
        "status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "allocatable": {"cpu": "100", "memory": "1000Gi", "pods": "1000"},
            "capacity": {"cpu": "100", "memory": "1000Gi", "pods": "1000"},
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(node))
    cluster.kubectl("wait", "--for=condition=Ready", f"node/{LOG_NODE}", "--timeout=60s")
    try:
        yield LOG_NODE
    finally:
        cluster.kubectl("delete", "node", LOG_NODE, "--wait=false")


def test_logs_of_the_latest_and_of_a_chosen_attempt(
    stoker: Stoker, jobs: Jobs, core: Any, log_node: str
) -> None:
    # The queue's template sends its pods to the node and fails each job's first attempt.
    jobs.create(
        "logged",
        {
            "template": {
                "metadata": {"annotations": {"sim.stoker.dev/fail-attempts": "1"}},
                "spec": {
                    "containers": [{"name": "main", "image": IMAGE}],
                    "nodeSelector": {"kubernetes.io/hostname": log_node},
                    "tolerations": [{"key": log_node, "operator": "Exists"}],
                },
            },
            "defaults": {"retry": {"attempts": 1, "delays": ["0s"]}},
        },
        kind="JobQueue",
        plural="jobqueues",
    )
    name = stoker("enqueue", "import_rows", "--queue", "logged").strip()
    status = jobs.wait_phase(name, "Succeeded")
    assert status["attempt"] == 2

    assert stoker("logs", name) == SIMULATED_LOG
    assert (
        stoker("logs", name, "--attempt", "1", "--tail", "1")
        == SIMULATED_LOG.splitlines(keepends=True)[-1]
    )
    follow_until_interrupted(stoker, name)

    # The attempt is found by its own pod: without it, there is no log to read.
    core.delete_namespaced_pod(f"{name}-1", stoker.namespace, grace_period_seconds=0)
    wait_for(lambda: len(jobs.pods(name)) == 1, 30, description="pod of attempt 1 gone")
    assert stoker.fails("logs", name, "--attempt", "1") == (
        f"error: no pod for attempt 1 of job {name} (not created yet, or deleted)\n"
    )
    assert stoker("logs", name) == SIMULATED_LOG
    assert stoker.fails("logs", name, "--attempt", "3").startswith("error: no pod for attempt 3")


def follow_until_interrupted(stoker: Stoker, job: str) -> None:
    """`logs -f` prints the lines as they come and keeps following until Ctrl-C, which ends it
    quietly with status 130 (kwok's simulated log never ends: its container never exits)."""
    proc = subprocess.Popen(
        [str(BIN / "stoker"), "logs", job, "-f", "-n", stoker.namespace],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "KUBECONFIG": str(stoker.cluster.kubeconfig)},
    )
    # A follow that never prints must fail the test, not hang it.
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    try:
        assert proc.stdout is not None
        expected = SIMULATED_LOG.splitlines(keepends=True)
        got = [proc.stdout.readline() for _ in expected]  # blocks until each line arrives
        assert got == expected
        assert proc.poll() is None  # still following
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 130
        assert proc.stderr is not None and proc.stderr.read() == ""
    finally:
        watchdog.cancel()
        proc.kill()
        proc.wait(10)
