"""The exit codes the runner ends with, and the exception a task raises to choose its own."""

from __future__ import annotations

SUCCEEDED = 0
TASK_FAILED = 1  # the task raised an exception
CONFIGURATION_ERROR = 2  # no/unknown task, bad args, bad environment: retrying cannot help
TEMPORARY_FAILURE = 75  # EX_TEMPFAIL from sysexits.h: "try again later"
CANCELLED = 143  # 128 + SIGTERM, what Kubernetes reports for a container stopped by SIGTERM


class Fail(Exception):
    """Raised by a task to fail its attempt with a chosen exit code (default 75, "retry me")."""

    __module__ = "stoker_runner"  # shown as stoker_runner.Fail in termination messages

    def __init__(self, message: str, exit_code: int = TEMPORARY_FAILURE) -> None:
        if not 1 <= exit_code <= 255:
            raise ValueError(f"Fail exit_code must be between 1 and 255, got {exit_code}")
        super().__init__(message)
        self.exit_code = exit_code
