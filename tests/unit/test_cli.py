"""The `stoker` command line without a cluster: its tables, ages, stats, descriptions, errors,
usage checks, the manifests `enqueue` sends, and the completion script.
(tests/cluster/test_cli_e2e.py runs every command against the real control plane.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
import urllib3
from click.testing import CliRunner

from stoker.api.crds import rendered
from stoker.api.models import BackgroundJobSpec
from stoker.cli import cli
from stoker.cli import commands as commands_module
from stoker.cli.cluster import Target, one_line
from stoker.cli.describe import describe_job
from stoker.cli.kinds import Kind
from stoker.cli.stats import count, recurring_summary, render, wire
from stoker.cli.tables import human_duration, table
from stoker.client import Client

NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
BIN = Path(sys.executable).parent


def ts(delta: timedelta) -> str:
    return (NOW + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def job(
    name: str,
    phase: str | None = None,
    queue: str = "default",
    *,
    namespace: str = "shop",
    created: timedelta = timedelta(minutes=-5),
    **status: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "stoker.dev/v1alpha1",
        "kind": "BackgroundJob",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{name}",
            "creationTimestamp": ts(created),
        },
        "spec": {"queue": queue, "task": {"name": "send_email"}},
        "status": {"phase": phase, **status} if phase else {},
    }
    return body


# ---------------------------------------------------------------- ages and tables


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (119, "119s"),
        (120, "2m"),
        (200, "3m20s"),
        (9 * 60 + 59, "9m59s"),
        (10 * 60 + 30, "10m"),
        (179 * 60, "179m"),
        (3 * 3600, "3h"),
        (5 * 3600 + 10 * 60, "5h10m"),
        (8 * 3600 + 59 * 60, "8h"),
        (47 * 3600, "47h"),
        (48 * 3600, "2d"),
        (3 * 86400 + 4 * 3600, "3d4h"),
        (8 * 86400, "8d"),
        (729 * 86400, "729d"),
        (730 * 86400, "2y"),
        (740 * 86400, "2y10d"),
        (9 * 365 * 86400 + 5 * 86400, "9y"),
    ],
)
def test_ages_read_as_kubectl_prints_them(seconds: int, shown: str) -> None:
    assert human_duration(timedelta(seconds=seconds)) == shown


def test_the_jobs_table_has_kubectls_columns_and_aligns_them() -> None:
    jobs = [
        job("a", "Failed", reason="AttemptsExhausted", attempt=4),
        job(
            "retrying-job",
            "Scheduled",
            "critical",
            created=timedelta(hours=-3),
            reason="Retrying",
            attempt=2,
            nextAttemptAt=ts(timedelta(seconds=42)),
        ),
        job("new", None),
    ]
    assert table(Kind.JOB, jobs, NOW).splitlines() == [
        "NAME           PHASE       QUEUE      ATTEMPT   REASON              NEXT-ATTEMPT   AGE",
        "a              Failed      default    4         AttemptsExhausted   <none>         5m",
        "retrying-job   Scheduled   critical   2         Retrying            in 42s         3h",
        "new            <none>      default    <none>    <none>              <none>         5m",
    ]


def test_wide_adds_columns_and_all_namespaces_a_namespace_column() -> None:
    one = job("a", "Failed", namespace="ops", message="attempt 1 failed with exit code 1")
    lines = table(Kind.JOB, [one], NOW, wide=True, namespaces=True).splitlines()
    assert lines[0].split() == [
        "NAMESPACE",
        "NAME",
        "PHASE",
        "QUEUE",
        "ATTEMPT",
        "REASON",
        "NEXT-ATTEMPT",
        "AGE",
        "PRIORITY",
        "TASK",
        "MESSAGE",
    ]
    assert lines[1].startswith("ops ")
    assert lines[1].endswith("   0          send_email   attempt 1 failed with exit code 1")


def test_recurring_and_queue_tables() -> None:
    rj = {
        "metadata": {"name": "nightly", "creationTimestamp": ts(timedelta(days=-3))},
        "spec": {"schedule": "0 2 * * *", "timeZone": "Europe/Berlin", "suspend": False},
        "status": {
            "lastScheduleTime": ts(timedelta(hours=-10)),
            "nextScheduleTime": ts(timedelta(hours=14)),
        },
    }
    assert table(Kind.RECURRING, [rj], NOW).splitlines()[1].split() == [
        "nightly",
        "0",
        "2",
        "*",
        "*",
        "*",
        "Europe/Berlin",
        "false",
        "10h",
        "in",
        "14h",
        "3d",
    ]
    jq = {
        "metadata": {"name": "mail", "creationTimestamp": ts(timedelta(minutes=-1))},
        "spec": {"priority": 5, "suspend": True},
        "status": {"enqueued": 3},
    }
    assert table(Kind.QUEUE, [jq], NOW).splitlines() == [
        "NAME   CONCURRENCY   PRIORITY   SUSPEND   ENQUEUED   RUNNING   AGE",
        "mail   unlimited     5          true      3          0         60s",
    ]


# ---------------------------------------------------------------- get (describe)


def test_get_describes_status_attempts_and_events() -> None:
    failed = job(
        "invoice-7",
        "Failed",
        reason="AttemptsExhausted",
        message="attempt 2 of 2 failed with exit code 3",
        attempt=2,
        finishedAt=ts(timedelta(minutes=-1)),
        attempts=[
            {
                "attempt": 1,
                "pod": "invoice-7-1",
                "result": "Failed",
                "exitCode": 3,
                "reason": "Error",
                "startedAt": ts(timedelta(minutes=-4)),
                "finishedAt": ts(timedelta(minutes=-3, seconds=-30)),
                "message": "boom\nline two",
            }
        ],
    )
    failed["spec"]["task"]["args"] = {"order": 7}
    events = [
        {
            "type": "Warning",
            "reason": "AttemptFailed",
            "message": "attempt 1 failed",
            "count": 3,
            "firstTimestamp": ts(timedelta(minutes=-4)),
            "lastTimestamp": ts(timedelta(minutes=-1)),
            "source": {"component": "stoker"},
        }
    ]
    text = describe_job(failed, events, NOW)
    assert "Name:        invoice-7\n" in text
    assert 'Args:        {"order": 7}\n' in text
    assert "Image:       the template of queue default\n" in text
    assert f"Finished:    {ts(timedelta(minutes=-1))} (60s ago)\n" in text
    assert (
        "  1         invoice-7-1   Failed   3           Error    4m        30s        boom line two"
        in (text)
    )
    assert "  Warning   AttemptFailed   60s (x3 over 4m)   stoker   attempt 1 failed" in text
    assert describe_job(job("x"), [], NOW).endswith("Attempts:\n  <none>\nEvents:\n  <none>\n")


# ---------------------------------------------------------------- stats


def test_stats_count_phases_per_queue_and_the_last_24_hours() -> None:
    jobs = [
        job("a", "Succeeded", finishedAt=ts(timedelta(hours=-1))),
        job("b", "Succeeded", finishedAt=ts(timedelta(hours=-25))),  # outside the window
        job("c", "Failed", "mail", finishedAt=ts(timedelta(hours=-23))),
        job("d", "Running", "mail"),
        job("e", None, "mail"),  # not reconciled yet: in the total only
    ]
    queues = [{"metadata": {"name": "idle", "namespace": "shop"}}]
    rows = count(jobs, queues, NOW)
    assert [(r.queue, r.total, r.succeeded_24h, r.failed_24h) for r in rows] == [
        ("default", 2, 1, 0),
        ("idle", 0, 0, 0),
        ("mail", 3, 0, 1),
    ]
    assert rows[0].phases["Succeeded"] == 2
    assert rows[2].phases == {
        "Awaiting": 0,
        "Scheduled": 0,
        "Enqueued": 0,
        "Running": 1,
        "Succeeded": 0,
        "Failed": 1,
    }
    recurring = recurring_summary([{"spec": {"suspend": True}}, {"spec": {}}])
    lines = render(rows, recurring).splitlines()
    assert lines[0].split() == [
        "QUEUE",
        "AWAITING",
        "SCHEDULED",
        "ENQUEUED",
        "RUNNING",
        "SUCCEEDED",
        "FAILED",
        "TOTAL",
        "SUCCEEDED-24H",
        "FAILED-24H",
    ]
    assert lines[4].split() == ["TOTAL", "0", "0", "0", "1", "2", "1", "5", "1", "1"]
    assert lines[-1] == "Recurring jobs: 2 (1 suspended)"
    assert wire(rows, recurring)["total"]["failedLast24h"] == 1


# ---------------------------------------------------------------- errors in one line


def test_api_errors_read_as_kubectl_words_them() -> None:
    exc = kubernetes.client.ApiException(status=404, reason="Not Found")
    exc.body = json.dumps(
        {"reason": "NotFound", "message": 'backgroundjobs.stoker.dev "x" not found'}
    )
    assert one_line(exc) == 'Error from server (NotFound): backgroundjobs.stoker.dev "x" not found'
    refused = urllib3.exceptions.MaxRetryError(
        None,  # type: ignore[arg-type]
        "/apis",
        urllib3.exceptions.NewConnectionError(
            None,  # type: ignore[arg-type]
            "Failed to establish a new connection: [Errno 111] Connection refused",
        ),
    )
    assert one_line(refused).startswith("error: cannot reach the API server")
    assert "Connection refused" in one_line(refused)
    try:
        BackgroundJobSpec.model_validate({"queue": "Not_A_Label"})
    except ValueError as invalid:
        message = one_line(invalid)
    assert "\n" not in message and message.startswith("error: queue:")


# ---------------------------------------------------------------- usage (exit 2) and input (1)


def run(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli, list(args), env=env)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ls", "pods"], "is not one of jobs, recurring, queues"),
        (["ls", "queues", "--phase", "Failed"], "apply to jobs only"),
        (["ls", "-o", "table"], "'table' is not one of"),
        (["enqueue", "t", "--delay", "soon"], "is not a duration"),
        (["enqueue", "t", "--at", "2026-11-22T10:00:00"], "has no time zone"),
        (["enqueue", "t", "--delay", "1m", "--at", "2026-11-22T10:00:00Z"], "not both"),
        (["enqueue", "t", "--after", "a", "--delay", "1m"], "drop --delay"),
        (["enqueue", "t", "--condition", "Finished"], "applies to --after"),
        (["enqueue", "t", "--label", "novalue"], "is not KEY=VALUE"),
        (["requeue"], "name at least one job"),
        (["requeue", "a", "--phase", "Failed"], "not both"),
        (["requeue", "--phase", "Running"], "must be one of Failed, Succeeded"),
        (["retry-now", "--phase", "Failed"], "must be one of Scheduled"),
        (["requeue", "a", "-A"], "-A selects jobs"),
        (["suspend", "pods", "x"], "is not one of job, recurring, queue"),
        (["logs", "j", "--attempt", "0"], "0 is not in the range"),
        (["get"], "Missing argument"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    # An empty kubeconfig: a usage error must be found before any connection is tried.
    result = run(*args, "--kubeconfig", str(tmp_path / "none"))
    assert result.exit_code == 2, result.output
    assert message in result.output


@pytest.mark.parametrize(
    ("args_json", "message"),
    [("{bad", "error: --args is not JSON: "), ("[1, 2]", "error: --args must be a JSON object")],
)
def test_bad_args_json_is_one_line_and_exit_1(args_json: str, message: str) -> None:
    result = run("enqueue", "t", "--args", args_json)
    assert result.exit_code == 1
    assert result.output.startswith(message)
    assert result.output.count("\n") == 1


def stoker(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user runs it."""
    return subprocess.run(
        [str(BIN / "stoker"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_an_unreachable_cluster_is_one_line_and_exit_1(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    done = stoker("ls", "--kubeconfig", str(kubeconfig))
    assert done.returncode == 1
    assert done.stderr.startswith("error: cannot reach the API server")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_no_kubeconfig_outside_a_cluster_is_one_line_and_exit_1(tmp_path: Path) -> None:
    done = stoker("stats", "--kubeconfig", str(tmp_path / "missing"))
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and "not inside a cluster" in done.stderr
    assert done.stderr.count("\n") == 1


def test_an_unknown_context_is_one_line_and_exit_1(tmp_path: Path) -> None:
    done = stoker("ls", "--context", "nope", "--kubeconfig", str(tmp_path / "missing"))
    assert done.returncode == 1 and done.stderr.count("\n") == 1


# ---------------------------------------------------------------- enqueue builds the manifest


class FakeCustomObjects:
    """Records creates; answers as the API server would."""

    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []

    def create_namespaced_custom_object(self, **kwargs: Any) -> Any:
        self.created.append(kwargs["body"])
        return kwargs["body"]


class FakeCluster:
    namespace = "shop"

    def __init__(self) -> None:
        self.custom = FakeCustomObjects()

    def client(self, namespace: str | None = None) -> Client:
        return Client(namespace or self.namespace, api=self.custom)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    cluster = FakeCluster()
    monkeypatch.setattr(Target, "cluster", lambda self: cluster)
    return cluster


IMAGE = "ghcr.io/acme/tasks:1.4"
TEMPLATE = {"spec": {"containers": [{"name": "main", "image": IMAGE}]}}


@pytest.mark.parametrize(
    ("args", "spec"),
    [
        ([], {"queue": "mail", "task": {"name": "send_email", "args": {"to": "a@b.c"}}}),
        (
            ["--image", "ghcr.io/acme/tasks:1.4", "--pod-annotation", "sim.stoker.dev/duration=2s"],
            {
                "queue": "mail",
                "task": {"name": "send_email", "args": {"to": "a@b.c"}},
                "template": {
                    "metadata": {"annotations": {"sim.stoker.dev/duration": "2s"}},
                    "spec": {"containers": [{"name": "main", "image": "ghcr.io/acme/tasks:1.4"}]},
                },
            },
        ),
        (
            [
                "--image",
                IMAGE,
                "--delay",
                "500ms",
                "--priority",
                "5",
                "--retries",
                "3",
                "--timeout",
                "1m",
            ],
            {
                "template": TEMPLATE,
                "queue": "mail",
                "task": {"name": "send_email", "args": {"to": "a@b.c"}},
                "startAfter": "500ms",
                "priority": 5,
                "retry": {"attempts": 3},
                "timeout": "1m",
            },
        ),
        (
            ["--image", IMAGE, "--at", "2026-11-22T11:00:00+01:00"],
            {
                "template": TEMPLATE,
                "queue": "mail",
                "task": {"name": "send_email", "args": {"to": "a@b.c"}},
                "startAt": "2026-11-22T10:00:00Z",
            },
        ),
        (
            ["--image", IMAGE, "--after", "a", "--after", "b", "--condition", "Finished"],
            {
                "template": TEMPLATE,
                "queue": "mail",
                "task": {"name": "send_email", "args": {"to": "a@b.c"}},
                "after": [{"name": "a"}, {"name": "b"}],
                "afterCondition": "Finished",
            },
        ),
    ],
)
def test_enqueue_sends_the_options_as_a_manifest_and_prints_the_name(
    fake: FakeCluster, args: list[str], spec: dict[str, Any]
) -> None:
    result = run("enqueue", "send_email", "--args", '{"to": "a@b.c"}', "--queue", "mail", *args)
    assert result.exit_code == 0, result.output
    [body] = fake.custom.created
    assert result.output == body["metadata"]["name"] + "\n"
    assert body["metadata"]["name"].startswith("send-email-")
    assert body["spec"] == spec


def test_enqueue_with_a_chosen_name_and_labels(fake: FakeCluster) -> None:
    result = run("enqueue", "t", "--image", IMAGE, "--name", "invoice-42", "--label", "team=shop")
    assert result.output == "invoice-42\n"
    [body] = fake.custom.created
    assert body["metadata"] == {
        "name": "invoice-42",
        "namespace": "shop",
        "labels": {"team": "shop"},
    }


def test_enqueue_pod_annotations_without_an_image_is_an_error(fake: FakeCluster) -> None:
    result = run("enqueue", "t", "--pod-annotation", "a=b")
    assert result.exit_code == 1
    assert result.output.startswith("error: pod_labels and pod_annotations need a pod template")
    assert fake.custom.created == []


# ---------------------------------------------------------------- flags, completion, crds


def test_flags_on_the_group_and_on_the_command_both_count() -> None:
    seen: list[Target] = []

    def capture(ctx: Any, *args: Any, **kwargs: Any) -> None:
        seen.append(ctx.ensure_object(Target))

    command = commands_module.cli.commands["stats"]
    original = command.callback
    command.callback = lambda **kw: capture(commands_module.click.get_current_context())
    try:
        run("-n", "a", "--context", "c", "stats", "-A")
        run("-n", "a", "stats", "-n", "b")
    finally:
        command.callback = original
    assert (seen[0].namespace, seen[0].context, seen[0].all_namespaces) == ("a", "c", True)
    assert seen[1].namespace == "b"


def test_bash_completion_script_is_produced() -> None:
    done = stoker(env={"_STOKER_COMPLETE": "bash_source"})
    assert done.returncode == 0
    assert "_stoker_completion()" in done.stdout
    assert "complete -o nosort -F _stoker_completion stoker" in done.stdout


def test_completion_offers_commands_and_kinds() -> None:
    def complete(words: str) -> list[str]:
        env = {"_STOKER_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": "2"}
        done = stoker(env=env)
        return [line.split(",", 1)[1] for line in done.stdout.splitlines()]

    assert complete("stoker ls ") == ["jobs", "recurring", "queues"]
    env = {"_STOKER_COMPLETE": "bash_complete", "COMP_WORDS": "stoker re", "COMP_CWORD": "1"}
    assert [line.split(",", 1)[1] for line in stoker(env=env).stdout.splitlines()] == [
        "requeue",
        "retry-now",
        "resume",
    ]


def test_crds_prints_every_crd() -> None:
    done = stoker("crds")
    assert done.returncode == 0
    assert done.stdout == "---\n".join(rendered().values())


def test_python_m_stoker_cli_runs_the_same_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "stoker.cli", "operator", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and "--log-level" in done.stdout


def test_kubectl_plugin_script_is_installed() -> None:
    done = subprocess.run(
        [str(BIN / "kubectl-stoker"), "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and "Usage: kubectl-stoker" in done.stdout


# ---------------------------------------------------------------- logs: the request it makes


class FakeLogStream:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.released = False

    def stream(self, amt: Any = None, decode_content: bool = True) -> Any:
        yield from self.chunks

    def release_conn(self) -> None:
        self.released = True


class FakeCore:
    def __init__(self, pods: list[Any]) -> None:
        self.pods = pods
        self.selectors: list[str] = []
        self.log_requests: list[tuple[str, str, dict[str, Any]]] = []

    def list_namespaced_pod(self, namespace: str, label_selector: str, **_: Any) -> Any:
        self.selectors.append(label_selector)
        return kubernetes.client.V1PodList(items=self.pods)

    def read_namespaced_pod_log(self, name: str, namespace: str, **options: Any) -> Any:
        self.log_requests.append((name, namespace, options))
        return FakeLogStream([b"line 1\n", b"line 2\n"])


class FakeJobs:
    def __init__(self, stored: dict[str, Any]) -> None:
        self.stored = stored

    def get_namespaced_custom_object(self, *args: Any, **_: Any) -> Any:
        return self.stored


def attempt_pod(name: str, containers: list[str], phase: str = "Running") -> Any:
    return kubernetes.client.V1Pod(
        metadata=kubernetes.client.V1ObjectMeta(name=name),
        spec=kubernetes.client.V1PodSpec(
            containers=[kubernetes.client.V1Container(name=c) for c in containers]
        ),
        status=kubernetes.client.V1PodStatus(phase=phase),
    )


@pytest.fixture
def logs_cluster(monkeypatch: pytest.MonkeyPatch) -> Any:
    from stoker.cli.cluster import Cluster

    def make(status: dict[str, Any], pods: list[Any]) -> Cluster:
        cluster = Cluster(kubernetes.client.ApiClient(), "shop")
        cluster.core = FakeCore(pods)
        cluster.custom = FakeJobs({**job("j"), "status": status})
        monkeypatch.setattr(Target, "cluster", lambda self: cluster)
        return cluster

    return make


def test_logs_reads_the_pod_of_the_latest_attempt(logs_cluster: Any) -> None:
    cluster = logs_cluster({"phase": "Failed", "attempt": 3}, [attempt_pod("j-3", ["main"])])
    result = run("logs", "j")
    assert result.exit_code == 0, result.output
    assert result.output == "line 1\nline 2\n"
    assert cluster.core.selectors == [
        "stoker.dev/job-name=j,stoker.dev/job-uid=uid-j,stoker.dev/attempt=3"
    ]
    [(pod, namespace, options)] = cluster.core.log_requests
    assert (pod, namespace) == ("j-3", "shop")
    assert options["container"] == "main" and options["follow"] is False
    assert options["_preload_content"] is False


def test_logs_of_a_chosen_attempt_followed(logs_cluster: Any) -> None:
    pod = attempt_pod("j-1", ["main", "side"])
    cluster = logs_cluster({"phase": "Running", "attempt": 2}, [pod])
    result = run("logs", "j", "--attempt", "1", "-f", "-c", "side", "--tail", "5")
    assert result.exit_code == 0, result.output
    assert cluster.core.selectors[0].endswith("stoker.dev/attempt=1")
    [(name, _, options)] = cluster.core.log_requests
    assert name == "j-1"
    assert (options["container"], options["follow"], options["tail_lines"]) == ("side", True, 5)
    assert "_request_timeout" not in options  # a followed log may run for hours


def test_logs_names_the_container_it_chose_among_several(logs_cluster: Any) -> None:
    cluster = logs_cluster({"attempt": 1}, [attempt_pod("j-1", ["sidecar", "worker"])])
    result = CliRunner().invoke(cli, ["logs", "j"])
    assert result.exit_code == 0
    assert 'Defaulted container "sidecar" out of: sidecar, worker' in result.output
    assert cluster.core.log_requests[0][2]["container"] == "sidecar"


@pytest.mark.parametrize(
    ("status", "pods", "message"),
    [
        ({"phase": "Enqueued"}, [], "error: job j has not started an attempt yet (phase Enqueued)"),
        ({"attempt": 2}, [], "error: no pod for attempt 2 of job j (not created yet, or deleted)"),
    ],
)
def test_logs_without_a_pod_is_one_line_and_exit_1(
    logs_cluster: Any, status: dict[str, Any], pods: list[Any], message: str
) -> None:
    logs_cluster(status, pods)
    result = run("logs", "j")
    assert result.exit_code == 1
    assert result.output == message + "\n"


# ---------------------------------------------------------------- operator


def test_operator_runs_the_operator(monkeypatch: pytest.MonkeyPatch) -> None:
    import stoker.main

    calls: list[str] = []
    monkeypatch.setattr(stoker.main, "run_operator", lambda: calls.append("run"))
    result = run("operator", "--log-level", "warning")
    assert result.exit_code == 0, result.output
    assert calls == ["run"]


def test_a_crashing_operator_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    import stoker.main

    def crash() -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(stoker.main, "run_operator", crash)
    result = run("operator")
    assert isinstance(result.exception, RuntimeError)
