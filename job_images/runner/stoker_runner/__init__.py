"""Stoker's task runner: calls the task named by STOKER_TASK with the JSON object in STOKER_ARGS.

Task modules use:
- `task`: decorator registering a function (sync or async) under its name or a given one;
- `Fail(message, exit_code=75)`: fail the attempt with a chosen exit code;
- `cancelled`: threading.Event set when SIGTERM arrives (the pod is being deleted);
- `current`: the task name, job name and attempt number of this run.
"""

from stoker_runner.cancellation import cancelled
from stoker_runner.context import Current, current
from stoker_runner.exit_codes import Fail
from stoker_runner.registry import task

__all__ = ["Current", "Fail", "cancelled", "current", "task"]
