"""Whether STOKER_ARGS makes a valid call of the task, and the keyword arguments it makes."""

from __future__ import annotations

import json
import threading
from typing import Any

from stoker_runner.config_errors import BadArguments
from stoker_runner.registry import CANCEL_PARAMETER, Task


def parse(raw: str | None) -> dict[str, Any]:
    """The JSON object in STOKER_ARGS; unset or blank means no arguments."""
    if raw is None or not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError as error:
        raise BadArguments(f"STOKER_ARGS is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise BadArguments(
            f"STOKER_ARGS must be a JSON object of keyword arguments, got {_json_kind(value)}"
        )
    return value


def bind(task: Task, args: dict[str, Any], cancel: threading.Event) -> dict[str, Any]:
    """The keyword arguments to call the task with, checked against its signature first so that
    a mismatch is a configuration error (exit 2), not a failure of the task (exit 1)."""
    kwargs = dict(args)
    if task.wants_cancel:
        if CANCEL_PARAMETER in kwargs:
            raise BadArguments(
                f"task {task.name!r}: argument {CANCEL_PARAMETER!r} is supplied by the runner "
                "(the cancellation event) and cannot be passed in args"
            )
        kwargs[CANCEL_PARAMETER] = cancel
    try:
        task.signature.bind(**kwargs)
    except TypeError as error:
        raise BadArguments(f"task {task.name!r}: {error}") from None
    return kwargs


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"
