"""The example tasks shipped in the image, run through the runner's default task modules."""

from __future__ import annotations

import json

import pytest
from runner_harness import Runner


@pytest.mark.parametrize(
    ("task", "args", "env", "code", "logged"),
    [
        ("create_invoice", {"order_id": 42}, {}, 0, "created invoice INV-000042 for order 42"),
        ("update_ledger", {"invoice_id": "INV-000042"}, {}, 0, "posted invoice INV-000042"),
        (
            "send_welcome_email",
            {"user_id": 9, "email": "a@example.com"},
            {},
            0,
            "sent welcome email to user 9 at a@example.com",
        ),
        (
            "send_welcome_email",
            {"user_id": 9, "email": "nobody"},
            {},
            2,
            "user 9 has no valid email address",
        ),
        ("notify", {"channel": "ops", "text": "deployed"}, {}, 0, "posted to #ops: deployed"),
        ("nightly_report", {"date": "2026-01-02"}, {}, 0, "nightly report for 2026-01-02"),
        ("nightly_report", {}, {}, 0, "section refunds done"),
        (
            "flaky",
            {"fail_times": 2},
            {"STOKER_ATTEMPT": "2"},
            75,
            "attempt 2 of a task that fails 2 time(s)",
        ),
        (
            "flaky",
            {"fail_times": 2},
            {"STOKER_ATTEMPT": "3"},
            0,
            "attempt 3 succeeded after 2 failure(s)",
        ),
        ("flaky", {"fail_times": 1}, {}, 75, "attempt 1 of a task"),
    ],
)
def test_example_task(
    runner: Runner,
    task: str,
    args: dict[str, object],
    env: dict[str, str],
    code: int,
    logged: str,
) -> None:
    # Blank STOKER_TASK_MODULES means the default: the examples package.
    result = runner.run(task, json.dumps(args), STOKER_TASK_MODULES="", **env)

    assert result.code == code, result.stderr
    assert logged in result.stderr
