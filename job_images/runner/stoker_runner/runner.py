"""The runner's main: read the call from the environment, run the task, exit with a code that
says what happened, and leave a termination message saying why."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import math
import os
import queue
import sys
import threading
import time
import traceback
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, NoReturn

from stoker_runner import arguments, exit_codes, termination
from stoker_runner.cancellation import Canceller, cancelled
from stoker_runner.config_errors import (
    BadEnvironment,
    ConfigurationError,
    MissingTask,
    TaskModuleError,
)
from stoker_runner.context import current
from stoker_runner.exit_codes import Fail
from stoker_runner.registry import Task, registry

DEFAULT_TASK_MODULES = "examples"
# Below Kubernetes' default terminationGracePeriodSeconds (30), so the runner exits and leaves
# its termination message before the kubelet's SIGKILL.
DEFAULT_CANCEL_GRACE_SECONDS = 25.0

log = logging.getLogger("stoker_runner")


@dataclass(frozen=True)
class Call:
    task: Task
    kwargs: dict[str, Any]
    grace_seconds: float


@dataclass(frozen=True)
class Outcome:
    """How the task ended: None when it returned, else what it raised."""

    error: BaseException | None


def main() -> int:
    wakeups: queue.SimpleQueue[object] = queue.SimpleQueue()
    canceller = Canceller(wakeups)
    # First, so that a SIGTERM during start-up (importing task modules) is not lost.
    canceller.install()
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    log_path = os.environ.get("STOKER_TERMINATION_LOG", "").strip() or termination.DEFAULT_PATH

    try:
        call = prepare()
    except ConfigurationError as error:
        return _finish(exit_codes.CONFIGURATION_ERROR, f"{type(error).__name__}: {error}", log_path)
    if cancelled.is_set():
        return _finish(
            exit_codes.CANCELLED,
            f"Cancelled: SIGTERM received before task {call.task.name!r} started",
            log_path,
        )

    log.info("running task %s%s", call.task.name, _whose())
    worker = threading.Thread(
        target=_run, args=(call, canceller, wakeups), name="stoker-task", daemon=True
    )
    worker.start()
    outcome = _wait(wakeups, call.grace_seconds)
    if outcome is None:
        _exit_now(
            exit_codes.CANCELLED,
            f"Cancelled: SIGTERM received; task {call.task.name!r} did not stop within "
            f"{call.grace_seconds:g}s",
            log_path,
        )
    return _conclude(call.task, outcome, log_path)


def prepare() -> Call:
    """Everything that must hold before the task is called; any failure here exits 2."""
    name = current.task
    if name is None:
        raise MissingTask("STOKER_TASK is not set: name the task to run")
    args = arguments.parse(os.environ.get("STOKER_ARGS"))
    current.attempt  # noqa: B018 - validated here so that tasks can read it without failing
    grace = _grace_seconds(os.environ.get("STOKER_CANCEL_GRACE_SECONDS", ""))
    modules = os.environ.get("STOKER_TASK_MODULES", "").strip() or DEFAULT_TASK_MODULES
    for module in (part.strip() for part in modules.split(",")):
        if module:
            _import(module)
    task = registry.get(name)
    return Call(task, arguments.bind(task, args, cancelled), grace)


def _grace_seconds(raw: str) -> float:
    if not raw.strip():
        return DEFAULT_CANCEL_GRACE_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not math.isfinite(seconds) or seconds < 0:
        raise BadEnvironment(
            f"STOKER_CANCEL_GRACE_SECONDS must be a non-negative number of seconds, got {raw!r}"
        )
    return seconds


def _import(module: str) -> None:
    try:
        importlib.import_module(module)
    except Exception as error:
        traceback.print_exception(error)
        raise TaskModuleError(
            f"cannot import task module {module!r}: {termination.describe(error)}"
        ) from None


def _whose() -> str:
    parts = [
        f"{label} {value}"
        for label, value in (("job", current.job_name), ("attempt", current.attempt))
        if value is not None
    ]
    return f" ({', '.join(parts)})" if parts else ""


def _run(call: Call, canceller: Canceller, wakeups: queue.SimpleQueue[object]) -> None:
    """The worker thread: the main thread stays free to receive SIGTERM."""
    try:
        result = call.task.function(**call.kwargs)
        if inspect.isawaitable(result):
            asyncio.run(_drive(result, canceller))
    except BaseException as error:  # everything, SystemExit included, is reported by main
        wakeups.put(Outcome(error))
    else:
        wakeups.put(Outcome(None))


async def _drive(awaitable: Awaitable[object], canceller: Canceller) -> object:
    running = asyncio.current_task()
    assert running is not None  # asyncio.run always runs this coroutine as a task
    canceller.attach(asyncio.get_running_loop(), running)
    try:
        return await awaitable
    finally:
        canceller.detach()


def _wait(wakeups: queue.SimpleQueue[object], grace_seconds: float) -> Outcome | None:
    """The task's outcome; None if SIGTERM came and the task outlived the grace period."""
    deadline: float | None = None
    while True:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            item = wakeups.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(item, Outcome):
            return item
        log.warning(
            "SIGTERM received: cancelling; waiting up to %gs for the task to stop", grace_seconds
        )
        deadline = time.monotonic() + grace_seconds


def _conclude(task: Task, outcome: Outcome, log_path: str) -> int:
    error = outcome.error
    if cancelled.is_set():
        if error is not None and not isinstance(error, asyncio.CancelledError):
            traceback.print_exception(error)
        ending = "" if error is None else f" with {termination.describe(error)}"
        return _finish(
            exit_codes.CANCELLED,
            f"Cancelled: SIGTERM received; task {task.name!r} stopped{ending}",
            log_path,
        )
    if error is None:
        log.info("task %s succeeded", task.name)
        return exit_codes.SUCCEEDED
    if isinstance(error, SystemExit):
        return _system_exit(task, error, log_path)
    traceback.print_exception(error)
    code = error.exit_code if isinstance(error, Fail) else exit_codes.TASK_FAILED
    return _finish(code, termination.describe(error), log_path)


def _system_exit(task: Task, error: SystemExit, log_path: str) -> int:
    """A task calling sys.exit(code) ends the run as it would end a script."""
    if error.code is None or error.code == 0:
        log.info("task %s exited with sys.exit(%r)", task.name, error.code)
        return exit_codes.SUCCEEDED
    code = error.code if isinstance(error.code, int) else exit_codes.TASK_FAILED
    return _finish(code, termination.describe(error), log_path)


def _finish(code: int, message: str, log_path: str) -> int:
    log.error("exit %d: %s", code, message)
    termination.write(log_path, message)
    return code


def _exit_now(code: int, message: str, log_path: str) -> NoReturn:
    """Exit without waiting for the worker thread, which is still running the task."""
    _finish(code, message, log_path)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
