"""The example tasks that use services (examples.connections): mail through a real SMTP server
(the sink of tests/realnode/services.py, on 127.0.0.1), and the settings they refuse. Their
PostgreSQL effects run on the real node (tests/realnode/test_seed_tasks.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from runner_harness import Runner

from realnode.services import Inbox, free_port, smtp_sink

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    with smtp_sink(["127.0.0.1"]) as sink:
        yield sink


def test_welcome_mail_reaches_the_relay_with_the_args_address(runner: Runner, inbox: Inbox) -> None:
    args = {"user_id": 9, "email": "a@example.com"}
    result = runner.run(
        "mail.send_welcome",
        json.dumps(args),
        STOKER_TASK_MODULES="",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(inbox.port),
        MAIL_FROM="shop@example.com",
    )
    assert result.code == 0, result.stderr
    (message,) = inbox.to("a@example.com")
    assert (message["From"], message["To"]) == ("shop@example.com", "a@example.com")
    assert "account number is 9" in message.get_content()


def test_an_unreachable_relay_is_worth_a_retry(runner: Runner) -> None:
    closed = free_port("127.0.0.1")  # nothing listens there
    result = runner.run(
        "mail.send_welcome",
        json.dumps({"user_id": 9, "email": "a@example.com"}),
        STOKER_TASK_MODULES="",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(closed),
    )
    assert result.code == 75, result.stderr
    assert result.termination is not None
    assert b"mail relay 127.0.0.1 refused or unreachable" in result.termination


@pytest.mark.parametrize(
    ("task", "args", "env", "why"),
    [
        ("mail.send_welcome", {"user_id": 1, "email": "a@example.com"}, {}, "SMTP_HOST is not set"),
        ("mail.send_welcome", {"user_id": 1, "email": "nobody"}, {}, "no valid email address"),
        ("accounts.delete_expired_tokens", {}, {}, "DATABASE_URL is not set"),
        (
            "billing.invalidate_overdue_invoices",
            {},
            {"DATABASE_URL": "mysql://db/shop"},
            "not a postgresql:// URL: 'mysql'",
        ),
    ],
)
def test_missing_settings_are_configuration_errors(
    runner: Runner, task: str, args: dict[str, object], env: dict[str, str], why: str
) -> None:
    result = runner.run(task, json.dumps(args), STOKER_TASK_MODULES="", **env)
    assert result.code == 2, result.stderr
    assert result.termination is not None
    assert why in result.termination.decode()


CHECK_SEEDS = """
import json, sys, threading
import examples
from stoker_runner.arguments import bind
from stoker_runner.registry import registry
for name, args in json.load(sys.stdin):
    bind(registry.get(name), args, threading.Event())
"""


def test_every_task_of_the_seeds_manifests_exists_and_takes_its_args() -> None:
    manifests = list(yaml.safe_load_all((REPO / "examples" / "seeds.yaml").read_text()))
    specs = [
        m["spec"]["jobTemplate"]["spec"] if m["kind"] == "RecurringJob" else m["spec"]
        for m in manifests
        if m["kind"] in ("RecurringJob", "BackgroundJob")
    ]
    calls = [(s["task"]["name"], s["task"]["args"]) for s in specs]
    assert len(calls) == 13
    done = subprocess.run(
        [sys.executable, "-c", CHECK_SEEDS],
        input=json.dumps(calls),
        env={**os.environ, "PYTHONPATH": str(REPO / "job_images" / "runner")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
