"""SIGTERM (the pod is being deleted) cancels the task, and the runner exits 143."""

from __future__ import annotations

import signal

import pytest
from runner_harness import Runner


@pytest.mark.parametrize(
    ("task", "seen", "message"),
    [
        (
            "wait_for_cancel",
            "saw cancellation\n",
            "Cancelled: SIGTERM received; task 'wait_for_cancel' stopped",
        ),
        (
            "wait_with_cancel_parameter",
            "saw cancellation through the parameter x: True\n",
            "Cancelled: SIGTERM received; task 'wait_with_cancel_parameter' stopped",
        ),
        (
            "async_wait",
            "saw CancelledError\n",
            "Cancelled: SIGTERM received; task 'async_wait' stopped with asyncio.exceptions."
            "CancelledError",
        ),
        (
            "raise_after_cancel",
            "",
            "Cancelled: SIGTERM received; task 'raise_after_cancel' stopped with RuntimeError: "
            "cleanup failed",
        ),
    ],
)
def test_sigterm_cancels_the_task_and_exits_143(
    runner: Runner, task: str, seen: str, message: str
) -> None:
    process = runner.start_and_wait_ready(task)

    process.send_signal(signal.SIGTERM)
    result = runner.finish(process)

    assert result.code == 143, result.stderr
    assert result.stdout == seen
    assert result.termination == message.encode()


def test_cancel_parameter_takes_args_beside_it(runner: Runner) -> None:
    process = runner.start_and_wait_ready("wait_with_cancel_parameter", '{"label": "y"}')

    process.send_signal(signal.SIGTERM)
    result = runner.finish(process)

    assert result.code == 143, result.stderr
    assert result.stdout == "saw cancellation through the parameter y: True\n"


def test_a_task_ignoring_cancellation_is_abandoned_after_the_grace_period(
    runner: Runner,
) -> None:
    process = runner.start_and_wait_ready("ignore_cancel", STOKER_CANCEL_GRACE_SECONDS="0.2")

    process.send_signal(signal.SIGTERM)
    result = runner.finish(process)

    assert result.code == 143, result.stderr
    assert result.termination == (
        b"Cancelled: SIGTERM received; task 'ignore_cancel' did not stop within 0.2s"
    )


def test_sigterm_during_start_up_means_the_task_never_runs(runner: Runner) -> None:
    result = runner.run(
        "echo", '{"ran": true}', STOKER_TASK_MODULES="runner_test_tasks,sigterm_at_import"
    )

    assert result.code == 143, result.stderr
    assert result.stdout == ""
    assert result.termination == b"Cancelled: SIGTERM received before task 'echo' started"
