"""Run the task runner as the image runs it (`python -m stoker_runner`), in a subprocess.

Imported by the tests as `runner_harness`; the `runner` fixture lives in conftest.py."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

RUNNER_DIR = Path(__file__).resolve().parents[2] / "job_images" / "runner"
RUNNER_MODULE = "stoker_runner"
# A safety net against a hung runner, not a speed requirement.
HANG_TIMEOUT_SECONDS = 120

# Importable in-process too, for the tests of the pure parts (trimming, the registry).
sys.path.insert(0, str(RUNNER_DIR))

TASKS_MODULE = "runner_test_tasks"
TASKS_SOURCE = """
import asyncio
import json
import sys
import threading

from stoker_runner import Fail, cancelled, current, task


@task
def echo(**kwargs):
    print(json.dumps(kwargs, sort_keys=True))


@task("billing.charge")
def charge(amount):
    print(f"charged {amount}")


@task(name="kw:named-task")
def named_by_keyword():
    print("named by keyword")


@task
def boom(message):
    raise ValueError(message)


@task
def fail_with(message, exit_code=None):
    if exit_code is None:
        raise Fail(message)
    raise Fail(message, exit_code=exit_code)


@task
def exit_with(code):
    sys.exit(code)


@task
async def async_echo(value):
    await asyncio.sleep(0)
    print(json.dumps(value, sort_keys=True))


@task
async def async_boom(message):
    await asyncio.sleep(0)
    raise RuntimeError(message)


@task
def whoami():
    print(json.dumps({"task": current.task, "job": current.job_name, "attempt": current.attempt}))


@task
def wait_for_cancel():
    print("ready", flush=True)
    cancelled.wait()
    print("saw cancellation", flush=True)


@task
def wait_with_cancel_parameter(cancel, label="x"):
    print("ready", flush=True)
    cancel.wait()
    print(f"saw cancellation through the parameter {label}: {cancel is cancelled}", flush=True)


@task
def raise_after_cancel():
    print("ready", flush=True)
    cancelled.wait()
    raise RuntimeError("cleanup failed")


@task
async def async_wait():
    print("ready", flush=True)
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        print("saw CancelledError", flush=True)
        raise


@task
def ignore_cancel():
    print("ready", flush=True)
    threading.Event().wait()
"""

# Task modules that break the runner's start-up, each in its own way.
EXTRA_MODULES = {
    "broken_tasks": "import no_such_dependency_anywhere\n",
    "clashing_tasks": "from stoker_runner import task\n\n@task\ndef echo():\n    pass\n",
    "sigterm_at_import": "import os, signal\n\nos.kill(os.getpid(), signal.SIGTERM)\n",
}


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str
    termination: bytes | None  # None when the runner wrote no termination message


@dataclass(frozen=True)
class Runner:
    tasks_dir: Path
    termination_log: Path

    def env(self, task: str | None, args: str | None, extra: Mapping[str, str]) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("STOKER_", "PYTHON"))
        }
        env["PYTHONPATH"] = os.pathsep.join([str(self.tasks_dir), str(RUNNER_DIR)])
        env["STOKER_TASK_MODULES"] = TASKS_MODULE
        env["STOKER_TERMINATION_LOG"] = str(self.termination_log)
        if task is not None:
            env["STOKER_TASK"] = task
        if args is not None:
            env["STOKER_ARGS"] = args
        env.update(extra)
        return env

    def start(
        self, task: str | None, args: str | None = None, **extra: str
    ) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", RUNNER_MODULE],
            env=self.env(task, args, extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def finish(self, process: subprocess.Popen[str]) -> Result:
        stdout, stderr = process.communicate(timeout=HANG_TIMEOUT_SECONDS)
        written = self.termination_log.read_bytes() if self.termination_log.exists() else None
        return Result(process.returncode, stdout, stderr, written)

    def run(self, task: str | None, args: str | None = None, **extra: str) -> Result:
        return self.finish(self.start(task, args, **extra))

    def start_and_wait_ready(
        self, task: str, args: str | None = None, **extra: str
    ) -> subprocess.Popen[str]:
        """Start a task that prints "ready" once it is waiting, and wait for that line."""
        process = self.start(task, args, **extra)
        assert process.stdout is not None
        line = process.stdout.readline()
        if line != "ready\n":
            process.kill()
            _, stderr = process.communicate(timeout=HANG_TIMEOUT_SECONDS)
            pytest.fail(f"task {task} never got ready: {line!r}\n{stderr}")
        return process


def make_runner(tmp_path: Path) -> Runner:
    tasks_dir = tmp_path / "tasks"
    tasks_dir.mkdir()
    (tasks_dir / f"{TASKS_MODULE}.py").write_text(textwrap.dedent(TASKS_SOURCE))
    for name, source in EXTRA_MODULES.items():
        (tasks_dir / f"{name}.py").write_text(source)
    return Runner(tasks_dir, tmp_path / "termination-log")
