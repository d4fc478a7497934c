"""What a running attempt knows about itself, from the environment the operator gives the pod."""

from __future__ import annotations

import os

from stoker_runner.config_errors import BadEnvironment


class Current:
    """Read at each access, so it is right wherever and whenever a task module imports it."""

    @property
    def task(self) -> str | None:
        """The task name (STOKER_TASK)."""
        return os.environ.get("STOKER_TASK", "").strip() or None

    @property
    def job_name(self) -> str | None:
        """The BackgroundJob's name (STOKER_JOB_NAME), None when run outside Stoker."""
        return os.environ.get("STOKER_JOB_NAME", "").strip() or None

    @property
    def attempt(self) -> int | None:
        """The 1-based attempt number (STOKER_ATTEMPT), None when run outside Stoker."""
        raw = os.environ.get("STOKER_ATTEMPT", "").strip()
        if not raw:
            return None
        try:
            attempt = int(raw)
        except ValueError:
            attempt = 0
        if attempt < 1:
            raise BadEnvironment(f"STOKER_ATTEMPT must be a positive integer, got {raw!r}")
        return attempt


current = Current()
